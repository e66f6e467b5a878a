"""Fetches that bring no new body, stored in batches (fetcher.run.storing.store_checks).

Most of a night's fetches find their page unchanged. Each stored alone is a
transaction of its own: on PostgreSQL eight statements (BEGIN to COMMIT),
each a round of the server's executor and of the driver's Python. Stored
together they are a few statements for a whole batch.

No fetch waits for a batch to fill: while one batch's transaction runs on a
store thread, the fetches that finish meanwhile gather into the next, which
starts as soon as the first is done. A quiet run stores each fetch alone, as
before; a busy one stores them a few at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fetcher.core.models import FetchResult, Snapshot
from fetcher.run.storing import InTransaction, store_checks
from fetcher.store.sqlite import Store

Outcomes = list[Snapshot | Exception]
LIMIT = 50  # fetches in one batch at most: a transaction's locks held for a few milliseconds


@dataclass
class _Waiting:
    resource_id: str
    result: Callable[[], FetchResult]  # made on the store thread, as it is stored (its elapsed time)
    also: InTransaction | None
    done: asyncio.Future[Snapshot]


class CheckBatches:
    """store_checks for fetches as they finish; `write` runs a function on a
    store thread (the pipeline's)."""

    def __init__(self, store: Store, write: Callable[[Callable[[], Outcomes]], Awaitable[Outcomes]]):
        self._store, self._write = store, write
        self._waiting: list[_Waiting] = []
        self._writer: asyncio.Task[None] | None = None

    async def store(self, resource_id: str, result: Callable[[], FetchResult], also: InTransaction | None) -> Snapshot:
        """Store the fetch with the next batch; its stored row, or its own trouble."""
        done: asyncio.Future[Snapshot] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(resource_id, result, also, done))
        if self._writer is None:
            self._writer = asyncio.ensure_future(self._write_all())
        return await done

    async def _write_all(self) -> None:
        """Write batches until none is waiting (a source at most once a batch)."""
        batch: list[_Waiting] = []
        try:
            while self._waiting:
                batch, rest, sources = [], [], set()
                for waiting in self._waiting:
                    if len(batch) < LIMIT and waiting.resource_id not in sources:
                        batch.append(waiting)
                        sources.add(waiting.resource_id)
                    else:
                        rest.append(waiting)
                self._waiting = rest
                checks = [(waiting.result, waiting.also) for waiting in batch]
                outcomes = await self._write(lambda: store_checks(self._store, [(made(), also) for made, also in checks]))
                for waiting, outcome in zip(batch, outcomes):
                    if waiting.done.done():
                        continue  # (its fetch was cancelled: a stopping worker's)
                    if isinstance(outcome, Exception):
                        waiting.done.set_exception(outcome)
                    else:
                        waiting.done.set_result(outcome)
                batch = []
        except BaseException as error:  # the writer itself cancelled, or a bug: no fetch waits forever
            for waiting in [*batch, *self._waiting]:
                if not waiting.done.done():
                    waiting.done.set_exception(error if isinstance(error, Exception) else asyncio.CancelledError())
            self._waiting = []
            if not isinstance(error, Exception):
                raise
        finally:
            self._writer = None
