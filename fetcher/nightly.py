"""One recorded refresh run: take the store's run lock, pick the due sources,
record the run's start, fetch, record its end. The CLI's `refresh` and the
scheduler's jobs both run through here."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace

from fetcher.audit import state_counts
from fetcher.config import Config
from fetcher.health import due_sources
from fetcher.lock import RunLock
from fetcher.models import RunSummary, Snapshot, Source
from fetcher.pipeline import FetchOptions, Pipeline, WallClock, utc_now
from fetcher.store import Store

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
) -> RunSummary:
    """Refresh the due sources (all of them with `everything`). Raises lock.Busy
    when another run holds the store; records the run either way it ends."""
    started = wall_clock()
    with RunLock(config.storage_dir) as lock:
        lock.acquire(started, trigger)
        if removed := store.remove_stale_temporaries():
            log.info("removed %d half-written body files left by a killed run", removed)
        chosen = sources if everything else due_sources(sources, store.all_health(), config.refresh, started)
        run_id = store.start_run(started, trigger)
        log.info("run %d started (%s): %d of %d sources due", run_id, trigger, len(chosen), len(sources))
        on_start(len(chosen))
        summary, status = None, "failed"
        try:
            pipeline = make_pipeline() if make_pipeline else Pipeline(config, store, processes=len(chosen) > 1)
            async with pipeline:
                summary = await pipeline.refresh(chosen, on_done=on_done, options=options)
            health = state_counts(list(config.sources), store.all_health(), config)
            summary = replace(summary, not_due=len(sources) - len(chosen), health=health)
            status = "completed"
            return summary
        except asyncio.CancelledError:
            status = "interrupted"
            raise
        finally:
            store.finish_run(run_id, wall_clock(), status, summary.to_dict() if summary else None)
            log.info("run %d %s", run_id, status)
