"""A refresh on a PostgreSQL store: the due sources are queued as one run for
`fetcher worker`s to fetch (fetcher.run.queue), and the run is followed on its
board until every source is done. The run's end is recorded by whoever sees
its last source done first: a worker, or the command following it.

Runs do not overlap: while a queued run is unfinished, a new one is refused
(Busy), as the run lock does for the SQLite store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

import psycopg

from fetcher.core.config import Config
from fetcher.core.errors import Busy
from fetcher.core.health import due_sources, state_counts
from fetcher.core.models import RunSummary, Source
from fetcher.core.timestamps import WallClock, utc_now
from fetcher.run import board, queue
from fetcher.run.options import FetchOptions
from fetcher.store.sqlite import Store

POLL = 0.5  # seconds between looks at a followed run's board (one count over its sources), for its progress


@dataclass(frozen=True)
class Queued:
    run_id: int
    started_at: datetime
    total: int


async def queue_run(
    config: Config, store: Store, sources: list[Source], *, trigger: str, everything: bool = False,
    options: FetchOptions = FetchOptions(), wall_clock: WallClock = utc_now,
) -> Queued:
    """Record a run's start and queue its due sources (all with `everything`).
    Raises Busy while an earlier queued run is unfinished."""
    url = database_url(config)
    app = queue.make_app(url, config.workers.queue)
    async with app.open_async():
        await queue.create_schema(app, url)
        with psycopg.connect(url, autocommit=True) as db:
            db.execute("SELECT pg_advisory_lock(8123, 2)")  # two refreshes at once: one queues, one is Busy
            try:
                running = board.open_run(db)
                if running is not None:
                    run_id, seen = running
                    raise Busy(f"queued run {run_id} (started {seen.started_at:%Y-%m-%d %H:%M:%S}) is still going:"
                               f" {seen.done} of {seen.total} sources done; `fetcher status` shows its workers")
                started = wall_clock()
                with store.run_lock() as lock:  # as an in-process run takes it: Busy while another holds it
                    lock.acquire(started, trigger)
                    chosen = sources if everything else due_sources(sources, store.all_health(), config.refresh,
                                                                    started)
                    run_id = store.start_run(started, trigger)
                    flags = {"archive": options.archive, "recheck_archive": options.recheck_archive}
                    await queue.enqueue(url, config.workers.queue, run_id, started, trigger, chosen,
                                        len(sources) - len(chosen), flags)
            finally:
                db.execute("SELECT pg_advisory_unlock(8123, 2)")
    return Queued(run_id, started, len(chosen))


async def follow(
    config: Config, store: Store, run_id: int, on_progress: Callable[[board.Progress], None] = lambda _: None,
    poll: float = POLL,
) -> RunSummary:
    """Wait for the run's every source to be done, reporting progress every
    `poll` seconds; its summary. The worker that records the run's end notifies
    it (board.FINISHED): the wait ends then, not at the next look."""
    url = database_url(config)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as listener:
        await listener.execute(f"LISTEN {board.FINISHED}")
        with psycopg.connect(url, autocommit=True) as db:
            while True:
                seen = board.progress(db, run_id)
                on_progress(seen)
                if seen.done == seen.total:
                    finish_if_done(db, config, store, run_id)
                    finished = db.execute("SELECT finished_at FROM fetcher_queue_runs WHERE run_id = %s",
                                          (run_id,)).fetchone()
                    when = finished[0] if finished and finished[0] else utc_now()
                    return _with_health(board.summary(db, run_id, when), config, store)
                async for _ in listener.notifies(timeout=poll, stop_after=1):
                    pass  # a run finished (this one: runs do not overlap)


def finish_if_done(db: psycopg.Connection, config: Config, store: Store, run_id: int,
                   wall_clock: WallClock = utc_now) -> RunSummary | None:
    """Record the run's end if its every source is done and no one has yet (two
    at once record the same counts, a moment apart: harmless)."""
    if run_id not in board.unfinished_runs(db):
        return None
    finished = wall_clock()
    summary = _with_health(board.summary(db, run_id, finished), config, store)
    store.finish_run(run_id, finished, "completed", summary.to_dict())
    board.record_finish(db, run_id, finished)
    return summary


def _with_health(summary: RunSummary, config: Config, store: Store) -> RunSummary:
    return replace(summary, health=state_counts(list(config.sources), store.all_health(), config.refresh))


def database_url(config: Config) -> str:
    assert config.database, "a queued run needs a PostgreSQL store"
    return config.database
