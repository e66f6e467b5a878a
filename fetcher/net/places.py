"""A run's places: no more than its `concurrency` requests in flight at once.

A fetch takes a place before its first request and gives it back once its
download is over (`download_over`), so the next source downloads while this
one is extracted and stored: in a run, the place comes with its host's turn
(fetcher.run.hostqueue.Turn); in `fetcher worker`, it is one of the worker's
`concurrency` (a `Place`). A request still sent after that — the host's
soft-404 probe, the archive's lookup, copy and Save Page Now — takes a place of
its own for as long as it is in flight (`in_flight`). The archive's is taken
before its rate limiter's turn, so the request goes out at its turn, by one
caller at a time (fetcher.net.archive): at most one place waits on the
archive's pace. Outside a run or a worker (a one-off fetch) none is needed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Protocol


class Holding(Protocol):
    """What a fetch holds until its download is over; given back once, however often asked."""

    def give_back(self) -> None: ...


class Place:
    """A fetch's place and nothing else (`fetcher worker`'s); `leave` gives it back, once."""

    def __init__(self, leave: Callable[[], None]):
        self._leave: Callable[[], None] | None = leave

    def give_back(self) -> None:
        leave, self._leave = self._leave, None
        if leave is not None:
            leave()


# What the current fetch holds (each fetch is its own task, so its own context).
holding: ContextVar[Holding | None] = ContextVar("holding", default=None)


def download_over() -> None:
    """The current fetch needs what it holds (its place; in a run, its host's turn too) no more."""
    held = holding.get()
    if held is not None:
        held.give_back()


# Set by a run (or a worker) for its fetches' tasks and the tasks they start; unset outside.
run_places: ContextVar[asyncio.Semaphore | None] = ContextVar("run_places", default=None)


@asynccontextmanager
async def in_flight() -> AsyncIterator[None]:
    """A place among the run's requests, held while the block runs."""
    places = run_places.get()
    if places is None:
        yield
        return
    async with places:
        yield
