"""The floor measured rather than computed: extract every source's body of a
workload once, in `cores` processes at the same time, straight from memory —
no network, no store, no fetcher. Wall time from the first document to the last.

    python -m bench.parallel_floor --sources 2000 --hosts 40 [--html-only] [--processes 2]

Prints JSON {"wall_s", "cpu_s", "documents", "processes"}. The computed floor
(bench.floor: single-process CPU ÷ cores) assumes extraction scales perfectly
over the cores; this says what two extractions at once really take on this
machine (both cores busy: shared caches and clocks), which no fetcher can beat.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sources", type=int, default=2000)
    parser.add_argument("--hosts", type=int, default=40)
    parser.add_argument("--html-only", action="store_true")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    _load(args.sources, args.hosts)
    indexes = [s.index for s in _SOURCES if not args.html_only or s.doc.kind == "html"]
    # The biggest documents first, as any scheduler that knew sizes would: a
    # 2-second PDF at the very end would otherwise leave a core idle.
    indexes.sort(key=lambda i: -len(_SOURCES[i].doc.body))
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
