"""Per-host politeness: at most N requests in flight to one host, and a minimum
delay between the starts of two requests to it. Clock and sleep are injected."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass
class _Host:
    slots: asyncio.Semaphore
    turn: asyncio.Lock = field(default_factory=asyncio.Lock)
    next_start: float = float("-inf")


class HostSlots:
    def __init__(self, per_host: int, delay: float, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep):
        self._per_host = per_host
        self._delay = delay
        self._clock = clock
        self._sleep = sleep
        self._hosts: dict[str, _Host] = {}

    @asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        state = self._hosts.get(host)
        if state is None:
            state = self._hosts[host] = _Host(asyncio.Semaphore(self._per_host))
        async with state.slots:
            async with state.turn:
                wait = state.next_start - self._clock()
                if wait > 0:
                    await self._sleep(wait)
                state.next_start = max(self._clock(), state.next_start) + self._delay
            yield
