"""A run's sources handed to its workers host by host, so that no worker waits
on a busy host while another host has work and a free turn.

Each host has `per_host` turns (its `per_host_concurrency`). A worker takes
the next source of the next host, round-robin, that has a free turn; the turn
is given back as soon as that source's download is over (its extraction and
storing need no turn), or when its fetch ends without one. With one worker the
order is the hosts interleaved, each keeping its own order.

A turn also carries the fetch's place among a run's `concurrency` downloads
(Turn.hold_place), given back with it: the next source starts while this one
is extracted and stored. A request the fetch still sends after that takes a
place of its own while it is in flight (fetcher.net.places: the engine gives
the turn back with `download_over`, the fetch holding it as its `holding`).

A worker that took a source of a host whose every turn was held (one list
interleaved by host) waited in the downloader for that host's slot while some
other host stood idle: on the bench's 400-source night (10 hosts, 2 turns each,
20 workers) connections sat idle ~0.25 s in all, ~0.17 s of it for that.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from itertools import zip_longest

from fetcher.core.models import Source
from fetcher.core.sources import host_of


class Turn:
    """One host's turn, held by one fetch, and the fetch's place in its run when
    it holds one; each goes back once, however often it is given back."""

    def __init__(self, queue: HostQueue, host: str):
        self._queue = queue
        self._host = host
        self._held = True
        self._leave: Callable[[], None] | None = None

    def give_back(self) -> None:
        """The host's turn, and the place if one is held."""
        if self._held:
            self._held = False
            self._queue._returned(self._host)
        leave, self._leave = self._leave, None
        if leave is not None:
            leave()

    def hold_place(self, leave: Callable[[], None]) -> None:
        """The fetch also holds a place in its run; `leave` gives it back."""
        self._leave = leave


def by_host(sources: Iterable[Source]) -> dict[str, list[Source]]:
    """Each host's sources, in their order, the hosts in the order they first come."""
    hosts: dict[str, list[Source]] = {}
    for source in sources:
        hosts.setdefault(host_of(source.url), []).append(source)
    return hosts


def interleave_by_host(sources: Iterable[Source]) -> Iterator[Source]:
    """Round-robin over hosts, keeping each host's own order (the order one
    worker gets from a HostQueue; a queued run's board is put in this order)."""
    for row in zip_longest(*by_host(sources).values()):
        yield from (source for source in row if source is not None)


class HostQueue:
    """Use from one event loop. A turn given back wakes one waiting worker (not
    all of them: with one host and 80 workers that was 79 wake-ups a request);
    a host's last source leaves the round at once (O(1): 20,000 hosts of one
    source each are handed out in tens of milliseconds)."""

    def __init__(self, sources: Iterable[Source], per_host: int):
        self._per_host = max(1, per_host)
        self._waiting = {host: deque(own) for host, own in by_host(sources).items()}
        self._hosts = deque(self._waiting)  # round-robin: the next host to offer is first
        self._held: dict[str, int] = dict.fromkeys(self._waiting, 0)
        self._sleepers: deque[asyncio.Future[None]] = deque()

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
                        self._hosts.pop()  # the host just went to the end of the round
                    self._held[host] += 1
                    return source, Turn(self, host)
            woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._sleepers.append(woken)
            try:
                await woken
            except asyncio.CancelledError:
                if woken.done() and not woken.cancelled():  # woken, then cancelled: the wake-up is passed on
                    self._wake(1)
                raise
        return None

    def _returned(self, host: str) -> None:
        self._held[host] -= 1
        self._wake(1 if self._hosts else len(self._sleepers))  # none left to take: every waiter ends

    def _wake(self, count: int) -> None:
        while count > 0 and self._sleepers:
            sleeper = self._sleepers.popleft()
            if not sleeper.done():
                sleeper.set_result(None)
                count -= 1
