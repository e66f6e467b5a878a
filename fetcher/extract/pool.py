"""Worker processes that extract one document at a time, each document under a
time limit and a memory limit. A worker over either is killed (SIGKILL) and
replaced; the document ends as `extract-failed` with the reason, and the other
workers, and the documents they hold, carry on.

A small pool of our own rather than ProcessPoolExecutor (one dead worker breaks
all of it) or pebble (it stops a worker with SIGTERM, which ours ignore, and
then waits 3 s before SIGKILL). Each worker has its own pipe, and the event loop
waits on it directly: no threads in the parent but for sending big bodies.

Jobs waiting for a worker go biggest body first (`BiggestFirst`): a run's last
seconds are then small documents shared by every worker, not one big PDF that
started last while the other workers sit idle.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import os
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from multiprocessing.context import SpawnContext, SpawnProcess
from typing import Any

from fetcher.core.models import Extracted
from fetcher.extract.serving import Job, NamedJob, failed, serve

STARTUP_TIMEOUT = 120.0  # seconds for a new worker to import its libraries (not part of a document's time)
_INLINE_SEND = 16 << 10  # bodies up to this size fit the pipe: written from the event loop without waiting


@dataclass(frozen=True)
class Limits:
    timeout: float  # seconds one document may take
    memory: int | None  # bytes of address space a worker may use (RLIMIT_AS), None: no limit


def too_slow(limits: Limits) -> str:
    return f"extraction took more than {limits.timeout:g} s"


class WorkerGone(Exception):
    """The worker's pipe closed: it died (killed by the kernel, a crash in C)."""


class Worker:
    """One worker process and the parent's end of its pipe."""

    def __init__(self, context: SpawnContext, limits: Limits, job: Job | NamedJob):
        self.connection, child = context.Pipe()
        self.process: SpawnProcess = context.Process(
            target=serve, args=(child, os.getpid(), limits.memory, job), name="fetcher-extract"
        )
        self.process.start()
        child.close()

    async def ready(self) -> None:
        if await self._receive(STARTUP_TIMEOUT) != "ready":
            raise WorkerGone("the extraction process did not start")

    async def run(self, args: tuple[Any, ...], timeout: float) -> tuple[Extracted, bool]:
        """Send one job and wait for its answer; TimeoutError after `timeout` seconds."""
        async with asyncio.timeout(timeout):
            if body_size(args) <= _INLINE_SEND:
                self._send(args)
            else:  # a big body fills the pipe faster than the worker reads: not on the event loop
                await asyncio.to_thread(self._send, args)
            return await self._receive(None)

    def _send(self, args: tuple[Any, ...]) -> None:
        try:
            self.connection.send(args)
        except OSError as error:  # BrokenPipeError, ConnectionResetError: it died
            raise WorkerGone(self._epitaph()) from error

    async def _receive(self, timeout: float | None) -> Any:
        """The next message, awaited on the event loop (no thread)."""
        loop = asyncio.get_running_loop()
        readable = loop.create_future()
        descriptor = self.connection.fileno()
        def ready() -> None:
            if not readable.done():
                readable.set_result(None)

        loop.add_reader(descriptor, ready)
        try:
            async with asyncio.timeout(timeout):
                await readable
        finally:
            loop.remove_reader(descriptor)
        try:
            return self.connection.recv()
        except (EOFError, OSError) as error:
            raise WorkerGone(self._epitaph()) from error

    def _epitaph(self) -> str:
        self.process.join(1)
        code = self.process.exitcode
        if code is not None and code < 0:
            return f"the extraction process died ({signal.Signals(-code).name})"
        return f"the extraction process died (exit code {code})"

    def kill(self) -> None:
        """SIGKILL (the worker ignores SIGTERM) and reap."""
        self.connection.close()
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)

    def stop(self, wait: float) -> None:
        """Close the pipe, so the worker leaves its loop; kill it if it does not within `wait` s."""
        self.connection.close()
        self.process.join(wait)
        if self.process.is_alive():
            self.kill()


def body_size(args: tuple[Any, ...]) -> int:
    return sum(len(a) for a in args if isinstance(a, bytes))


class BiggestFirst:
    """`slots` turns at once; who waits gets the next free one biggest first
    (a body's size stands for its cost), equal sizes in the order they came.
    A waiter cancelled while waiting takes no turn, and a turn given to one
    cancelled at that moment goes to the next."""

    def __init__(self, slots: int):
        self._free = slots
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []  # (-size, arrival, future): a heap
        self._arrivals = itertools.count()

    @asynccontextmanager
    async def turn(self, size: int) -> AsyncIterator[None]:
        await self._take(size)
        try:
            yield
        finally:
            self._free += 1
            self._hand_over()

    async def _take(self, size: int) -> None:
        if self._free and not self._waiting:
            self._free -= 1
            return
        given: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (-size, next(self._arrivals), given))
        try:
            await given
        except asyncio.CancelledError:
            if given.done() and not given.cancelled():  # handed a turn just as cancelled: it goes on
                self._free += 1
                self._hand_over()
            raise

    def _hand_over(self) -> None:
        while self._free and self._waiting:
            *_, given = heapq.heappop(self._waiting)
            if not given.done():  # a cancelled waiter's entry is dropped here
                given.set_result(None)
                self._free -= 1


class WorkerPool:
    """`workers` processes at most, started when first needed; `run()` awaits
    one job's Extracted, which is extract-failed if the job broke a limit or
    its worker died. Jobs waiting for a worker go biggest first. Use from one
    event loop."""

    def __init__(self, job: Job | NamedJob, workers: int, limits: Limits, context: SpawnContext):
        self._job = job
        self._limits = limits
        self._context = context
        self._turns = BiggestFirst(workers)
        self._idle: list[Worker] = []
        self._busy: set[Worker] = set()

    async def run(self, *args: Any) -> Extracted:
        async with self._turns.turn(body_size(args)):
            try:
                worker = self._idle.pop() if self._idle else await self._start()
            except WorkerGone as gone:
                return failed(str(gone))
            extracted, keep = failed("cancelled"), False
            self._busy.add(worker)
            try:
                extracted, keep = await worker.run(args, self._limits.timeout)
            except TimeoutError:
                extracted = failed(too_slow(self._limits))
            except WorkerGone as gone:
                extracted = failed(str(gone))
            finally:  # also when cancelled: then the job may be anywhere, so the worker goes
                self._busy.discard(worker)
                if keep:
                    self._idle.append(worker)
                else:
                    worker.kill()
            return extracted

    async def _start(self) -> Worker:
        """A new worker, once it has imported its libraries (a few tenths of a second)."""
        worker = Worker(self._context, self._limits, self._job)  # fork and exec: milliseconds
        try:
            await worker.ready()
        except TimeoutError as error:
            worker.kill()
            raise WorkerGone("the extraction process did not start in time") from error
        except BaseException:
            worker.kill()
            raise
        return worker

    def close(self, wait: float = 2.0) -> None:
        """Stop every worker: idle ones are asked (their pipe closes), busy ones killed."""
        for worker in self._busy:
            worker.kill()
        deadline = time.monotonic() + wait
        for worker in self._idle:  # all told first, so that they leave side by side
            worker.connection.close()
        for worker in self._idle:
            worker.stop(max(0.0, deadline - time.monotonic()))
        self._idle.clear()
        self._busy.clear()
