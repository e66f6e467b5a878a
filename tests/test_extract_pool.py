"""The order in which documents waiting for an extraction worker get one: biggest
body first, so that a run does not end with one big PDF that started last while
the other workers sit idle. Equal sizes keep their order; a waiter cancelled while
it waits takes no worker from anyone."""

from __future__ import annotations

import asyncio
import gc
import json
import multiprocessing
import os

from fetcher.core.models import Extracted
from fetcher.core.outcomes import Outcome
from fetcher.extract.extractor import Extractor
from fetcher.extract.pool import BiggestFirst, Limits, WorkerPool
from fetcher.extract.serving import NICENESS, YOUNG_COLLECTION, NamedJob
from tests.conftest import corpus_pages


async def take_turns(turns: BiggestFirst, sizes: dict[str, int], order: list[str]) -> dict[str, asyncio.Task[None]]:
    """One task per name, each waiting for a turn of its size (in the dict's order)."""
    async def wait_for(name: str, size: int) -> None:
        async with turns.turn(size):
            order.append(name)
            await asyncio.sleep(0)

    tasks = {name: asyncio.create_task(wait_for(name, size)) for name, size in sizes.items()}
    await asyncio.sleep(0)  # every task has asked for its turn
    return tasks


def test_waiting_turns_go_biggest_first_and_equal_sizes_in_arrival_order():
    async def scenario() -> list[str]:
        turns, order = BiggestFirst(1), []
        async with turns.turn(0):  # the only worker is busy while the others arrive
            tasks = await take_turns(turns, {"small": 5, "big": 50, "medium": 20, "big again": 50, "tiny": 1}, order)
            assert order == []  # nobody got a turn while it was held
        await asyncio.gather(*tasks.values())
        return order

    assert asyncio.run(scenario()) == ["big", "big again", "medium", "small", "tiny"]


def test_a_cancelled_waiter_takes_no_turn_even_one_handed_to_it_as_it_was_cancelled():
    async def scenario() -> tuple[list[str], bool, bool]:
        turns, order = BiggestFirst(2), []
        async with turns.turn(0), turns.turn(0):  # both turns held
            tasks = await take_turns(turns, {"gone": 30, "handed": 20, "next": 10, "last": 5}, order)
            tasks["gone"].cancel()  # while waiting
            await asyncio.sleep(0)
        # leaving the block gave the two turns to "handed" and "next"; "handed" is cancelled before it runs
        tasks["handed"].cancel()
        results = await asyncio.gather(*tasks.values(), return_exceptions=True)
        cancelled = [name for name, result in zip(tasks, results) if isinstance(result, asyncio.CancelledError)]
        assert cancelled == ["gone", "handed"]
        async with asyncio.timeout(1), turns.turn(1), turns.turn(1):  # both turns are free again
            both_free = True
        return order, both_free, tasks["handed"].cancelled()

    order, both_free, handed_cancelled = asyncio.run(scenario())
    assert order == ["next", "last"]  # the turn handed to "handed" went on to "last"
    assert both_free and handed_cancelled


def test_the_extraction_pool_gives_its_free_worker_to_the_biggest_body_waiting():
    """Real worker processes: one worker, four documents sent at once."""
    page = corpus_pages()[0].html
    padded = {name: page + b"<!--" + b"x" * pad + b"-->" for name, pad in
              (("first", 0), ("small", 1_000), ("big", 400_000), ("medium", 100_000))}
    extractor = Extractor(processes=True, workers=1, timeout=30, memory=None)
    finished: list[str] = []

    async def one(name: str) -> None:
        extracted = await extractor.extract(padded[name], "text/html", "http://x.test/")
        assert extracted.outcome.value == "ok"
        finished.append(name)

    async def scenario() -> None:
        await one("first")  # the worker is started and ready
        finished.clear()
        await asyncio.gather(*(one(name) for name in padded))  # "first" takes the worker; the rest wait

    try:
        asyncio.run(scenario())
    finally:
        extractor.close()
    assert finished == ["first", "big", "medium", "small"]


def collector_state(_body: bytes) -> Extracted:
    """A job run in a worker process: the garbage collector's settings there, and its niceness."""
    state = {"threshold": gc.get_threshold(), "frozen": gc.get_freeze_count(),
             "middle_collections": gc.get_stats()[1]["collections"], "niceness": os.nice(0)}
    return Extracted(outcome=Outcome.OK, kind="text", text=json.dumps(state))


def test_a_worker_freezes_its_imports_collects_young_objects_less_often_and_after_each_document():
    """The extraction workers' collector settings (fetcher.extract.serving.collect_less)."""
    pool = WorkerPool(NamedJob("tests.test_extract_pool", "collector_state"), 1, Limits(30, None),
                      multiprocessing.get_context("spawn"))

    async def ask() -> list[Extracted]:
        return [await pool.run(b"") for _ in range(3)]

    try:
        states = [json.loads(extracted.text) for extracted in asyncio.run(ask())]
    finally:
        pool.close()
    first, *_ = states
    assert first["threshold"][0] == YOUNG_COLLECTION != gc.get_threshold()[0]  # this process keeps Python's
    assert first["frozen"] > 10_000  # the worker's imports (this module's, fetcher's) are out of the walks
    collections = [state["middle_collections"] for state in states]
    assert [b - a for a, b in zip(collections, collections[1:])] == [1, 1]  # one of the young ones after each


def test_a_worker_runs_at_a_lower_cpu_priority_than_the_process_that_started_it():
    """fetcher.extract.serving.yield_the_cores: where cores are short, the event loop gets one first."""
    pool = WorkerPool(NamedJob("tests.test_extract_pool", "collector_state"), 1, Limits(30, None),
                      multiprocessing.get_context("spawn"))
    try:
        state = json.loads(asyncio.run(pool.run(b"")).text)
    finally:
        pool.close()
    assert state["niceness"] == min(19, os.nice(0) + NICENESS) > os.nice(0)
