"""Extraction off the event loop, so downloads keep flowing: in worker processes
under time and memory limits for runs, in a thread for one-off fetches. What is
done to a document is fetcher.extract.document's."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from dataclasses import replace

from fetcher.core.models import Extracted
from fetcher.core.outcomes import Outcome
from fetcher.extract.document import extract, sniff_kind
from fetcher.extract.pool import Limits, NamedJob, WorkerPool

ONE_OFF_PROCESS_BYTES = 4 << 20  # one-off fetches extract bigger bodies in a process (the corpus: 1.5 MB at most)


class Extractor:
    """Runs extract() away from the event loop, each document under `timeout`
    seconds and `memory` bytes: in worker processes (for runs of many sources;
    a worker over a limit is killed and replaced, the document is extract-failed)
    or, for a one-off fetch, in a thread (no process start-up; a thread cannot be
    killed, so only the cheap bounds of extract_html apply there) — except a body
    over ONE_OFF_PROCESS_BYTES, which gets one worker process under the limits."""

    def __init__(
        self, processes: bool, workers: int | None = None, timeout: float = 60.0, memory: int | None = 1 << 30
    ):
        self._processes = processes
        self._workers = workers or os.cpu_count() or 1
        self._limits = Limits(timeout, memory)
        self._pool: WorkerPool | None = None

    async def extract(self, body: bytes, content_type: str | None, url: str | None) -> Extracted:
        if not self._processes and len(body) <= ONE_OFF_PROCESS_BYTES:
            return await asyncio.to_thread(extract, body, content_type, url)
        if self._pool is None:
            workers = self._workers if self._processes else 1
            context = multiprocessing.get_context("spawn")  # no fork of a threaded process; no forkserver to lose
            job = NamedJob("fetcher.extract.worker", "extract_in_worker")  # not imported here: see NamedJob
            self._pool = WorkerPool(job, workers, self._limits, context)
        result = await self._pool.run(body, content_type, url)
        if result.kind == "unknown" and result.outcome is Outcome.EXTRACT_FAILED:
            result = replace(result, kind=sniff_kind(body, content_type))
        return result

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
