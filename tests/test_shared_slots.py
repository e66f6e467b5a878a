"""The per-host slots shared by workers (fetcher.run.shared) on real PostgreSQL:
a slot given back stays its worker's for a moment (its next source of the host
takes it with no statement), then is free for every worker."""

from __future__ import annotations

import asyncio
import time

import psycopg

from fetcher.run.shared import LINGER, SharedHostSlots


def advisory_locks(url: str) -> list[int]:
    """The backends holding an advisory lock, one entry a lock."""
    with psycopg.connect(url) as db:
        rows = db.execute("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted").fetchall()
    return [row[0] for row in rows]


def test_a_slot_given_back_stays_a_moment_then_another_worker_takes_it(pg_url):
    async def scenario() -> tuple[float, list[int], list[int], list[int]]:
        async with SharedHostSlots(pg_url, 1, 0.0) as first, SharedHostSlots(pg_url, 1, 0.0) as second:
            async with first.slot("a.example"):
                pass
            kept = advisory_locks(pg_url)  # given back, still locked: this worker's next source of the host
            async with first.slot("a.example"):
                again = advisory_locks(pg_url)
            began = time.monotonic()
            async with second.slot("a.example"):  # the other worker gets it once LINGER is over
                waited = time.monotonic() - began
                during = advisory_locks(pg_url)
        return waited, kept, again, during

    waited, kept, again, during = asyncio.run(scenario())
    assert len(kept) == 1 and again == kept  # the same lock, not taken twice
    assert len(during) == 1 and during != kept  # one holder at a time: now the second worker
    assert LINGER * 0.8 <= waited < LINGER + 1.0
    assert advisory_locks(pg_url) == []  # workers gone: nothing held


def test_spare_slots_never_let_a_host_exceed_its_limit_over_two_workers(pg_url):
    """Two workers, 2 slots a host, 30 short requests each to one host: never more
    than 2 in flight at once, spare slots or not."""
    async def scenario() -> int:
        in_flight = peak = 0

        async def request(slots: SharedHostSlots) -> None:
            nonlocal in_flight, peak
            async with slots.slot("b.example"):
                in_flight += 1
                peak = max(peak, in_flight)
                await asyncio.sleep(0.005)
                in_flight -= 1

        async with SharedHostSlots(pg_url, 2, 0.0) as first, SharedHostSlots(pg_url, 2, 0.0) as second:
            await asyncio.gather(*(request(slots) for slots in (first, second) for _ in range(30)))
        return peak

    assert asyncio.run(scenario()) == 2
