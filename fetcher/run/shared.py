"""Per-host limits kept across every worker of a PostgreSQL store (fetcher.net.hosts.Slots).

Concurrency: a host has `per_host_concurrency` slots, each a PostgreSQL session
advisory lock (the host's hash, slot number) taken on one of this worker's own
connections (CONNECTIONS of them, so that statements for different hosts do not
queue behind each other; a host's slots are always on the same one). A worker
that dies loses its connections, and the server releases its locks with them:
a killed worker never holds a host's slot. (A session may take its own lock
again, so the worker also keeps the slots it holds in a set.)

This worker's tasks after one host wait in line, in order. A slot a task gives
back goes straight to the next task in line, with no statement. With no one in
line it is kept LINGER (0.2 s) for this worker's next task for the host (a job's
sources come in waves), then unlocked in the background, and the other workers,
polling for it (10 ms, backing off to 100 ms), take it. Only the first
`per_host_concurrency` tasks of a line ask the database (the others wait in the
worker, asking nothing), and none asks for a slot this worker holds already.
Before, every request locked and unlocked its slot: two statements queued on a
connection shared with other hosts, 65 ms a request at the median on W2 of
2,000 sources over 40 hosts (one worker); now a run of one worker locks each
host's slots once.

Pacing: one row per host (fetcher_host_pace) holds when the next request may
start. A slot holder takes the host's turn in one atomic statement when that
time has come, stamping the next one `delay` later on the database's clock
(else it sleeps until then and tries again); with no delay, no turn is taken.
Every worker reads the one database clock, so machines' clocks need not agree.
The delay is the turn taker's own (its `per_host_delay`, or the host's
Crawl-delay as it last read it), and a taker whose delay is longer than the
stamper's waits for the difference too: two starts are as far apart as the
longer delay of the two workers. (Until 2026-12-07 the row kept the longest
delay any worker ever took a turn with, for good: a `per_host_delay` lowered
in the config, or a Crawl-delay the owner removed, never took effect.)
"""

from __future__ import annotations

import asyncio
import itertools
import random
import zlib
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg

from fetcher.net.hosts import CrawlDelays, Sleep

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
    next_start = clock_timestamp() + make_interval(secs => %(delay)s),
    delay = %(delay)s
