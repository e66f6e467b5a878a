"""The per-host limits shared by workers (fetcher.run.shared), on a real
PostgreSQL: two SharedHostSlots are two workers (each its own connections)."""

from __future__ import annotations

import asyncio

import psycopg

from fetcher.run.shared import PACE_TABLE, POLL_MOST, SharedHostSlots

HOST = "127.0.0.2"


class InFlight:
    """How many hold one host's slot at once, over every worker."""

    def __init__(self) -> None:
        self.now = self.peak = 0
        self.by: list[str] = []

    async def hold(self, slots: SharedHostSlots, who: str, seconds: float = 0.01) -> None:
        async with slots.slot(HOST):
            self.now += 1
            self.peak = max(self.peak, self.now)
            self.by.append(who)
            await asyncio.sleep(seconds)
            self.now -= 1


def test_a_worker_hands_a_hosts_slots_from_task_to_task_without_asking_the_database(pg_url):
    async def go() -> tuple[int, int]:
        seen = InFlight()
        async with SharedHostSlots(pg_url, per_host=2, delay=0) as slots:
            await asyncio.gather(*(seen.hold(slots, "a") for _ in range(20)))
            await asyncio.gather(*(seen.hold(slots, "a") for _ in range(5)))  # a wave later, within the linger
            return seen.peak, slots.statements

    peak, statements = asyncio.run(go())
    assert peak == 2
    assert statements == 2  # each slot locked once (it was 2 a request: lock, unlock)


def test_a_slot_no_task_wants_goes_to_the_other_worker_after_the_linger(pg_url):
    linger = 0.05

    async def go() -> tuple[InFlight, float]:
        seen = InFlight()
        async with SharedHostSlots(pg_url, 2, 0, linger=linger) as one, SharedHostSlots(pg_url, 2, 0, linger=linger) as two:
            first = asyncio.gather(*(seen.hold(one, "one", 0.05) for _ in range(4)))
            await asyncio.sleep(0.01)  # `one` has both slots
            began = asyncio.get_running_loop().time()
            await asyncio.gather(first, *(seen.hold(two, "two") for _ in range(4)))
            return seen, asyncio.get_running_loop().time() - began

    seen, took = asyncio.run(go())
    assert seen.peak == 2  # over both workers
    assert seen.by == ["one"] * 4 + ["two"] * 4  # `one` kept its slots while it had work for the host
    assert took < 0.1 + linger + 2 * POLL_MOST, took


def test_a_task_cancelled_in_line_leaves_no_slot_behind(pg_url):
    async def go() -> int:
        seen = InFlight()
        async with SharedHostSlots(pg_url, 2, 0, linger=0.01) as slots:
            holders = [asyncio.ensure_future(seen.hold(slots, "a", 0.05)) for _ in range(2)]
            waiting = [asyncio.ensure_future(seen.hold(slots, "a")) for _ in range(3)]
            await asyncio.sleep(0.01)
            for task in waiting:
                task.cancel()
            await asyncio.gather(*holders, *waiting, return_exceptions=True)
            await asyncio.sleep(0.05)  # the slots are unlocked after the linger
        async with SharedHostSlots(pg_url, 2, 0) as other:  # another worker gets both at once
            await asyncio.wait_for(asyncio.gather(*(seen.hold(other, "b", 0.05) for _ in range(2))), 1)
        return seen.peak

    assert asyncio.run(go()) == 2


def test_a_hosts_pace_follows_the_delay_each_worker_has_now_not_the_longest_ever(pg_url):
    """A worker whose host's robots.txt asked for a Crawl-delay, then (read again the
    next day) no longer does, goes back to its per_host_delay; a worker started later
    with a shorter per_host_delay uses it. Until both were kept at the longest
    delay ever used, in the database, for good."""
    crawl, short, robots_url = 0.4, 0.05, f"https://{HOST}/robots.txt"
    with psycopg.connect(pg_url, autocommit=True) as db:
        db.execute(PACE_TABLE)

    async def starts(slots: SharedHostSlots, count: int) -> list[float]:
        seen = []
        for _ in range(count):
            async with slots.slot(HOST):
                seen.append(asyncio.get_running_loop().time())
        return seen

    def gaps(seen: list[float]) -> list[float]:
        return [later - earlier for earlier, later in zip(seen, seen[1:])]

    async def go() -> tuple[list[float], list[float], list[float]]:
        async with SharedHostSlots(pg_url, per_host=1, delay=short) as one:
            one.crawl_delay(HOST, robots_url, crawl)
            asked = await starts(one, 3)
            one.crawl_delay(HOST, robots_url, 0)
            await starts(one, 1)  # the turn already stamped with the Crawl-delay is waited for
            let_go = await starts(one, 3)
        async with SharedHostSlots(pg_url, per_host=1, delay=short) as later:
            await asyncio.sleep(crawl)
            restarted = await starts(later, 3)
        return gaps(asked), gaps(let_go), gaps(restarted)

    asked, let_go, restarted = asyncio.run(go())
    assert min(asked) >= crawl - 0.01, asked
    assert max(let_go) < crawl / 2 and min(let_go) >= short - 0.01, let_go
    assert max(restarted) < crawl / 2, restarted
