"""Benchmark: how much of a cheap night is the HTTP client's, and how much is the
extraction processes' start.

On the bench's origin over HTTPS (bench/origin.py, bench/tls.py), with W2's nights
(night 1 stored, night 2 asked for: 95% unchanged):

- fetcher: `refresh --all` on a copy of the night-1 store, night 2 (some pages
  changed: extraction processes start) and night 1 again (nothing changed: no
  extraction process starts), wall time of the whole command, median of N;
- a bare httpx client in this process (httpx.AsyncClient, its defaults, the
  run's CA): the same conditional requests (each URL's validators from night 1),
  `per_host_concurrency` at a time per host, every body read; the requests alone
  (no process start, no robots.txt, nothing stored), median of N, with its CPU a
  request;
- the latency floor: each host's share of the URLs over its turns, times the
  origin's hold per answer.

Figures printed; nothing asserted. Run from the project root:
`.venv/bin/python bench/stack_floor.py [--sources 400 --hosts 10 --latency 0.05] [--runs 7]`.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402 - after the path

from bench import run, tls, workload  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def by_host(urls: list[str]) -> list[list[str]]:
    hosts: dict[str, list[str]] = {}
    for url in urls:
        hosts.setdefault(httpx.URL(url).host, []).append(url)
    return list(hosts.values())


async def bare_night(urls: list[str], per_host: int, ca: Path, validators: dict[str, dict[str, str]]) -> tuple[float, float]:
    """(wall s, CPU s) of every URL asked once, conditionally where validators are
    known, `per_host` at a time per host; the validators of each answer are kept."""
    context = ssl.create_default_context(cafile=str(ca))
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(verify=context, limits=limits, trust_env=False) as client:

        async def one_turn(share: list[str]) -> None:
            for url in share:
                async with client.stream("GET", url, headers=validators.get(url, {})) as response:
                    await response.aread()
                    kept = {name: response.headers[key] for key, name in
                            (("etag", "If-None-Match"), ("last-modified", "If-Modified-Since")) if key in response.headers}
                    if kept:
                        validators[url] = kept

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one_turn(own[turn::per_host]) for own in by_host(urls) for turn in range(per_host)))
        return time.perf_counter() - started, time.process_time() - cpu


def fetcher_night(template: Path, work: Path, env: dict[str, str], label: str) -> float:
    directory = work / label
    shutil.copytree(template, directory)
    command = [run.PY, "-m", "fetcher", "--config", str(directory / "config.toml"), "refresh", "--all", "--json"]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"fetcher exited {done.returncode}: {done.stderr[-2000:]}")
    shutil.rmtree(directory)
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=int, default=400)
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds the origin holds each answer")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="stack-floor-"))
    try:
        run.NET = run.Net(tls.make(work / "tls", workload.host_ips(args.hosts)))
        assert run.NET.tls is not None
        sources = workload.mixed(workload.load_corpus(), args.sources, args.hosts)
        origin = run.OriginProcess("mixed", args.sources, args.hosts, args.latency)
        try:
            urls = [workload.url_of(source, origin.port, run.NET.scheme) for source in sources]
            per_host = run.fetcher_settings(args.hosts)["per_host_concurrency"]
            env = run.measured_env(work)
            template = run.write_config(work / "night1", urls, args.hosts).parent
            origin.call("/__night/1")
            subprocess.run([run.PY, "-m", "fetcher", "--config", str(template / "config.toml"), "refresh", "--all"],
                           cwd=ROOT, env=env, capture_output=True, check=True)
            validators: dict[str, dict[str, str]] = {}
            asyncio.run(bare_night(urls, per_host, run.NET.tls.ca, validators))  # night 1: the validators
            figures: dict[str, list[float]] = {"night 2": [], "night 1 again": [], "bare": [], "bare cpu": []}
            for number in range(args.runs + 1):  # the first round warms caches and is not counted
                origin.call("/__night/2")
                night2 = fetcher_night(template, work, env, f"n2-{number}")
                bare = asyncio.run(bare_night(urls, per_host, run.NET.tls.ca, dict(validators)))
                origin.call("/__night/1")
                night1 = fetcher_night(template, work, env, f"n1-{number}")
                if number:
                    figures["night 2"].append(night2)
                    figures["night 1 again"].append(night1)
                    figures["bare"].append(bare[0])
                    figures["bare cpu"].append(bare[1])
        finally:
            origin.stop()
        rounds = math.ceil(args.sources / args.hosts / per_host)
        median = {name: statistics.median(values) for name, values in figures.items()}
        print(f"{args.sources} sources, {args.hosts} hosts, {per_host} at a time per host, {args.latency * 1000:g} ms"
              f" an answer, HTTPS; medians of {args.runs}")
        print(f"latency floor ({rounds} answers per turn): {rounds * args.latency:.2f} s")
        print(f"bare httpx client, the requests alone: {median['bare']:.2f} s,"
              f" {median['bare cpu'] / args.sources * 1000:.2f} ms CPU a request")
        print(f"fetcher refresh, night 1 again (no extraction): {median['night 1 again']:.2f} s")
        print(f"fetcher refresh, night 2 (changed pages extracted): {median['night 2']:.2f} s")
        print(f"  night 2 - night 1 again (extraction processes): {median['night 2'] - median['night 1 again']:+.2f} s")
        print(f"  night 1 again - bare client (start-up, robots.txt, store, log): "
              f"{median['night 1 again'] - median['bare']:+.2f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
