"""Worker processes that extract one document at a time, each document under a
time limit and a memory limit. A worker over either is killed (SIGKILL) and
replaced; the document ends as `extract-failed` with the reason, and the other
workers, and the documents they hold, carry on.

A small pool of our own rather than ProcessPoolExecutor (one dead worker breaks
all of it) or pebble (it stops a worker with SIGTERM, which ours ignore, and
then waits 3 s before SIGKILL). Each worker has its own pipe, and the event loop
waits on it directly: no threads in the parent but for sending big bodies.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext, SpawnProcess
from typing import Any

from fetcher.core.models import Extracted
from fetcher.core.outcomes import Outcome
from fetcher.core.processes import alive

Job = Callable[..., Extracted]


@dataclass(frozen=True)
class NamedJob:
    """A job named by its module and function. A worker imports it as it starts
    (before it says "ready", before its memory limit); the parent process that
    names it does not import that module (for extraction: trafilatura, lxml,
    pypdf, about 0.3 s of CPU and tens of MB in fetcher's main process)."""

    module: str
    function: str

    def load(self) -> Job:
        job: Job = getattr(importlib.import_module(self.module), self.function)
        return job


STARTUP_TIMEOUT = 120.0  # seconds for a new worker to import its libraries (not part of a document's time)
_INLINE_SEND = 16 << 10  # bodies up to this size fit the pipe: written from the event loop without waiting


@dataclass(frozen=True)
class Limits:
    timeout: float  # seconds one document may take
    memory: int | None  # bytes of address space a worker may use (RLIMIT_AS), None: no limit


def too_slow(limits: Limits) -> str:
    return f"extraction took more than {limits.timeout:g} s"


def too_big(memory: int | None) -> str:
    return f"extraction needed more than {size(memory)}" if memory else "extraction ran out of memory"


def size(count: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20)):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{count} bytes"


def exit_with(parent: int, every: float = 0.5) -> None:
    """Worker set-up: end this worker soon after `parent` dies, even by kill -9 (a
    worker otherwise waits on its pipe forever), and leave SIGTERM/SIGINT to the
    parent."""

    def watch() -> None:
        while alive(parent):
            time.sleep(every)
        os._exit(0)

    # A SIGTERM or Ctrl-C sent to the whole process group is the parent's to
    # handle: it finishes or abandons the run and then shuts the pool down.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def serve(connection: Connection, parent: int, memory: int | None, job: Job | NamedJob) -> None:
    """A worker's life: set up, say "ready", then answer each request until the
    pipe closes. The memory limit is RLIMIT_AS, set after the imports."""
    exit_with(parent)
    if isinstance(job, NamedJob):
        job = job.load()
    if memory is not None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, resource.getrlimit(resource.RLIMIT_AS)[1]))
    connection.send("ready")
    while True:
        try:
            args = connection.recv()
        except EOFError:  # the pool closed the pipe: leave at once (a tidy exit, freeing
            _leave()  # lxml's and trafilatura's modules, takes tens of ms and saves nothing)
        answer = _answer(job, args, memory)
        try:
            connection.send(answer)
        except MemoryError:  # pickling a huge text near the limit: nothing was written yet
            connection.send((failed(too_big(memory)), False))


def _leave() -> None:
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(0)


def _answer(job: Job, args: tuple[Any, ...], memory: int | None) -> tuple[Extracted, bool]:
    """(the job's Extracted, whether this worker may take another job). Running
    out of memory shows as a MemoryError, or, from libxml2, as a parse error: a
    failed job that took the worker near its limit failed for memory. A worker
    that came near its limit retires (its peak cannot be reset, and its heap may
    stay big); a fresh one takes its place."""
    try:
        extracted = job(*args)
    except MemoryError:
        extracted = None  # out of the except block first, so the frames holding the memory are gone
    spent = memory is not None and near_limit(memory)
    if extracted is None or (spent and extracted.outcome is not Outcome.OK):
        extracted = failed(too_big(memory))
    return extracted, not spent


def near_limit(memory: int) -> bool:
    """Did this process's address space ever come within max(64 MiB, 10%) of `memory`?"""
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmPeak:"))
    return peak >= memory - max(64 << 20, memory // 10)


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
            if sum(len(a) for a in args if isinstance(a, bytes)) <= _INLINE_SEND:
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


class WorkerPool:
    """`workers` processes at most, started when first needed; `run()` awaits
    one job's Extracted, which is extract-failed if the job broke a limit or
    its worker died. Use from one event loop."""

    def __init__(self, job: Job | NamedJob, workers: int, limits: Limits, context: SpawnContext):
        self._job = job
        self._limits = limits
        self._context = context
        self._slots = asyncio.Semaphore(workers)
        self._idle: list[Worker] = []
        self._busy: set[Worker] = set()

    async def run(self, *args: Any) -> Extracted:
        async with self._slots:
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


def failed(detail: str) -> Extracted:
    return Extracted(outcome=Outcome.EXTRACT_FAILED, kind="unknown", detail=detail)
