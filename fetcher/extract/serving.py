"""What runs in an extraction worker process: its set-up, then one document at a
time from its pipe (fetcher.extract.pool starts it and talks to it).

Apart from the pool, so that a worker imports only this and its job: not asyncio
and the parent's side (tens of milliseconds of CPU each time a worker starts,
while a run's fetches need the cores).
"""

from __future__ import annotations

import gc
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


def too_big(memory: int | None) -> str:
    return f"extraction needed more than {size(memory)}" if memory else "extraction ran out of memory"


def size(count: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20)):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{count} bytes"


YOUNG_COLLECTION = 10_000  # allocations between two collections of the youngest generation (Python: 700)


def collect_less() -> None:
    """Worker set-up, once its libraries are imported: those objects are frozen out
    of the garbage collector's walks (gc.freeze), and the youngest generation is
    collected every YOUNG_COLLECTION allocations instead of 700. Extraction
    allocates a great deal and makes few cycles: with Python's defaults the
    collector took 6.5% of its CPU (0.69 of 10.2 s on the corpus' documents).
    See also collect_after()."""
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION, *gc.get_threshold()[1:])


def collect_after() -> None:
    """After each document: its garbage in cycles (a PDF reader and its pages, for
    one) is collected at once, so it is not held while the next document is read.
    With collect_less(): 0.16 s of collection for 0.69, and the same peak memory
    as Python's defaults (without this, 15 MB more a worker)."""
    gc.collect(1)


NICENESS = 10  # added to a worker's niceness: the main process (nice 0) gets ~90% of a core it shares with one


def yield_the_cores() -> None:
    """Worker set-up, first thing (its imports take ~0.3 s of CPU): a lower CPU
    priority than the process that started it. Where the cores are busy, the
    event loop, which keeps every connection moving, gets a core first and the
    extraction workers share what is left; where they are not, nothing changes.
    On a night of checks the loop is the run's bottleneck: W2 (2,000 sources,
    5% changed) took 3.43-3.60 s with the workers at the run's priority, 3.32-3.48 s
    at +10 (README, How a fetch goes)."""
    try:
        os.nice(NICENESS)
    except OSError:  # a system that refuses it: the worker runs at its parent's priority
        pass


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
    yield_the_cores()
    exit_with(parent)
    if isinstance(job, NamedJob):
        job = job.load()
    collect_less()
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
        del args, answer
        collect_after()  # while the parent reads the answer


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


def failed(detail: str) -> Extracted:
    return Extracted(outcome=Outcome.EXTRACT_FAILED, kind="unknown", detail=detail)
