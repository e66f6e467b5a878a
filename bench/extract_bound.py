"""Bounded extraction, measured: the pathological pages that once took a minute,
through the bounded Extractor with its default limits (60 s, 1 GiB), and the
cost of dispatching a document to a worker.

    python -m bench.extract_bound            # about 10 s
    python -m bench.extract_bound --before   # also trafilatura on them unbounded: about 2 min

Each case runs in a fresh process, so the worker's peak RSS is its own
(getrusage(RUSAGE_CHILDREN) once the worker is reaped)."""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable

CASES: dict[str, Callable[[], bytes]] = {
    "400,000 <p> elements (3.2 MB)": lambda: ("<html><body>" + "<p>a</p>" * 400_000 + "</body></html>").encode(),
    "a 10 MB attribute": lambda: (
        '<html><body><div class="' + "a" * 10_000_000 + '"><p>hello world</p></div></body></html>'
    ).encode(),
}
TINY = 2000  # documents for the dispatch figure


def bounded(name: str) -> dict:
    """One case through Extractor(processes=True) with the default limits."""
    from fetcher.core.config import FetchSettings
    from fetcher.extract.extractor import Extractor

    body, settings = CASES[name](), FetchSettings()
    extractor = Extractor(processes=True, workers=1, timeout=settings.extract_timeout, memory=settings.extract_memory)

    async def go() -> tuple:
        await extractor.extract(b"warm up", "text/plain", None)  # the worker's start is not the document's time
        started = time.monotonic()
        result = await extractor.extract(body, "text/html", "http://bench.invalid/")
        return result, time.monotonic() - started

    try:
        result, seconds = asyncio.run(go())
    finally:
        extractor.close()
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"case": name, "mode": "bounded", "seconds": round(seconds, 2), "worker_peak_rss_mb": round(peak),
            "outcome": result.outcome.value, "detail": result.detail, "text_chars": len(result.text)}


def unbounded(name: str) -> dict:
    """One case as before: trafilatura on the whole tree, in this process, no limits."""
    from fetcher.extract import html as extract_html
    from fetcher.extract.document import extract

    extract_html.MAX_ELEMENTS = extract_html.MAX_ATTRIBUTE = 1 << 62
    body = CASES[name]()
    started = time.monotonic()
    result = extract(body, "text/html", "http://bench.invalid/")
    seconds = time.monotonic() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"case": name, "mode": "unbounded", "seconds": round(seconds, 2), "worker_peak_rss_mb": round(peak),
            "outcome": result.outcome.value, "detail": result.detail, "text_chars": len(result.text)}


def dispatch() -> dict:
    """Per-document cost of the trip to a worker and back: TINY tiny documents, 2 workers."""
    from fetcher.extract.extractor import Extractor

    extractor = Extractor(processes=True, workers=2)

    async def go() -> float:
        await asyncio.gather(*(extractor.extract(b"warm up", "text/plain", None) for _ in range(4)))
        started = time.monotonic()
        await asyncio.gather(*(extractor.extract(b"a line of text", "text/plain", None) for _ in range(TINY)))
        return time.monotonic() - started

    try:
        seconds = asyncio.run(go())
    finally:
        extractor.close()
    return {"case": f"dispatch of {TINY} tiny documents", "mode": "bounded",
            "us_per_document": round(seconds / TINY * 1e6)}


def in_child(mode: str, name: str = "") -> dict:
    found = subprocess.run([sys.executable, "-m", "bench.extract_bound", "--child", mode, name],
                           capture_output=True, text=True, check=True)
    return json.loads(found.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", action="store_true", help="also run each case unbounded, as before (slow)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, name = args.child
        print(json.dumps(dispatch() if mode == "dispatch" else {"bounded": bounded, "unbounded": unbounded}[mode](name)))
        return
    modes = ["unbounded", "bounded"] if args.before else ["bounded"]
    for name in CASES:
        for mode in modes:
            row = in_child(mode, name)
            print(f"{row['case']:32} {mode:9} {row['seconds']:6.2f} s  worker peak RSS {row['worker_peak_rss_mb']:5} MB"
                  f"  {row['outcome']} {row['detail']} ({row['text_chars']} chars)")
    row = in_child("dispatch")
    print(f"{row['case']:32} {row['us_per_document']} us a document")


if __name__ == "__main__":
    main()
