"""One recorded refresh run: take the store's run lock, pick the due sources,
record the run's start, fetch, record its end. The CLI's `refresh` and the
scheduler's jobs both run through here.

A stop request (the `stop` event: SIGTERM or SIGINT) starts no new source;
sources in flight get `grace` seconds to finish, then are cancelled. The run is
recorded as interrupted with the counts of what it did.

A run has one duration: it ends when its last source is done and the pipeline
has closed (background archive saves finished, extraction workers stopped), and
that one moment is both the summary's `finished_at` (and `seconds`) and the run
record's (`fetcher runs`, `fetcher status`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace

from fetcher.core.config import Config
from fetcher.core.health import due_sources, state_counts
from fetcher.core.models import RunSummary, Snapshot, Source
from fetcher.core.timestamps import WallClock, utc_now
from fetcher.run.pipeline import FetchOptions, Pipeline
from fetcher.run.tally import Tally
from fetcher.store.sqlite import Store, StoreError

log = logging.getLogger("fetcher")


async def run_once(
    config: Config,
    store: Store,
    sources: list[Source],
    *,
    trigger: str,
    everything: bool = False,
    options: FetchOptions = FetchOptions(),
    on_start: Callable[[int], None] = lambda _: None,
    on_done: Callable[[Snapshot], None] = lambda _: None,
    wall_clock: WallClock = utc_now,
    make_pipeline: Callable[[], Pipeline] | None = None,
    stop: asyncio.Event | None = None,
) -> RunSummary:
    """Refresh the due sources (all of them with `everything`). Raises lock.Busy
    when another run holds the store; records the run however it ends."""
    started = wall_clock()
    with store.run_lock() as lock:
        lock.acquire(started, trigger)
        if removed := store.remove_stale_temporaries():
            log.info("removed %d half-written body files left by a killed run", removed)
        known = store.all_health()
        chosen = sources if everything else due_sources(sources, known, config.refresh, started)
        run_id = store.start_run(started, trigger)
        log.info("run %d started (%s): %d of %d sources due", run_id, trigger, len(chosen), len(sources))
        on_start(len(chosen))
        tally = Tally(started)
        summary, status = None, "failed"
        try:
            stopping = False
            if chosen:  # nothing due: no client, no pool, no extractor to set up
                pipeline = make_pipeline() if make_pipeline else Pipeline(config, store, processes=len(chosen) > 1)
                async with pipeline:
                    summary = await _until_stopped(
                        pipeline, pipeline.refresh(chosen, on_done=on_done, options=options, tally=tally, health=known),
                        stop, config.schedule.shutdown_grace,
                    ) or tally.summary(wall_clock())
                stopping, known = pipeline.stopping, store.all_health()
            status = "interrupted" if stopping else "completed"
            health = state_counts(list(config.sources), known, config.refresh)
            summary = replace(summary or tally.summary(wall_clock()), finished_at=wall_clock(),
                              not_due=len(sources) - len(chosen), health=health, interrupted=stopping)
            return summary
        except asyncio.CancelledError:
            status = "interrupted"
            raise
        finally:
            summary = summary or replace(tally.summary(wall_clock()), interrupted=status == "interrupted")
            _finish(store, run_id, status, summary)


async def _until_stopped(
    pipeline: Pipeline, refresh: Awaitable[RunSummary], stop: asyncio.Event | None, grace: float
) -> RunSummary | None:
    """Run the refresh; once `stop` is set, start nothing new and give the sources
    in flight `grace` seconds before cancelling them (then None: the tally says
    what was done)."""
    if stop is None:
        return await refresh
    task = asyncio.ensure_future(refresh)
    try:
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if not task.done():
            pipeline.stop()
            log.info("stopping: no new source starts; %gs for the sources in flight", grace)
            await asyncio.wait({task}, timeout=grace)
        if not task.done():
            log.warning("abandoning the sources still in flight")
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return None
        return task.result()
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def _finish(store: Store, run_id: int, status: str, summary: RunSummary) -> None:
    """Record the run's end: the summary's own finished_at, so both say one duration."""
    try:
        store.finish_run(run_id, summary.finished_at, status, summary.to_dict())
    except StoreError as error:  # the run is already failing for this reason, or about to
        log.error("could not record the end of run %d: %s", run_id, error)
        return
    log.info("run %d %s", run_id, status)
