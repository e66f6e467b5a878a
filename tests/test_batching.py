"""A run's fetches that bring no new body are stored in batches (fetcher.run.batching):
none waits for a batch to fill, those that finish while one is written go in the
next, and one fetch's trouble stays its own."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from fetcher.core.models import Download, FetchResult, Snapshot
from fetcher.core.outcomes import Outcome
from fetcher.core.sources import make_source
from fetcher.run.batching import CheckBatches
from fetcher.store.sqlite import Store

WHEN = datetime(2026, 1, 1, tzinfo=timezone.utc)


def gone(n: int) -> FetchResult:
    source = make_source(f"https://example.org/page/{n}")
    return FetchResult(source, WHEN, "live", Download(source.url, Outcome.HTTP_404, source.url, 404), 1,
                       live_status=404, live_outcome=Outcome.HTTP_404)


def test_fetches_that_finish_while_a_batch_is_written_go_in_the_next_one(tmp_path):
    store = Store(tmp_path)
    threads = ThreadPoolExecutor(1)
    sizes: list[int] = []

    async def night() -> list[Snapshot]:
        gate = asyncio.Event()

        async def write(function):
            if not sizes and not gate.is_set():
                await gate.wait()  # the first batch is slow: others finish meanwhile
            outcomes = await asyncio.get_running_loop().run_in_executor(threads, function)
            sizes.append(len(outcomes))
            return outcomes

        batches = CheckBatches(store, write)
        results = [gone(n) for n in range(5)] + [gone(1)]  # page 1 twice: never twice in one batch
        first = asyncio.ensure_future(batches.store(results[0].source.resource_id, lambda: results[0], None))
        await asyncio.sleep(0)
        rest = [asyncio.ensure_future(batches.store(r.source.resource_id, lambda r=r: r, None)) for r in results[1:]]
        await asyncio.sleep(0)
        gate.set()
        return await asyncio.gather(first, *rest)

    try:
        stored = asyncio.run(night())
        assert sizes == [1, 4, 1]
        assert [s.resource_id for s in stored] == [gone(n).source.resource_id for n in (0, 1, 2, 3, 4, 1)]
        assert len({s.fetch_id for s in stored}) == 6
        assert len(store.history(gone(1).source.resource_id)) == 2
        assert store.health(gone(1).source.resource_id).failures_in_a_row == 2
    finally:
        threads.shutdown()
        store.close()


class Refuses:
    """An InTransaction that refuses a whole batch, and one source alone."""

    def __init__(self, refused: str):
        self.refused = refused

    def one(self, resource_id, fetch) -> None:
        if resource_id == self.refused:
            raise RuntimeError(f"{resource_id} refused")

    def many(self, fetches) -> None:
        if self.refused in fetches:
            raise RuntimeError("a batch with the refused source")


def test_one_fetch_refused_in_a_batch_fails_alone_and_the_others_are_stored(tmp_path):
    store = Store(tmp_path)
    threads = ThreadPoolExecutor(1)
    results = [gone(n) for n in range(3)]
    refused = results[1].source.resource_id

    async def night() -> list[object]:
        async def write(function):
            return await asyncio.get_running_loop().run_in_executor(threads, function)

        batches = CheckBatches(store, write)
        also = Refuses(refused)
        return await asyncio.gather(
            *(batches.store(r.source.resource_id, lambda r=r: r, also) for r in results), return_exceptions=True)

    try:
        outcomes = asyncio.run(night())
        assert isinstance(outcomes[0], Snapshot) and isinstance(outcomes[2], Snapshot)
        assert isinstance(outcomes[1], RuntimeError) and str(outcomes[1]) == f"{refused} refused"
        assert store.history(refused) == [] and store.health(refused).last_checked is None
        assert [len(store.history(r.source.resource_id)) for r in (results[0], results[2])] == [1, 1]
    finally:
        threads.shutdown()
        store.close()


def test_a_writer_that_breaks_leaves_no_fetch_waiting(tmp_path):
    store = Store(tmp_path)

    async def night() -> list[object]:
        async def write(function):
            raise OSError("the store thread is gone")

        batches = CheckBatches(store, write)
        return await asyncio.wait_for(asyncio.gather(
            *(batches.store(r.source.resource_id, lambda r=r: r, None) for r in (gone(0), gone(1))),
            return_exceptions=True), timeout=5)

    try:
        outcomes = asyncio.run(night())
        assert [type(outcome) for outcome in outcomes] == [OSError, OSError]
    finally:
        store.close()
