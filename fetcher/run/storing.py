"""The engine's order for storing one fetch (fetcher.run.pipeline stores every
result through here): the body file first, then one transaction for the rest.
Apart from the pipeline, so that a tool that only writes results (the audit
benchmark) need not load the network and extraction layers."""

from __future__ import annotations

from collections.abc import Callable

from fetcher.core.health import check_of, next_health
from fetcher.core.models import FetchResult, Snapshot
from fetcher.store.dialect import RowSelector
from fetcher.store.sqlite import Store

# Called inside the fetch's transaction once its rows are written, with the
# condition that selects its fetch row (Writer.record's). What it sends goes with
# the commit; a statement of it that raises the store's CONDITION_FAILED rolls the
# whole fetch back, as AlreadyFetched (a worker marks its source done here).
AlsoInTransaction = Callable[[RowSelector], None]


def store_result(
    store: Store, result: FetchResult, also: AlsoInTransaction | None = None, with_text: bool = True
) -> Snapshot:
    """Store one fetch, in this order: its new body file, then one transaction that
    reads the source's health, folds the live check into it (fetcher.core.health)
    and writes the fetch, its content and the new health, then `also` (if given),
    and reads the fetch back. Returns it as stored (read within the transaction:
    trouble there is trouble writing); without its content's text unless `with_text`."""
    if result.new_content:
        store.keep_body(result.download)
    if result.render is not None and result.render.static is not None:  # the static body beside a rendered DOM
        store.keep_body(result.render.static)
    check = check_of(result)
    with store.transaction() as writer:
        health, transition = next_health(writer.health(result.source.resource_id), check) if check else (None, None)
        recorded = writer.record(result, health, transition)
        if also is not None:
            also(recorded)
        stored = store.read_back(recorded, with_text)
    return stored()
