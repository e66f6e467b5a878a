"""The order a run hands its sources out in (fetcher.run.hostqueue): hosts in
turn, each keeping its own order, and never a host whose every turn is held
while another host has work."""

from __future__ import annotations

import asyncio

from fetcher.core.sources import make_source
from fetcher.run.hostqueue import HostQueue

SOURCES = [make_source(url) for url in (
    "http://a.test/1", "http://a.test/2", "http://a.test/3", "http://b.test/1", "http://c.test/1", "http://c.test/2",
)]


def test_one_worker_gets_the_hosts_in_turn_each_in_its_own_order():
    async def drain() -> list[str]:
        queue, order = HostQueue(SOURCES, per_host=1), []
        while (taken := await queue.take()) is not None:
            order.append(taken[0].url)
            taken[1].give_back()
        return order

    assert asyncio.run(drain()) == ["http://a.test/1", "http://b.test/1", "http://c.test/1",
                                    "http://a.test/2", "http://c.test/2", "http://a.test/3"]


def test_a_host_whose_turns_are_held_is_passed_over_and_a_worker_waits_only_when_every_host_is():
    sources = [make_source(f"http://a.test/{n}") for n in range(1, 5)] + [make_source("http://b.test/1")]

    async def waits(queue: HostQueue) -> tuple[bool, asyncio.Future]:
        taking = asyncio.ensure_future(queue.take())
        await asyncio.sleep(0.01)
        return not taking.done(), taking

    async def scenario() -> list[object]:
        queue = HostQueue(sources, per_host=1)
        a1, b1 = await queue.take(), await queue.take()
        seen: list[object] = [a1[0].url, b1[0].url]
        waited, taking = await waits(queue)  # only a has sources left, and its one turn is held
        b1[1].give_back()  # b's turn back: b has nothing left, so the worker still waits
        await asyncio.sleep(0.01)
        seen += [waited, taking.done()]
        a1[1].give_back()
        a2 = await asyncio.wait_for(taking, 1)
        a2[1].give_back()
        a2[1].give_back()  # a turn given back twice counts once
        a3 = await queue.take()
        waited, taking = await waits(queue)
        seen += [a2[0].url, a3[0].url, waited]
        a3[1].give_back()
        a4 = await asyncio.wait_for(taking, 1)
        a4[1].give_back()
        seen += [a4[0].url, await queue.take()]
        return seen

    assert asyncio.run(scenario()) == [
        "http://a.test/1", "http://b.test/1", True, False,
        "http://a.test/2", "http://a.test/3", True,
        "http://a.test/4", None,
    ]


def test_workers_waiting_when_the_last_source_is_taken_all_end_when_its_turn_comes_back():
    async def scenario() -> list[object]:
        queue = HostQueue([make_source("http://a.test/1"), make_source("http://a.test/2")], per_host=1)
        first = await queue.take()
        waiting = [asyncio.ensure_future(queue.take()) for _ in range(3)]
        await asyncio.sleep(0.01)
        first[1].give_back()  # one waiter takes a.test/2; the other two wait on
        await asyncio.sleep(0.01)
        done = [task for task in waiting if task.done()]
        second = done[0].result() if len(done) == 1 else None
        second[1].give_back()  # nothing left: both remaining waiters end
        rest = await asyncio.wait_for(asyncio.gather(*(t for t in waiting if t not in done)), 1)
        return [len(done), second[0].url, rest]

    assert asyncio.run(scenario()) == [1, "http://a.test/2", [None, None]]
