"""`fetcher worker`: run the queued sources of a PostgreSQL store, alongside
any number of other workers on any number of machines.

Each job is a chunk of 20 sources of one run, fetched side by side, at most
`concurrency` downloading at once over all the worker's jobs (and as many again
being extracted or stored: a source's place goes to the next once its download
is over, as in a refresh). The worker takes the job's
sources not done yet on the board as the job starts, in one statement with
their health (they show as running on this worker), fetches each through the one engine
(fetcher.run.pipeline: the same order of work as an in-process refresh) and
stores the fetch and marks the source done in one transaction, on the
condition that no other worker stored it first (fetcher.run.board.mark_done).
The per-host limits are shared by all workers (fetcher.run.shared). The
worker that finds a run's last source done records the run's end.

Lease: the worker beats its heartbeat every lease/4 seconds; the jobs of a
worker silent for `[workers] lease` seconds are put back on the queue by the
others (checked every lease/4), so a killed worker's sources are taken up again
within 1.25 × lease. SIGTERM (or SIGINT): no new job is taken; the jobs in
hand get `[schedule] shutdown_grace` seconds to finish, then are cancelled and
go back to the queue, their sources unstored.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import procrastinate
import psycopg
from psycopg_pool import AsyncConnectionPool

from fetcher.core.config import Config
from fetcher.core.errors import AlreadyFetched
from fetcher.net.places import Place, holding, run_places
from fetcher.run import board, queue
from fetcher.run.distributed import database_url, finish_if_done
from fetcher.run.pipeline import FetchOptions, Pipeline
from fetcher.run.shared import SharedHostSlots
from fetcher.store.dialect import PostgresDatabase, RowSelector
from fetcher.store.sqlite import Store, StoreError

log = logging.getLogger("fetcher")
STORE_THREADS = 3  # the engine's store calls at once, each on its own connection (Database.threads)


@dataclass
class WorkerOptions:
    concurrency: int
    queue: str
    lease: float
    grace: float
    name: str = field(default_factory=board.worker_name)
    once: bool = False  # stop when the queue is empty (tests, benchmarks)


@dataclass(frozen=True, eq=False)
class MarkDone:
    """Inside the store transaction of a run's fetches, on its connection: their
    sources are done (or, one done already, the whole transaction rolls back)."""

    store: Store
    run_id: int
    worker: str

    def _connection(self) -> psycopg.Connection[Any]:
        database = self.store.database
        assert isinstance(database, PostgresDatabase), "workers run on a PostgreSQL store"
        return database.connection  # (the store thread's own)

    def one(self, resource_id: str, fetch: RowSelector) -> None:
        board.mark_done(self._connection(), self.run_id, self.worker, resource_id, fetch)

    def many(self, fetches: dict[str, int]) -> None:
        board.mark_many(self._connection(), self.run_id, self.worker, fetches)


class Worker:
    def __init__(self, config: Config, open_store: Callable[[], Store], options: WorkerOptions):
        """`open_store` is called twice: one store for the engine's thread, one
        for the board's (recording a run's end)."""
        self._config = config
        self._store = open_store()
        self._store.database.threads = STORE_THREADS
        self._board_store = open_store()
        self._url = database_url(config)
        self._options = options
        self._own = ThreadPoolExecutor(max_workers=1, thread_name_prefix="board")
        self._board = psycopg.connect(self._url, autocommit=True)  # used on the board thread only
        self._mark: dict[int, MarkDone] = {}

    def serve_blocking(self) -> None:
        """Serve; the database failing under it is a StoreError (one line, its URL
        without the password)."""
        try:
            asyncio.run(self.serve())
        except (psycopg.Error, procrastinate.exceptions.ProcrastinateException) as error:
            raise StoreError(f"{self._config.database_display}: {error}") from error

    async def serve(self) -> None:
        """Run jobs until SIGTERM/SIGINT (or, `once`, until the queue is empty)."""
        options, settings = self._options, self._config.fetch
        app = queue.make_app(self._url, options.queue, self._chunk)
        self._fetching = asyncio.Semaphore(options.concurrency)  # sources downloading (and requests in flight)
        self._past = asyncio.Semaphore(2 * options.concurrency)  # and as many again being extracted or stored
        pool = AsyncConnectionPool(self._url, min_size=1, max_size=8, kwargs={"autocommit": True}, open=False)
        async with app.open_async(), pool:
            self._pool = pool
            await queue.create_schema(app, self._url)
            async with SharedHostSlots(self._url, settings.per_host_concurrency, settings.per_host_delay) as slots:
                self._pipeline = Pipeline(self._config, self._store, slots=slots)
                async with self._pipeline:
                    beat = asyncio.ensure_future(self._beat(app))
                    try:
                        await app.run_worker_async(
                            queues=[options.queue], name=options.name,
                            concurrency=queue.jobs_at_once(options.concurrency),
                            wait=not options.once, shutdown_graceful_timeout=options.grace,
                            update_heartbeat_interval=options.lease / 4, stalled_worker_timeout=options.lease,
                            listen_notify=True, fetch_job_polling_interval=min(5.0, options.lease / 4),
                            install_signal_handlers=True, delete_jobs="successful",
                        )
                    finally:
                        beat.cancel()
                        await asyncio.gather(beat, return_exceptions=True)
                        await self._on_board(board.leave, self._board, options.name)
        self._own.shutdown()
        self._board.close()
        self._store.close()
        self._board_store.close()

    async def _beat(self, app: procrastinate.App) -> None:
        """Every lease/4: say this worker is alive, put back the jobs of silent
        workers, and record the end of runs whose last worker died finishing them."""
        options = self._options
        while True:
            try:
                await self._on_board(board.heartbeat, self._board, options.name, options.concurrency)
                await queue.recover_stalled(app, options.queue, options.lease)
                for run_id in await self._on_board(board.unfinished_runs, self._board):
                    await self._on_board(self._finish, run_id)
            except (psycopg.Error, procrastinate.exceptions.ProcrastinateException, StoreError) as error:
                log.warning("worker upkeep failed (tried again in %gs): %s", options.lease / 4, error)
            await asyncio.sleep(options.lease / 4)

    async def _chunk(self, context: Any, run_id: int, first: int, last: int) -> None:
        """One job: the run's sources at positions first…last not done yet, taken
        on the board at once, each fetched as soon as one of this worker's
        `concurrency` fetches is free."""
        async with self._pool.connection() as db:
            claims = await board.claim(db, run_id, first, last, self._options.name)
        outcomes = await asyncio.gather(*(self._one(taken) for taken in claims), return_exceptions=True)
        failures = [error for error in outcomes if isinstance(error, BaseException)]
        for error in failures:
            if not isinstance(error, StoreError):
                raise error
        if failures and context.job.attempts + 1 < queue.ATTEMPTS:
            raise failures[0]  # our machine, not the sources: procrastinate tries the job again
        if failures:  # given up: the run can end; the sources stay due
            log.error("giving up sources %d-%d of run %d after %d attempts: %s", first, last, run_id,
                      queue.ATTEMPTS, failures[0])
            async with self._pool.connection() as db:
                await board.give_up(db, run_id, first, last, self._options.name)
        await self._on_board(self._finish, run_id)

    async def _one(self, taken: board.Claim) -> None:
        """One source, once one of the worker's `concurrency` places is free. The
        place goes to the next source once this one's download is over (as in a
        refresh: fetcher.net.places); as many again may be past it, being
        extracted or stored. A request it still sends then takes a place again."""
        run_id, resource_id = taken.run_id, taken.source.resource_id
        fetch_options = FetchOptions(
            archive=taken.options.get("archive", True),
            recheck_archive=taken.options.get("recheck_archive", False),
            also_in_transaction=self._marks(run_id), health=taken.health, with_text=False, run_id=run_id,
        )
        run_places.set(self._fetching)  # (this source's own task's context: gathered by _chunk)
        async with self._past:
            await self._fetching.acquire()
            place = Place(self._fetching.release)
            holding.set(place)
            try:
                snapshot = await self._pipeline.fetch(taken.source, fetch_options)
            except AlreadyFetched as error:
                log.info("%s", error)
                return
            finally:
                place.give_back()
        log.info("%s %s %s (run %d)", (snapshot.live_outcome or snapshot.outcome).value, resource_id,
                 snapshot.url, run_id)

    def _marks(self, run_id: int) -> MarkDone:
        """The run's MarkDone (one for all its sources: their fetches stored in one
        batch are marked in one statement)."""
        mark = self._mark.get(run_id)
        if mark is None:
            if len(self._mark) >= 8:  # (a worker that serves for months: the runs of the last few nights)
                del self._mark[next(iter(self._mark))]
            mark = self._mark[run_id] = MarkDone(self._store, run_id, self._options.name)
        return mark

    def _finish(self, run_id: int) -> None:
        """Record the run's end if its every source is done."""
        summary = finish_if_done(self._board, self._config, self._board_store, run_id)
        if summary is not None:
            log.info("run %d completed: %d sources", run_id, summary.total)

    async def _on_board(self, function: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._own, function, *args)
