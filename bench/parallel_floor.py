"""The floor measured rather than computed: extract every source's body of a
workload once, in `cores` processes at the same time, straight from memory —
no network, no store, no fetcher. Wall time from the first document to the last.

    python -m bench.parallel_floor --sources 2000 --hosts 40 [--html-only] [--processes 2] [--pool]

Prints JSON {"wall_s", "cpu_s", "documents", "processes"}. The computed floor
(bench.floor: single-process CPU ÷ cores) assumes extraction scales perfectly
over the cores; this says what two extractions at once really take on this
machine (both cores busy: shared caches and clocks), which no fetcher can beat.

With --pool, the same bodies in the same order go through fetcher's own
extraction pool (fetcher.extract.extractor.Extractor: its worker processes,
pipes and limits, two documents in flight a process) instead of a
multiprocessing pool: what the pool costs over the floor, still without network
or store. Its cpu_s is the workers' whole CPU (their start and warm-up included)
plus this process's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import time

from bench import workload
from fetcher.extract.document import extract

_SOURCES: list[workload.Source] = []


def _load(count: int, hosts: int) -> None:
    global _SOURCES
    _SOURCES = workload.mixed(workload.load_corpus(), count, hosts)


def _extract(index: int) -> float:
    source = _SOURCES[index]
    started = time.process_time()
    extract(source.doc.body + workload.suffix(source, 1), workload.content_type(source.doc), workload.url_of(source, 8000))
    return time.process_time() - started


async def _through_pool(indexes: list[int], processes: int) -> tuple[float, float]:
    """(wall seconds from the first document to the last, CPU seconds of the workers and this process)."""
    from fetcher.core.config import FetchSettings
    from fetcher.extract.extractor import Extractor

    defaults = FetchSettings()  # a run's limits: extract_timeout and extract_memory as shipped
    extractor = Extractor(processes=True, workers=processes, timeout=defaults.extract_timeout,
                          memory=defaults.extract_memory)
    in_flight = asyncio.Semaphore(2 * processes)

    async def extract_one(index: int) -> None:
        source = _SOURCES[index]
        async with in_flight:
            await extractor.extract(source.doc.body + workload.suffix(source, 1), workload.content_type(source.doc),
                                    workload.url_of(source, 8000))

    cpu = time.process_time()
    try:
        await asyncio.gather(*(extract_one(i) for i in indexes[-processes * 4 :]))  # both workers started and warm
        started = time.perf_counter()
        await asyncio.gather(*(extract_one(i) for i in indexes))
        wall = time.perf_counter() - started
    finally:
        extractor.close()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, children.ru_utime + children.ru_stime + time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sources", type=int, default=2000)
    parser.add_argument("--hosts", type=int, default=40)
    parser.add_argument("--html-only", action="store_true")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--pool", action="store_true", help="through fetcher's extraction pool")
    args = parser.parse_args()
    _load(args.sources, args.hosts)
    # In the sources' order, as a run meets them. Not the biggest first: that put
    # each document's ~11 copies one after another, which made them ~7% cheaper
    # than a run can have them (bench/README.md, Floor).
    indexes = [s.index for s in _SOURCES if not args.html_only or s.doc.kind == "html"]
    if args.pool:
        wall, cpu = asyncio.run(_through_pool(indexes, args.processes))
        print(json.dumps({"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "documents": len(indexes),
                          "processes": args.processes, "pool": "fetcher"}))
        return
    context = multiprocessing.get_context("fork")  # workers inherit the loaded corpus
    with context.Pool(args.processes) as pool:
        pool.map(_extract, indexes[-args.processes * 4 :], chunksize=1)  # warm both workers (imports, caches)
        started = time.perf_counter()
        cpu = sum(pool.imap_unordered(_extract, indexes, chunksize=1))
        wall = time.perf_counter() - started
    print(json.dumps({"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "documents": len(indexes),
                      "processes": args.processes}))


if __name__ == "__main__":
    main()
