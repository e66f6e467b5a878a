"""When a fetch happened: the moment its first request was sent, not the moment
a worker picked the source up (it may then wait for robots.txt and for its
host's turn). httpx calls a request hook just before each request goes out; the
fetch running in the current task (a context variable) notes the first one."""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from fetcher.net.hosts import Clock


@dataclass
class FetchTiming:
    """When one fetch began and when its first request was sent (monotonic, wall
    clock). Requests count once `armed`: after robots.txt, which belongs to the
    origin rather than the page and is asked once a run, whichever page comes first."""

    began: float
    began_at: datetime
    armed: bool = False
    sent: tuple[float, datetime] | None = None

    @property
    def start(self) -> tuple[float, datetime]:
        """When the first request was sent; when the fetch began if it sent none."""
        return self.sent or (self.began, self.began_at)


_CURRENT: contextvars.ContextVar[FetchTiming | None] = contextvars.ContextVar("fetch_timing", default=None)


@contextmanager
def fetch_timing(clock: Clock, wall_clock: Callable[[], datetime]) -> Iterator[FetchTiming]:
    """The timing of the fetch run in this block (in this task)."""
    current = FetchTiming(clock(), wall_clock())
    token = _CURRENT.set(current)
    try:
        yield current
    finally:
        _CURRENT.reset(token)


def request_hook(clock: Clock, wall_clock: Callable[[], datetime]) -> Callable[[object], Awaitable[None]]:
    """An httpx request hook noting when the current fetch sent its first request."""

    async def sending(request: object) -> None:
        current = _CURRENT.get()
        if current is not None and current.armed and current.sent is None:
            current.sent = (clock(), wall_clock())

    return sending
