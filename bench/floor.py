"""The floor: CPU time of fetcher.extract.document.extract() alone on each distinct
document of a workload, with the settings the pipeline uses (the same function,
content type and a loopback URL), in this process, no network, no store.

    python -m bench.floor --workload mixed --sources 2000 --hosts 40 [--repeats 3] [--as-workers]

With --as-workers, the garbage collector is set as in fetcher's extraction workers
(fetcher.extract.serving: collect_less before the timings, collect_after
within each document's time); without it, Python's
defaults: the floor the benchmark's targets are measured against.

Prints JSON {doc key: median CPU seconds}. The floor of a workload is then
sum(cost[doc of source] for each source) / cores: extraction is deterministic,
so timing each distinct document `repeats` times and multiplying by how often it
is served gives the same total as extracting every source's body, in far less
time (a 20,000-source run serves 186 distinct documents).

The timings are taken in rounds over all the documents, never one document twice
in a row: a document timed right after itself cost ~8% less than in a run, where
its copies come far apart (a page finds trafilatura's caches of its lines,
lru_cache, warm; a PDF, parsed by pypdf, which keeps no such cache, was cheaper
too: the processor's caches and the allocator are the likely cause, not pinned down) (2,000 sources: 147.7 s that way against 159.5 s in rounds, timed side
by side; extracting every source's body once, in the sources' order: 163.6 s
beside 161.1 s in rounds).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from bench import workload
from fetcher.extract.document import extract
from fetcher.extract.serving import collect_after, collect_less


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workload", default="mixed")
    parser.add_argument("--sources", type=int, default=2000)
    parser.add_argument("--hosts", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--as-workers", action="store_true", help="the collector set as in an extraction worker")
    args = parser.parse_args()
    corpus = workload.load_corpus()
    sources = workload.build(args.workload, corpus, args.sources, args.hosts)
    firsts = {}
    for source in sources:
        firsts.setdefault(source.doc.key, source)
    if args.as_workers:
        collect_less()
    times: dict[str, list[float]] = {key: [] for key in firsts}
    outcomes = {}
    for _ in range(args.repeats):  # rounds over every document, never one document twice in a row
        for key, source in firsts.items():
            body = source.doc.body + workload.suffix(source, 1, args.workload != "quality")
            started = time.process_time()
            result = extract(body, workload.content_type(source.doc), workload.url_of(source, 8000))
            if args.as_workers:
                collect_after()
            times[key].append(time.process_time() - started)
            outcomes[key] = result.outcome.value
    costs = {key: {"cpu_s": statistics.median(times[key]), "outcome": outcomes[key], "kind": source.doc.kind}
             for key, source in firsts.items()}
    print(json.dumps(costs))


if __name__ == "__main__":
    main()
