"""Per-host limits kept across every worker of a PostgreSQL store (fetcher.net.hosts.Slots).

Concurrency: a host has `per_host_concurrency` slots, each a PostgreSQL session
advisory lock (the host's hash, slot number) taken on one of this worker's own
connections (CONNECTIONS of them, so that statements for different hosts do not
queue behind each other; a host's slots are always on the same one). A worker
that dies loses its connections, and the server releases its locks with them:
a killed worker never holds a host's slot. (A session may take its own lock
again, so the worker also keeps the slots its tasks hold in a set.) A slot a
task gives back goes straight to a task of the same worker waiting for that
host, if there is one; else it is unlocked, and the other workers, polling
for it (10 ms, backing off to 100 ms), take it. At most `per_host_concurrency`
of a worker's tasks are after one host's slots at once (the others wait in the
worker, asking the database nothing).

Pacing: one row per host (fetcher_host_pace) holds when the next request may
start. A slot holder takes the host's turn in one atomic statement when that
time has come, stamping the next one `delay` later on the database's clock
(else it sleeps until then and tries again); with no delay, no turn is taken.
Every worker reads the one database clock, so machines' clocks need not agree.
"""

from __future__ import annotations

import asyncio
import random
import zlib
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg

from fetcher.net.hosts import Sleep

PACE_TABLE = """
CREATE TABLE IF NOT EXISTS fetcher_host_pace (
    host text PRIMARY KEY,
    next_start timestamptz NOT NULL,
    delay double precision NOT NULL
);
"""  # created with the board's tables (fetcher.run.queue.create_schema)

# Take the host's turn if it has come (then 0), stamped with the database's clock
# as it is taken: a worker late to wake does not squeeze the next one's gap.
_TAKE_TURN = """
INSERT INTO fetcher_host_pace AS p (host, next_start, delay)
VALUES (%(host)s, clock_timestamp() + make_interval(secs => %(delay)s), %(delay)s)
ON CONFLICT (host) DO UPDATE SET
    next_start = clock_timestamp() + make_interval(secs => greatest(p.delay, %(delay)s)),
    delay = greatest(p.delay, %(delay)s)
WHERE p.next_start + make_interval(secs => greatest(p.delay, %(delay)s) - p.delay) <= clock_timestamp()
RETURNING 0.0
"""
# Else how long until it comes.
_WAIT = """
SELECT greatest(extract(epoch FROM next_start - clock_timestamp()) + greatest(%(delay)s - delay, 0), 0.001)
FROM fetcher_host_pace WHERE host = %(host)s
"""

POLL_FIRST, POLL_MOST = 0.01, 0.1  # seconds between tries for a busy host's slot
CONNECTIONS = 4  # a host's slots are all on one of these (by its key): hosts' statements go side by side


def host_key(host: str) -> int:
    """The host's advisory lock class: a stable signed 32-bit hash (two hosts
    that share one only share their slots, which errs on the polite side)."""
    return zlib.crc32(host.encode("utf-8")) - (1 << 31)


