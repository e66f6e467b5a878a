"""Per-host politeness: at most N requests in flight to one host, and a minimum
delay between the starts of two requests to it. Clock and sleep are injected.

`Slots` is what the downloader and the robots.txt gate need of it: HostSlots
keeps the limits within one process; fetcher.run.shared keeps them across
every worker of a PostgreSQL store, behind the same two methods."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class Slots(Protocol):
    """A host's turn: `slot(host)` is held for one request (its start paced);
    `crawl_delay` sets what one of the host's robots.txt (one per scheme and
    port) asks for: the host's starts are spaced by the largest of those and
    `per_host_delay`."""

    def slot(self, host: str) -> AbstractAsyncContextManager[None]: ...

    def crawl_delay(self, host: str, robots_url: str, delay: float) -> None: ...


class CrawlDelays:
    """The Crawl-delay each robots.txt of a host (one per scheme and port) gives
    us, as last read: what both kinds of Slots space a host's starts by."""

    def __init__(self) -> None:
        self._asked: dict[str, dict[str, float]] = {}  # host: robots.txt URL: its delay, those that have one

    def note(self, host: str, robots_url: str, delay: float) -> None:
        """`robots_url`'s delay as just read (0: none); a delay no longer asked for is let go."""
        asked = self._asked.setdefault(host, {})
        if delay > 0:
            asked[robots_url] = delay
        else:
            asked.pop(robots_url, None)
        if not asked:
            del self._asked[host]

    def spacing(self, host: str, delay: float) -> float:
        """The host's spacing: `delay` (per_host_delay), or longer if one of its robots.txt asks for longer."""
        asked = self._asked.get(host)
        return max(delay, *asked.values()) if asked else delay


@dataclass
class _Host:
    slots: asyncio.Semaphore
    delay: float
    turn: asyncio.Lock = field(default_factory=asyncio.Lock)
    next_start: float = float("-inf")
    last_start: float = float("-inf")


class HostSlots:
    def __init__(self, per_host: int, delay: float, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep):
        self._per_host = per_host
        self._delay = delay
        self._clock = clock
        self._sleep = sleep
        self._hosts: dict[str, _Host] = {}
        self._crawl = CrawlDelays()

    @asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        state = self._host(host)
        async with state.slots:
            async with state.turn:
                wait = state.next_start - self._clock()
                if wait > 0:
                    await self._sleep(wait)
                state.last_start = max(self._clock(), state.next_start)
                state.next_start = state.last_start + state.delay
            yield

    def crawl_delay(self, host: str, robots_url: str, delay: float) -> None:
        """The Crawl-delay `robots_url` gives us as last read (0: none): from now on the
        host's starts are at least the longest such delay apart, counting from its
        last start, or `per_host_delay` if that is longer. Read again (an engine kept
        for days reads it daily), a delay the owner shortened or removed is let go."""
        self._crawl.note(host, robots_url, delay)
        state = self._host(host)
        state.delay = self._crawl.spacing(host, self._delay)
        state.next_start = state.last_start + state.delay

    def _host(self, host: str) -> _Host:
        state = self._hosts.get(host)
        if state is None:
            state = self._hosts[host] = _Host(asyncio.Semaphore(self._per_host), self._delay)
        return state


class RateLimiter:
    """At most `per_minute` request starts a minute, evenly spaced with a margin
    (so network jitter cannot squeeze one more into the server's minute), and a
    pause that a 429's Retry-After can impose on every caller at once."""

    MARGIN = 1.05

    def __init__(self, per_minute: float, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep):
        self._interval = 60.0 / per_minute * self.MARGIN
        self._clock = clock
        self._sleep = sleep
        self._next = float("-inf")
        self._paused_until = float("-inf")
        self._turn = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._turn:
            while True:
                now = self._clock()
                start = max(now, self._next, self._paused_until)
                if start <= now:
                    break
                await self._sleep(start - now)
            self._next = now + self._interval

    def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, self._clock() + seconds)
