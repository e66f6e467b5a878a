"""Workers on a PostgreSQL store: `fetcher worker`, and the queued form of
`refresh` and `schedule` (the due sources queued as one run for the workers,
followed until done unless --no-wait)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from typing import Any

import click

from fetcher.cli import logs
from fetcher.cli.inputs import load
from fetcher.cli.output import print_json
from fetcher.cli.progress import run_progress
from fetcher.cli.running import run_cancellable
from fetcher.core.config import Config
from fetcher.core.errors import BadInput, Busy, Interrupted, StoreError
from fetcher.core.models import RunSummary, Source
from fetcher.core.timestamps import rfc3339
from fetcher.store.opening import open_store
from fetcher.store.sqlite import Store

log = logging.getLogger("fetcher")
REPORT_EVERY = 10.0  # seconds between progress lines when no bar is shown


@click.command()
@click.option("--concurrency", type=click.IntRange(min=1), metavar="N",
              help="Sources downloading at once in this worker, as many again being extracted or stored"
                   " (default: [fetch] concurrency).")
@click.option("--queue", "queue_name", metavar="NAME", help="The queue to take jobs from (default: [workers] queue).")
@click.option("--once", is_flag=True, help="Stop when the queue is empty instead of waiting for more.")
@click.pass_context
def worker(context: click.Context, concurrency: int | None, queue_name: str | None, once: bool) -> None:
    """Fetch queued sources of a PostgreSQL store, alongside any number of other
    workers, until SIGTERM/SIGINT.

    `fetcher refresh` (or `schedule`) on a PostgreSQL store queues the due sources;
    each is fetched once per run however many workers there are, and the per-host
    limits hold across all of them. A worker silent for [workers] lease seconds
    (killed, cut off) has its sources taken up by the others. On SIGTERM a worker
    takes no new source; those in hand get [schedule] shutdown_grace seconds to
    finish, then go back to the queue."""
    config = load(context)
    _needs_database(config, "fetcher worker")
    from fetcher.run.worker import Worker, WorkerOptions

    options = WorkerOptions(
        concurrency=concurrency or config.fetch.concurrency, queue=queue_name or config.workers.queue,
        lease=config.workers.lease, grace=config.schedule.shutdown_grace, once=once,
    )
    log.info("worker %s: %d at a time from queue %r of %s", options.name, options.concurrency, options.queue,
             config.database_display)
    Worker(config, lambda: open_store(config), options).serve_blocking()


def _needs_database(config: Config, what: str) -> None:
    if not config.database:
        raise BadInput(f"{what} needs a PostgreSQL store: set [storage] database in {config.path}"
                       " (or $FETCHER_DATABASE); with the SQLite store, `fetcher refresh` runs in-process")
    needs_queue(what)


def needs_queue(what: str) -> None:
    """procrastinate comes with the `postgresql` extra; without it, one line saying so."""
    try:
        import procrastinate  # noqa: F401
    except ImportError:
        raise BadInput(f"{what} needs the queue of the postgresql extra: pip install 'fetcher[postgresql]'") from None


@contextmanager
def database_trouble(config: Config) -> Iterator[None]:
    """The queue's database failing (down, refusing us) is one StoreError line,
    its URL shown without the password."""
    import procrastinate
    import psycopg

    try:
        yield
    except (psycopg.Error, procrastinate.exceptions.ProcrastinateException) as error:
        raise StoreError(f"{config.database_display}: {error}") from error


def queued_refresh(config: Config, sources: list[Source], *, everything: bool, archive: bool, recheck: bool,
                   wait: bool, as_json: bool) -> RunSummary | None:
    """Queue the due sources as one run; unless not `wait`, follow it to the end
    and return its summary (None: queued, not followed)."""
    needs_queue("a refresh on a PostgreSQL store")
    with database_trouble(config):
        return _queued_refresh(config, sources, everything=everything, archive=archive, recheck=recheck, wait=wait,
                               as_json=as_json)


def _queued_refresh(config: Config, sources: list[Source], *, everything: bool, archive: bool, recheck: bool,
                    wait: bool, as_json: bool) -> RunSummary | None:
    with closing(open_store(config)) as store:
        return _queue_and_follow(config, store, sources, everything=everything, archive=archive, recheck=recheck,
                                 wait=wait, as_json=as_json)


def _queue_and_follow(config: Config, store: Store, sources: list[Source], *, everything: bool, archive: bool,
                      recheck: bool, wait: bool, as_json: bool) -> RunSummary | None:
    from fetcher.run.distributed import follow, queue_run
    from fetcher.run.options import FetchOptions

    options = FetchOptions(archive=archive, recheck_archive=recheck)
    queued = run_cancellable(queue_run(config, store, sources, trigger="refresh", everything=everything,
                                       options=options))
    if not wait:
        if as_json:
            print_json({"run_id": queued.run_id, "queued": queued.total})
        else:
            click.echo(f"run {queued.run_id} queued: {queued.total} sources for the workers;"
                       " `fetcher status` shows its progress")
        return None
    log.info("run %d queued: %d sources; following it (Ctrl-C stops following, not the run)",
             queued.run_id, queued.total)
    if queued.total and not workers_status(config)[1]["workers"]:
        log.warning("no worker is running on this store: the run waits for one (start `fetcher worker`)")
    progress = run_progress()
    progress.start(queued.total)
    reported = [time.monotonic()]

    def shown(seen: object) -> None:
        from fetcher.run.board import Progress

        assert isinstance(seen, Progress)
        progress.move_to(seen.done)
        if not progress.shown and time.monotonic() - reported[0] >= REPORT_EVERY:
            reported[0] = time.monotonic()
            log.info("run %d: %d of %d sources done", queued.run_id, seen.done, seen.total)

    try:
        return run_cancellable(follow(config, store, queued.run_id, shown))
    except Interrupted:
        raise Interrupted(f"stopped following run {queued.run_id}; the workers go on with it") from None
    finally:
        progress.stop()


async def queued_schedule_job(config: Config) -> None:
    """The scheduler's job on a PostgreSQL store: queue the due sources (the
    workers fetch them); the run's summary is logged by whoever records its end."""
    from fetcher.run.distributed import queue_run

    store = open_store(config)
    try:
        with database_trouble(config):
            queued = await queue_run(config, store, list(config.sources), trigger="schedule")
    except Busy as error:
        log.warning("run skipped: %s", error)
        return
    except StoreError as error:
        log.error("run not queued: %s", error)
        return
    finally:
        store.close()
    fields = {"run_id": queued.run_id, "queued": queued.total}
    log.info("run queued: %s", json.dumps(fields), extra={logs.FIELDS: fields})


