"""A run's sources handed to its workers host by host, so that no worker waits
on a busy host while another host has work and a free turn.

Each host has `per_host` turns (its `per_host_concurrency`). A worker takes
the next source of the next host, round-robin, that has a free turn; the turn
is given back as soon as that source's download is over (its extraction and
storing need no turn), or when its fetch ends without one. With one worker the
order is the hosts interleaved, each keeping its own order.

A worker that took a source of a host whose every turn was held (one list
interleaved by host) waited in the downloader for that host's slot while some
other host stood idle: on the bench's 400-source night (10 hosts, 2 turns each,
20 workers) connections sat idle ~0.25 s in all, ~0.17 s of it for that.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from contextvars import ContextVar

from fetcher.core.models import Source
from fetcher.core.sources import host_of


class Turn:
    """One host's turn, held by one fetch; `give_back()` may be called any number of times."""

    def __init__(self, queue: HostQueue, host: str):
        self._queue = queue
        self._host = host
        self._held = True

    def give_back(self) -> None:
        if self._held:
            self._held = False
            self._queue._returned(self._host)


# The turn the current fetch holds (each worker is its own task, so its own
# context); the engine gives it back once the download is over.
current_turn: ContextVar[Turn | None] = ContextVar("current_turn", default=None)


def download_over() -> None:
    """The current fetch needs its host's turn no more."""
    turn = current_turn.get()
    if turn is not None:
        turn.give_back()


class HostQueue:
    """Use from one event loop."""

    def __init__(self, sources: Iterable[Source], per_host: int):
        self._per_host = max(1, per_host)
        self._waiting: dict[str, deque[Source]] = {}
        for source in sources:
            self._waiting.setdefault(host_of(source.url), deque()).append(source)
        self._hosts = deque(self._waiting)  # round-robin: the next host to offer is first
        self._held: dict[str, int] = dict.fromkeys(self._waiting, 0)
        self._change = asyncio.Event()

    def __len__(self) -> int:
        return sum(len(waiting) for waiting in self._waiting.values())

    async def take(self) -> tuple[Source, Turn] | None:
        """The next source and its host's turn; None when every source is taken.
        Waits while every host with sources left has all its turns held."""
        while self._hosts:
            for _ in range(len(self._hosts)):
                host = self._hosts[0]
                self._hosts.rotate(-1)
                if self._held[host] < self._per_host:
                    waiting = self._waiting[host]
                    source = waiting.popleft()
                    if not waiting:
                        self._hosts.remove(host)
                    self._held[host] += 1
                    return source, Turn(self, host)
            self._change.clear()
            await self._change.wait()
        return None

    def _returned(self, host: str) -> None:
        self._held[host] -= 1
        self._change.set()