WHERE p.next_start + make_interval(secs => greatest(p.delay, %(delay)s) - p.delay) <= clock_timestamp()
RETURNING 0.0
"""
# Else how long until it comes.
_WAIT = """
SELECT greatest(extract(epoch FROM next_start - clock_timestamp()) + greatest(%(delay)s - delay, 0), 0.001)
FROM fetcher_host_pace WHERE host = %(host)s
"""

_UNLOCK = "SELECT pg_advisory_unlock(%s, %s)::int"

POLL_FIRST, POLL_MOST = 0.01, 0.1  # seconds between tries for a busy host's slot
LINGER = 0.2  # seconds a slot no task of this worker wants is kept for the next before it is unlocked
CONNECTIONS = 4  # a host's slots are all on one of these (by its key): hosts' statements go side by side


def host_key(host: str) -> int:
    """The host's advisory lock class: a stable signed 32-bit hash (two hosts
    that share one only share their slots, which errs on the polite side)."""
    return zlib.crc32(host.encode("utf-8")) - (1 << 31)


class SharedHostSlots:
    """Use as `async with SharedHostSlots(url, per_host, delay) as slots:`."""

    def __init__(self, url: str, per_host: int, delay: float, sleep: Sleep = asyncio.sleep, linger: float = LINGER):
        self._url = url
        self._linger = linger
        self._per_host = per_host
        self._delay = delay
        self._sleep = sleep
        self._crawl = CrawlDelays()
        self._held: set[tuple[int, int]] = set()  # (host key, slot number) locked by this worker
        self._lines: dict[int, deque[asyncio.Future[int]]] = defaultdict(deque)  # host key: this worker's waiters
        self._idle: dict[tuple[int, int], asyncio.TimerHandle] = {}  # held, kept LINGER s for this worker's next task
        self._unlocking: dict[tuple[int, int], asyncio.Task[None]] = {}  # slots given back to every worker
        self._turns = [asyncio.Lock() for _ in range(CONNECTIONS)]  # one statement at a time on a connection
        self.statements = 0  # sent to the database for slots (the tests read it)

    async def __aenter__(self) -> SharedHostSlots:
        self._dbs = [await psycopg.AsyncConnection.connect(self._url, autocommit=True) for _ in range(CONNECTIONS)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for timer in self._idle.values():
            timer.cancel()
        await asyncio.gather(*self._unlocking.values(), return_exceptions=True)
        for db in self._dbs:
            await db.close()  # and with it, any lock still held

    @asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        key = host_key(host)
        number = await self._take_slot(key)
        try:
            if self._delay_of(host) > 0:
                await self._take_turn(host)
            yield
        finally:
            self._give_back(key, number)

    def _give_back(self, key: int, number: int) -> None:
        """To this worker's next task in the host's line; else kept `linger` seconds
        for the next one to come, then given back to every worker."""
        line = self._lines[key]
        if line:  # (a waiter leaves the line before it is done otherwise: _leave_line)
            line.popleft().set_result(number)
            return
        self._idle[(key, number)] = asyncio.get_running_loop().call_later(self._linger, self._release, key, number)

    def _release(self, key: int, number: int) -> None:
        """An idle slot's lock given up, in the background."""
        del self._idle[(key, number)]
        self._unlocking[(key, number)] = asyncio.ensure_future(self._unlock(key, number))

    async def _unlock(self, key: int, number: int) -> None:
        try:
            await self._query_one(key, _UNLOCK, (key, number))
        finally:
            self._held.discard((key, number))
            del self._unlocking[(key, number)]

    def crawl_delay(self, host: str, robots_url: str, delay: float) -> None:
        """The Crawl-delay `robots_url` gives us as last read (0: none), as HostSlots
        takes it; the turns this worker takes from now on space the host's starts
        by it, for every worker."""
        self._crawl.note(host, robots_url, delay)

    async def _take_turn(self, host: str) -> None:
        """Wait for the host's next start, and take it (one slot holder at a time gets there)."""
        while True:
            params = {"host": host, "delay": self._delay_of(host)}
            wait = await self._safely(self._query_one, host_key(host), _TAKE_TURN, params, _WAIT)
            if wait <= 0:
                return
            await self._sleep(wait)

    def _delay_of(self, host: str) -> float:
        return self._crawl.spacing(host, self._delay)

    async def _take_slot(self, key: int) -> int:
        """A slot of the host's: handed over by this worker's task before in line,
        or, from the head of the line, a free one locked (polling, backing off,
        while other workers hold them all)."""
        line = self._lines[key]
        handed: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        line.append(handed)
        pause, taken = POLL_FIRST, None
        try:
            while taken is None and not handed.done():
                if handed in itertools.islice(line, self._per_host):
                    taken = await self._free_slot(key)
                if taken is None:
                    await asyncio.wait({handed}, timeout=pause * (0.5 + random.random()))  # noqa: S311
                    pause = min(pause * 2, POLL_MOST)
        except BaseException:
            self._leave_line(key, handed, failing=True)
            raise
        spare = self._leave_line(key, handed, failing=False)
        if taken is None:
            assert spare is not None
            return spare
        if spare is not None:
            self._give_back(key, spare)
        return taken

    def _leave_line(self, key: int, handed: asyncio.Future[int], *, failing: bool) -> int | None:
        """Out of the host's line: the slot handed over meanwhile, if one was (if
        `failing`, as when cancelled, it is passed on)."""
        line = self._lines[key]
        if handed in line:
            line.remove(handed)
        if not handed.done():
            handed.cancel()
            return None
        if failing:
            self._give_back(key, handed.result())
            return None
        return handed.result()

    async def _free_slot(self, key: int) -> int | None:
        """A slot no one uses, taken: one this worker holds idle (no statement),
        else one no worker holds; None if every one is in use. (One being
        unlocked is waited for.)"""
        first = random.randrange(self._per_host)  # noqa: S311 - spreads workers over the slots
        for offset in range(self._per_host):
            number = (first + offset) % self._per_host
            idle = self._idle.pop((key, number), None)
            if idle is not None:
                idle.cancel()
                return number
        for offset in range(self._per_host):
            number = (first + offset) % self._per_host
            unlocking = self._unlocking.get((key, number))
            if unlocking is not None:
                await asyncio.shield(unlocking)
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
                await self._safely(self._query_one, key, _UNLOCK, (key, number))
            raise

    async def _safely(self, query: Any, *args: Any) -> float:
        """A statement that a cancellation of its caller cannot cut in half."""
        return float(await asyncio.shield(asyncio.ensure_future(query(*args))))

    async def _query_one(self, key: int, sql: str, params: Any, otherwise: str | None = None) -> float:
        """The first column of the statement's row (on the host's connection); with
        no row, of `otherwise`'s."""
        db = self._dbs[key % CONNECTIONS]
        self.statements += 1
        async with self._turns[key % CONNECTIONS]:
            cursor = await db.execute(sql, params)
            row = await cursor.fetchone()
            if row is None and otherwise is not None:
                row = await (await db.execute(otherwise, params)).fetchone()
        assert row is not None
        return float(row[0])