def workers_status(config: Config) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """`status` on a PostgreSQL store: the unfinished queued run and the live
    workers (heard from within the lease), each with what it is fetching."""
    import psycopg

    from fetcher.run import board

    with database_trouble(config), psycopg.connect(config.database or "", autocommit=True) as db:
        if not board.has_schema(db):
            return [("workers", "none has run yet")], {"queued_run": None, "workers": []}
        queued = board.open_run(db)
        workers = list(board.live_workers(db, config.workers.lease))
    lines = []
    if queued is not None:
        lines.append(("queued run", f"{queued[0]}: {queued[1].done} of {queued[1].total} sources done"))
    lines.append(("workers", f"{len(workers)} live" if workers else "none live"))
    for one in workers:
        doing = ", ".join(one.doing[:3]) + (f" (+{len(one.doing) - 3})" if len(one.doing) > 3 else "")
        lines.append((f"  {one.name}", f"{one.concurrency} at a time; " + (f"fetching {doing}" if doing else "idle")))
    fields = {
        "queued_run": {"run_id": queued[0], "done": queued[1].done, "total": queued[1].total} if queued else None,
        "workers": [{"name": w.name, "started_at": rfc3339(w.started_at), "seen_at": rfc3339(w.seen_at),
                     "concurrency": w.concurrency, "fetching": list(w.doing)} for w in workers],
    }
    return lines, fields
