"""Running a command's async work under SIGTERM and SIGINT: a one-off fetch is
cancelled at once, a refresh stops gently first. Either way the command ends
with Interrupted (exit 130) and what was fetched so far is stored."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from fetcher.core.errors import Interrupted
from fetcher.core.models import RunSummary

T = TypeVar("T")
_CANCELLED = "stopped by a signal; everything fetched so far is stored"


def run_cancellable(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run to completion; SIGTERM or SIGINT cancels it cleanly (exit 130)."""

    async def cancellable() -> T:
        task = _this_task()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, task.cancel)
        return await coroutine

    try:
        return asyncio.run(cancellable())
    except asyncio.CancelledError:
        raise Interrupted(_CANCELLED) from None


def run_stoppable(make_run: Callable[[asyncio.Event], Coroutine[Any, Any, RunSummary]]) -> RunSummary:
    """Run a refresh. The first SIGTERM or SIGINT stops it gently (no new source
    starts, those in flight get [schedule] shutdown_grace); a second one cancels
    at once. Either way the run is recorded, and the command exits 130."""

    async def stoppable() -> RunSummary:
        task = _this_task()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            if stop.is_set():
                task.cancel()
            stop.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal)
        return await make_run(stop)

    try:
        summary = asyncio.run(stoppable())
    except asyncio.CancelledError:
        raise Interrupted(_CANCELLED) from None
    if summary.interrupted:
        raise Interrupted(
            f"stopped by a signal after {summary.total} sources; they are stored, the rest are still due"
        )
    return summary


def _this_task() -> asyncio.Task[Any]:
    """The task running now (there always is one inside asyncio.run)."""
    task = asyncio.current_task()
    assert task is not None
    return task
