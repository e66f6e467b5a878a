"""How one fetch is to be done: what a one-off's flags, or a worker, ask of the engine."""

from __future__ import annotations

from dataclasses import dataclass

from fetcher.core.health import Health
from fetcher.run.storing import InTransaction


@dataclass(frozen=True)
class FetchOptions:
    live: bool = True  # False: --archive-only
    archive: bool = True  # False: --no-archive
    recheck_archive: bool = False  # True: ignore cached archive lookups
    render: str | None = None  # "always": --render; "never": --no-render; None: as configured
    # run inside the fetch's store transaction (fetcher.run.storing); a worker marks its source done there
    also_in_transaction: InTransaction | None = None
    # the source's health as read with others (a worker's chunk): its validators without a read of its own
    health: Health | None = None
    # False: the stored fetch comes back without its content's text (Snapshot.text None), as a run
    # wants it (it counts and logs fetches): a page's text is not read back for every check
    with_text: bool = True
    # the run this fetch is part of, for what is counted per run (Save Page Now's budget): a worker's
    # engine serves one run after another; None is the engine's own (a refresh's, a one-off's)
    run_id: int | None = None
