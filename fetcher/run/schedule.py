"""`fetcher schedule`: the nightly refresh on a cron schedule, with APScheduler.

Missed runs are coalesced into one, a job never runs twice at once, and a stop
request (SIGTERM/SIGINT) lets the run in flight finish for `grace` seconds, then
cancels it: each fetch is stored whole or not at all, so the store stays sound.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

from fetcher.core.cron import parse_cron

log = logging.getLogger("fetcher")
CANCEL_MARGIN = 0.5  # seconds past the grace before a run that did not stop is cancelled
MISFIRE_GRACE = 6 * 3600  # a run missed by less than this (machine asleep, say) still happens, once


def cron_trigger(cron: str, timezone: str) -> CronTrigger:
    """The trigger for a crontab line, weekdays read as cron reads them (see fetcher.core.cron)."""
    fields = parse_cron(cron)
    return CronTrigger(
        minute=fields.minute, hour=fields.hour, day=fields.day, month=fields.month,
        day_of_week=fields.day_of_week, timezone=ZoneInfo(timezone),
    )


def next_fire(trigger: BaseTrigger, now: datetime) -> datetime | None:
    return trigger.get_next_fire_time(None, now)


class Nightly:
    """Runs `job` on `trigger` until `stop()`; at most one job at a time."""

    def __init__(self, trigger: BaseTrigger, job: Callable[[], Awaitable[object]], grace: float):
        self._trigger = trigger
        self._job = job
        self._grace = grace
        self.stopping = asyncio.Event()  # jobs may watch it to wind down on their own
        self._running: asyncio.Task | None = None
        self.runs_started = 0

    def stop(self) -> None:
        self.stopping.set()

    async def serve(self, run_now: bool = False) -> None:
        scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop())
        scheduler.add_job(
            self._once, self._trigger, id="refresh", coalesce=True, max_instances=1, misfire_grace_time=MISFIRE_GRACE
        )
        scheduler.start()
        log.info("scheduler started; next run at %s", scheduler.get_job("refresh").next_run_time)
        try:
            if run_now:
                asyncio.get_running_loop().create_task(self._once())
            await self.stopping.wait()
        finally:
            scheduler.shutdown(wait=False)
            await self._finish_or_abandon()
            log.info("scheduler stopped")

    async def _once(self) -> None:
        if self._running is not None and not self._running.done():
            log.warning("a run is still going: this one is skipped")
            return
        self.runs_started += 1
        self._running = asyncio.current_task()
        try:
            await self._job()
        except asyncio.CancelledError:
            if not self.stopping.is_set():
                raise
        finally:
            self._running = None

    async def _finish_or_abandon(self) -> None:
        running = self._running
        if running is None or running.done():
            return
        log.info("waiting up to %gs for the run in flight", self._grace)
        # A job that watches `stopping` winds down within the grace itself; the
        # margin lets it record how it ended before it is cancelled.
        done, _ = await asyncio.wait({running}, timeout=self._grace + CANCEL_MARGIN)
        if not done:
            log.warning("abandoning the run in flight")
            running.cancel()
            await asyncio.wait({running})
