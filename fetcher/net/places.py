"""A run's places: no more than its `concurrency` requests in flight at once.

A run's worker takes a place before it takes a source and gives it back once
the source's download is over (fetcher.run.hostqueue), so the next source
downloads while this one is extracted and stored. A request still sent after
that — the host's soft-404 probe, the archive's lookup, copy and Save Page
Now — takes a place of its own for as long as it is in flight (`in_flight`).
The archive's is taken before its rate limiter's turn, so the request goes out
at its turn, by one caller at a time (fetcher.net.archive): at most one place
waits on the archive's pace. Outside a run (a one-off fetch; `fetcher worker`,
whose fetches each hold one of its places throughout) none is needed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar

# Set by a run for its workers' tasks and the tasks they start; unset outside a run.
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