class SharedHostSlots:
    """Use as `async with SharedHostSlots(url, per_host, delay) as slots:`."""

    def __init__(self, url: str, per_host: int, delay: float, sleep: Sleep = asyncio.sleep):
        self._url = url
        self._per_host = per_host
        self._delay = delay
        self._sleep = sleep
        self._raised: dict[str, float] = {}
        self._held: set[tuple[int, int]] = set()  # (host key, slot number) held by this worker's tasks
        self._waiting: dict[int, deque[asyncio.Future[int]]] = defaultdict(deque)  # host key: this worker's waiters
        # at most per_host of this worker's tasks after one host's slots at once: the rest wait here, not on the database
        self._local: dict[int, asyncio.Semaphore] = defaultdict(lambda: asyncio.Semaphore(per_host))
        self._turns = [asyncio.Lock() for _ in range(CONNECTIONS)]  # one statement at a time on a connection

    async def __aenter__(self) -> SharedHostSlots:
        self._dbs = [await psycopg.AsyncConnection.connect(self._url, autocommit=True) for _ in range(CONNECTIONS)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for db in self._dbs:
            await db.close()  # and with it, any lock still held

    @asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        async with self._local[host_key(host)]:
            number = await self._take_slot(host)
            try:
                if self._delay_of(host) > 0:
                    await self._take_turn(host)
                yield
            finally:
                await self._give_back(host_key(host), number)

    async def _give_back(self, key: int, number: int) -> None:
        """To this worker's next task waiting for the host, else to every worker."""
        waiters = self._waiting[key]
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(number)
                return
        try:
            await self._safely(self._query_one, key, "SELECT pg_advisory_unlock(%s, %s)::int", (key, number))
        finally:
            self._held.discard((key, number))

    def raise_delay(self, host: str, delay: float) -> None:
        """Space the host's starts at least `delay` apart, for every worker: the
        next turn this worker takes raises the host's shared delay."""
        self._raised[host] = max(self._raised.get(host, 0.0), delay)

    async def _take_turn(self, host: str) -> None:
        """Wait for the host's next start, and take it (one slot holder at a time gets there)."""
        while True:
            params = {"host": host, "delay": self._delay_of(host)}
            wait = await self._safely(self._query_one, host_key(host), _TAKE_TURN, params, _WAIT)
            if wait <= 0:
                return
            await self._sleep(wait)

    def _delay_of(self, host: str) -> float:
        return max(self._delay, self._raised.get(host, 0.0))

    async def _take_slot(self, host: str) -> int:
        """A free slot of the host's; while all are held, wait for one of this
        worker's to be handed over, polling (backing off) for another worker's."""
        pause, key = POLL_FIRST, host_key(host)
        while True:
            number = await self._free_slot(key)
            if number is not None:
                return number
            handed: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            self._waiting[key].append(handed)
            try:
                await asyncio.wait({handed}, timeout=pause * (0.5 + random.random()))  # noqa: S311
            finally:
                if handed in self._waiting[key]:
                    self._waiting[key].remove(handed)
                if not handed.done():
                    handed.cancel()
                elif asyncio.current_task().cancelling():  # type: ignore[union-attr]
                    await self._give_back(key, handed.result())  # handed over as we were cancelled: pass it on
            if handed.done() and not handed.cancelled():
                return handed.result()
            pause = min(pause * 2, POLL_MOST)

    async def _free_slot(self, key: int) -> int | None:
        """A slot no one holds, taken; None if every one is held."""
        first = random.randrange(self._per_host)  # noqa: S311 - spreads workers over the slots
        for offset in range(self._per_host):
            number = (first + offset) % self._per_host
            if (key, number) in self._held:
                continue
            self._held.add((key, number))
            taken = False
            try:
                taken = await self._try_lock(key, number)
            finally:
                if not taken:
                    self._held.discard((key, number))
            if taken:
                return number
        return None

    async def _try_lock(self, key: int, number: int) -> bool:
        """Try one slot's lock; a cancellation that lands once it is taken gives it back."""
        attempt = asyncio.ensure_future(
            self._query_one(key, "SELECT pg_try_advisory_lock(%s, %s)::int", (key, number)))
        try:
            return bool(await asyncio.shield(attempt))
        except asyncio.CancelledError:
            if await attempt:
                await self._safely(self._query_one, key, "SELECT pg_advisory_unlock(%s, %s)::int", (key, number))
            raise

    async def _safely(self, query: Any, *args: Any) -> float:
        """A statement that a cancellation of its caller cannot cut in half."""
        return float(await asyncio.shield(asyncio.ensure_future(query(*args))))

    async def _query_one(self, key: int, sql: str, params: Any, otherwise: str | None = None) -> float:
        """The first column of the statement's row (on the host's connection); with
        no row, of `otherwise`'s."""
        db = self._dbs[key % CONNECTIONS]
        async with self._turns[key % CONNECTIONS]:
            cursor = await db.execute(sql, params)
            row = await cursor.fetchone()
            if row is None and otherwise is not None:
                row = await (await db.execute(otherwise, params)).fetchone()
        assert row is not None
        return float(row[0])
