"""The run queue on procrastinate (PostgreSQL): one job for every CHUNK (20)
sources of a run, in the store's own database.

`enqueue` puts a run on the board (fetcher.run.board), its sources
interleaved by host, and defers one `fetcher.fetch` job for each CHUNK of them
(one statement into procrastinate's job table, as its defer writes them). A worker
(fetcher.run.worker) runs the jobs. procrastinate gives the rest: jobs taken
with SKIP LOCKED (one worker a job), a heartbeat per worker, and retries: a job
cut short by a worker's shutdown goes back to the queue, and a worker whose
heartbeat is older than the lease has its jobs put back by the others
(`recover_stalled`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import procrastinate
import psycopg
from procrastinate import exceptions as queue_errors

from fetcher.core.models import Source
from fetcher.run import board
from fetcher.run.hostqueue import interleave_by_host
from fetcher.run.shared import PACE_TABLE

log = logging.getLogger("fetcher")
TASK = "fetcher.fetch"
CHUNK = 20  # sources a job: the queue's own cost (a job taken, finished, deleted) is paid once for them
ATTEMPTS = 20  # a job whose store cannot be written is tried this often, 2 s apart, then given up
Fetch = Callable[[Any, int, int, int], Awaitable[None]]


def jobs_at_once(concurrency: int) -> int:
    """The jobs a worker runs at once to keep `concurrency` fetches busy: a job
    ends only with its slowest source, so three chunks' worth per `concurrency`
    fetches, and two more. (One chunk's worth left the fetches idle between
    waves of jobs: W2 of 2,000 sources over 40 hosts on one worker, 6.6 s
    against 5.9 s.)"""
    return max(2, 3 * -(-concurrency // CHUNK) + 2)


def make_app(url: str, queue: str, fetch: Fetch | None = None) -> procrastinate.App:
    """A procrastinate app on the database at `url` with the one task. A worker
    passes `fetch` (what the task does); who only enqueues does not."""
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))

    async def fetch_sources(context: Any, run_id: int, first: int, last: int) -> None:
        if fetch is None:
            raise RuntimeError("this process only enqueues")
        await fetch(context, run_id, first, last)

    retry = procrastinate.RetryStrategy(max_attempts=ATTEMPTS, wait=2)
    app.task(name=TASK, queue=queue, pass_context=True, retry=retry)(fetch_sources)
    return app


async def create_schema(app: procrastinate.App, url: str) -> None:
    """procrastinate's tables and the board's, once: whoever starts first creates
    them while the others wait on an advisory lock."""
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("SELECT pg_advisory_lock(8123, 0)")
        try:
            exists = db.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").fetchone()
            if not (exists and exists[0]):
                with db.transaction():
                    db.execute(app.schema_manager.get_schema())
            board.create_schema(db)
            db.execute(PACE_TABLE)
        finally:
            db.execute("SELECT pg_advisory_unlock(8123, 0)")


# One procrastinate job a CHUNK of the run's sources (by their board position),
# in one statement: the rows procrastinate's own defer writes (its triggers still
# notify the workers and log the events).
_DEFER_RUN = """
INSERT INTO procrastinate_jobs (queue_name, task_name, priority, args)
SELECT %(queue)s, %(task)s, 0,
       jsonb_build_object('run_id', %(run_id)s, 'first', f, 'last', least(f + %(chunk)s, %(total)s) - 1)
FROM generate_series(0, %(total)s - 1, %(chunk)s) AS f ORDER BY f
"""


async def enqueue(
    url: str, queue: str, run_id: int, started_at: datetime, trigger: str,
    sources: list[Source], not_due: int, options: dict[str, bool],
) -> None:
    """Put the run on the board and a job for each source on the queue, in one
    transaction: an interrupted enqueue leaves nothing behind."""
    ordered = list(interleave_by_host(sources))
    with psycopg.connect(url, autocommit=True) as db:
        with db.transaction():
            board.add_run(db, run_id, started_at, trigger, options, ordered, not_due)
            db.execute(_DEFER_RUN, {"queue": queue, "task": TASK, "run_id": run_id, "chunk": CHUNK,
                                    "total": len(ordered)})
        # Fresh statistics: without them, after a bulk insert the planner takes
        # procrastinate's job fetch for a scan of the whole queue (12 ms a job
        # at 20,000 jobs, growing with the queue) instead of one index probe.
        db.execute("ANALYZE procrastinate_jobs, fetcher_run_sources")
    log.info("run %d queued: %d sources", run_id, len(ordered))


async def recover_stalled(app: procrastinate.App, queue: str, lease: float) -> int:
    """Put back on the queue the jobs of workers not heard from for `lease`
    seconds (killed, or cut off): others take them. Returns how many."""
    stalled = await app.job_manager.get_stalled_jobs(queue=queue, seconds_since_heartbeat=lease)
    count = 0
    for job in stalled:
        try:
            await app.job_manager.retry_job(job)
            count += 1
        except queue_errors.ProcrastinateException as error:  # another worker put it back first
            log.debug("job %s not put back: %s", job.id, error)
    if count:
        log.warning("put back %d jobs of workers silent for over %gs", count, lease)
    await app.job_manager.prune_stalled_workers(lease)
    return count
