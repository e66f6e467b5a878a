"""Benchmark: the broken-link audit over 20,000 sources.

Builds a store in a temporary directory through run.storing.store_result() (synthetic
FetchResult values, no network: the health rows are exactly what a real refresh
writes), over three recorded runs on day 0, 1 and 4, with a mix of states: ok,
redirected, dead (404, 410 with an archived capture, DNS), failing, recovered,
soft 404, blocked, never checked. Then times, median of 5 each:

- build_audit() in a fresh process (after the config is loaded and the store
  opened), with that process's peak RSS and the SQL statements it ran;
- `fetcher audit --format json -o FILE` end to end (a subprocess: interpreter
  start, imports, config with 20,000 sources, store, audit, JSON), with its peak
  RSS; and `fetcher --version` as the start-up baseline.

Run from the project root: `.venv/bin/python bench/audit_bench.py [--sources N]`.
The temporary directory is deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

from fetcher.core.health import state_counts
from fetcher.run.storing import store_result
from fetcher.views.audit import build_audit
from fetcher.core.config import load_config
from fetcher.core.models import Capture, Download, Extracted, FetchResult, Hop, RunSummary, Source
from fetcher.core.outcomes import Outcome
from fetcher.store.sqlite import Store

REPEATS = 5
UTC = timezone.utc
BODY = (b"<!doctype html><html><head><title>Report</title></head><body><article><h1>Report</h1>"
        + b"<p>The committee reviewed the figures and agreed to publish the minutes.</p>" * 20
        + b"</article></body></html>")
TEXT = "Report\nThe committee reviewed the figures and agreed to publish the minutes. " * 20

# What each source does on nights 1, 2 and 3 (days 0, 1 and 4), by its index modulo 100.
KINDS = (
    (70, "ok"), (75, "redirected"), (81, "dead-404"), (83, "dead-410-archived"), (87, "failing-5xx"),
    (89, "recovered"), (92, "soft-404"), (96, "blocked"), (98, "dead-dns"), (100, "unchecked"),
)
NIGHTS = (0, 1, 4)


def kind_of(index: int) -> str:
    bucket = index % 100
    return next(kind for limit, kind in KINDS if bucket < limit)


def url_of(index: int) -> str:
    return f"https://site{index % 700}.example/reports/{index}/annual-review.html"


def write_config(directory: Path, count: int) -> Path:
    lines = ["[storage]", 'dir = "snapshots"', "", "[archive]", "enabled = false", ""]
    for index in range(count):
        lines += ["[[sources]]", f'url = "{url_of(index)}"', f'title = "Annual review {index}"', ""]
    path = directory / "config.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def ok(source: Source, when: datetime, final_url: str | None = None) -> FetchResult:
    hops = (Hop(source.url, 301),) if final_url else ()
    download = Download(source.url, Outcome.OK, final_url or source.url, 200, "text/html; charset=utf-8", BODY, hops)
    extracted = Extracted(Outcome.OK, "html", TEXT, "Report", "en")
    return FetchResult(source, when, "live", download, 1, extracted, live_status=200, live_outcome=Outcome.OK)


def failed(source: Source, when: datetime, outcome: Outcome, status: int | None, detail: str = "") -> FetchResult:
    download = Download(source.url, outcome, source.url, status, "text/html" if status else None, detail=detail)
    return FetchResult(source, when, "live", download, 1 if status != 503 else 3, live_status=status,
                       live_outcome=outcome)


def soft_404(source: Source, when: datetime) -> FetchResult:
    download = Download(source.url, Outcome.OK, source.url, 200, "text/html", b"<html><h1>Page not found</h1></html>")
    extracted = Extracted(Outcome.BAD_CONTENT, "html", "Page not found", "Page not found",
                          detail="soft 404: the page says it was not found")
    return FetchResult(source, when, "live", download, 1, extracted, live_status=200, live_outcome=Outcome.BAD_CONTENT)


def result_for(kind: str, night: int, source: Source, when: datetime) -> FetchResult | None:
    if kind == "unchecked":
        return None
    if kind == "ok":
        return ok(source, when)
    if kind == "redirected":
        return ok(source, when, source.url.replace("/reports/", "/archive/reports/"))
    if kind == "dead-404":
        return failed(source, when, Outcome.HTTP_404, 404)
    if kind == "dead-410-archived":
        return failed(source, when, Outcome.HTTP_410, 410)
    if kind == "dead-dns":
        return failed(source, when, Outcome.DNS_ERROR, None, "ConnectError: [Errno -2] Name or service not known")
    if kind == "failing-5xx":
        return ok(source, when) if night < 2 else failed(source, when, Outcome.HTTP_5XX, 503)
    if kind == "recovered":
        return failed(source, when, Outcome.HTTP_5XX, 503) if night == 1 else ok(source, when)
    if kind == "soft-404":
        return soft_404(source, when)
    if kind == "blocked":
        return failed(source, when, Outcome.HTTP_403, 403)
    raise ValueError(kind)


def build_store(config_path: Path) -> dict[str, float]:
    """Three recorded runs over every source, as run_once records them."""
    config = load_config(config_path)
    sources = list(config.sources)
    store = Store(config.storage_dir)
    start = datetime.now(UTC).replace(hour=3, minute=0, second=0, microsecond=0) - timedelta(days=10)
    records = 0
    began = time.perf_counter()
    try:
        for night, day in enumerate(NIGHTS):
            started = start + timedelta(days=day)
            run_id = store.start_run(started, "refresh")
            counts: dict[Outcome, int] = {}
            for index, source in enumerate(sources):
                kind = kind_of(index)
                when = started + timedelta(milliseconds=index)  # one source after another, within the run
                result = result_for(kind, night, source, when)
                if result is None:
                    continue
                store_result(store, result)
                records += 1
                counts[result.live_outcome] = counts.get(result.live_outcome, 0) + 1
                if kind == "dead-410-archived" and night == 0:
                    stamp = f"{2023 + index % 3}0{1 + index % 9}15120000"
                    captured = datetime.strptime(stamp, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
                    capture = Capture("Wayback Machine", stamp, source.url,
                                      f"https://web.archive.org/web/{stamp}id_/{source.url}", captured, "text/html")
                    store.remember_lookup(source, "Wayback Machine", when, capture)
            finished = started + timedelta(milliseconds=len(sources) + 1)
            summary = RunSummary(started, finished, counts)
            summary = replace(summary, health=state_counts(sources, store.all_health(), config.refresh))
            store.finish_run(run_id, finished, "completed", summary.to_dict())
    finally:
        store.close()
    return {"records": records, "seconds": time.perf_counter() - began}


def measure_in_process(config_path: Path) -> dict:
    """Run in a fresh process (--inner): build_audit's time, the statements it runs, this process's peak RSS."""
    began = time.perf_counter()
    config = load_config(config_path)
    loaded = time.perf_counter() - began
    sources = list(config.sources)
    store = Store.existing(config.storage_dir)
    statements: list[str] = []
    store._db.connection.set_trace_callback(statements.append)  # noqa: SLF001 - counting queries is the point
    build_audit(config, store, sources)
    per_audit = len(statements)
    store._db.connection.set_trace_callback(None)  # noqa: SLF001
    times, audit = [], None
    for _ in range(REPEATS):
        began = time.perf_counter()
        audit = build_audit(config, store, sources)
        times.append(time.perf_counter() - began)
    store.close()
    return {
        "config_seconds": loaded,
        "build_audit_seconds": times,
        "statements": per_audit,
        "counts": audit.counts(),
        "newly_broken": len(audit.newly_broken),
        "recovered": len(audit.recovered),
        "history": len(audit.history),
        "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def timed_child(command: list[str], cwd: Path) -> tuple[float, int, int]:
    """(seconds, exit code, peak RSS in KB) of one child process."""
    with tempfile.TemporaryFile() as errors:
        began = time.perf_counter()
        child = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(child.pid, 0)
        elapsed = time.perf_counter() - began
        child.returncode = code = os.waitstatus_to_exitcode(status)
        if code not in (0, 1):
            errors.seek(0)
            raise SystemExit(f"{' '.join(command)} exited {code}: {errors.read().decode()[-2000:]}")
    return elapsed, code, usage.ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=int, default=20_000)
    parser.add_argument("--inner", type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.inner:
        print(json.dumps(measure_in_process(options.inner)))
        return

    directory = Path(tempfile.mkdtemp(prefix="audit-bench-"))
    try:
        config = write_config(directory, options.sources)
        built = build_store(config)
        size = sum(p.stat().st_size for p in (directory / "snapshots").rglob("*") if p.is_file())
        print(f"store: {options.sources:,} sources, {built['records']:,} fetches recorded in {built['seconds']:.1f} s"
              f" ({size / 1e6:.1f} MB on disk), {len(NIGHTS)} runs")

        inner = subprocess.run([sys.executable, __file__, "--inner", str(config)], capture_output=True, text=True,
                               check=True)
        found = json.loads(inner.stdout)
        median = statistics.median(found["build_audit_seconds"])
        print(f"states: {found['counts']}; newly broken {found['newly_broken']}, recovered {found['recovered']}, "
              f"{found['history']} runs in the chart")
        print(f"build_audit: median {median:.3f} s of {REPEATS} "
              f"(min {min(found['build_audit_seconds']):.3f}, max {max(found['build_audit_seconds']):.3f}), "
              f"{options.sources / median:,.0f} sources/s, {found['statements']} SQL statements; "
              f"loading the config took {found['config_seconds']:.2f} s; "
              f"peak RSS of that process {found['peak_rss_kb'] / 1024:.0f} MB")

        output = directory / "audit.json"
        command = [sys.executable, "-m", "fetcher", "--config", str(config), "audit", "--format", "json",
                   "-o", str(output)]
        runs = [timed_child(command, directory) for _ in range(REPEATS)]
        report = json.loads(output.read_text(encoding="utf-8"))
        assert len(report["sources"]) == options.sources and report["counts"] == found["counts"]
        seconds = statistics.median(run[0] for run in runs)
        print(f"fetcher audit --format json (end to end): median {seconds:.3f} s of {REPEATS} "
              f"(min {min(r[0] for r in runs):.3f}, max {max(r[0] for r in runs):.3f}), "
              f"{options.sources / seconds:,.0f} sources/s, exit {runs[0][1]}, "
              f"peak RSS {max(r[2] for r in runs) / 1024:.0f} MB, JSON {output.stat().st_size / 1e6:.1f} MB")

        baseline = [timed_child([sys.executable, "-m", "fetcher", "--version"], directory) for _ in range(REPEATS)]
        print(f"baseline fetcher --version: median {statistics.median(r[0] for r in baseline):.3f} s, "
              f"peak RSS {max(r[2] for r in baseline) / 1024:.0f} MB")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
