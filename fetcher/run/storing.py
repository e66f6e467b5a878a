"""The engine's order for storing fetches (fetcher.run.pipeline stores every
result through here): a new body first, then one transaction for the rest.
Apart from the pipeline, so that a tool that only writes results (the audit
benchmark) need not load the network and extraction layers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from fetcher.core.health import Health, check_of, next_health
from fetcher.core.models import FetchResult, Snapshot
from fetcher.core.states import Transition
from fetcher.store.dialect import RowSelector
from fetcher.store.sqlite import Store


class InTransaction(Protocol):
    """What a run writes inside its fetches' transaction once their rows are
    written (a worker marks its sources done on the run's board). What it sends
    goes with the commit; a statement of it that raises the store's
    CONDITION_FAILED rolls the whole transaction back, as AlreadyFetched."""

    def one(self, resource_id: str, fetch: RowSelector) -> None:
        """After one fetch's rows: `fetch` selects its row (Writer.record's)."""

    def many(self, fetches: dict[str, int]) -> None:
        """After several fetches' rows: each one's id by its source."""


def store_result(
    store: Store, result: FetchResult, also: InTransaction | None = None, with_text: bool = True
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
    with store.transaction() as writer:
        recorded = writer.record(result, *_health_after(result, lambda: writer.health(result.source.resource_id)))
        if also is not None:
            also.one(result.source.resource_id, recorded)
        stored = store.read_back(recorded, with_text)
    return stored()


def batchable(result: FetchResult) -> bool:
    """Whether the fetch can be stored in a batch (store_checks): it brings no body
    to keep (a page found unchanged, a failure: most of a night's fetches)."""
    return not result.new_content and (result.render is None or result.render.static is None)


def store_checks(store: Store, checks: list[tuple[FetchResult, InTransaction | None]]) -> list[Snapshot | Exception]:
    """Store several fetches that bring no body (`batchable`), each of a different
    source, in one transaction: what store_result writes for each, in a few
    statements for them all; then each one's `also` (by `many`, one call for
    the fetches that share it), and read back without their text. Returns each
    one's stored fetch, in order.

    If that transaction fails, each is stored on its own (store_result), so that
    trouble stays with the fetch it belongs to (another worker stored it first,
    a value the database refuses): its exception is returned in its place."""
    if len(checks) > 1:
        try:
            return list(_together(store, checks))
        except Exception:  # noqa: BLE001 - whose trouble it was, each one alone below says
            pass
    outcomes: list[Snapshot | Exception] = []
    for result, also in checks:
        try:
            outcomes.append(store_result(store, result, also, with_text=False))
        except Exception as error:  # noqa: BLE001 - handed to the fetch it belongs to
            outcomes.append(error)
    return outcomes


def _together(store: Store, checks: list[tuple[FetchResult, InTransaction | None]]) -> list[Snapshot]:
    sources = [result.source.resource_id for result, _ in checks]
    assert len(set(sources)) == len(sources), "one fetch a source in a batch"
    with store.transaction() as writer:
        known = writer.healths(sources)
        ids = writer.record_many([(result, *_health_after(result, lambda: known[result.source.resource_id]))
                                  for result, _ in checks])
        marks: dict[InTransaction, dict[str, int]] = {}
        for result, also in checks:
            if also is not None:
                marks.setdefault(also, {})[result.source.resource_id] = ids[result.source.resource_id]
        for also, fetches in marks.items():
            also.many(fetches)
        stored = store.read_back_many(list(ids.values()), with_text=False)
    snapshots = stored()
    return [snapshots[ids[source]] for source in sources]


def _health_after(result: FetchResult, health: Callable[[], Health]) -> tuple[Health | None, Transition | None]:
    """The source's new health and its transition after a live check (from its
    health as the transaction read it: `health`, read only then); none otherwise."""
    check = check_of(result)
    return next_health(health(), check) if check else (None, None)
