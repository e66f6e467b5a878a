"""`fetcher worker` on PostgreSQL: against SQLite, the queue's rates and W2 over several workers.

    python -m bench.workers [--only compare,queue,w2] [--compare-w1 400x10] [--compare-w2 2000x40]
        [--w1-runs 3] [--w2-runs 5] [--code DIR ...] [--queue-sources 1000000] [--w2-sources 2000] [--hosts 40]
        [--workers 1,2,4] [--worker-concurrency N]

0. Compare: the same sources from the same origin (100 ms a response, 2
   requests a host at once) on an SQLite store by an in-process `fetcher
   refresh`, and on a PostgreSQL store by one `fetcher worker` (the refresh
   enqueues and waits for the run's end): seconds and PG/SQLite for W1 (the
   first night: everything downloaded, extracted, stored; `--w1-runs` times,
   each into empty stores, the engines' order flipping run by run; medians; until
   2026-12-07 it ran once) and W2 (the next night: 95% not modified or unchanged;
   `--w2-runs` times, the engines alternating, each pair of runs flipping the
   night 2, 1, 2 … so that every run sees the same 5% changed; medians). W1's
   size is `--compare-w1` (default 400 sources over 10 hosts: W1 at 2,000
   sources takes minutes a run; `--compare-w1 2000x40` for it); W2's is
   `--compare-w2` (default 2,000 over 40), its stores filled by one SQLite W1
   (timed: `w2_fill_sqlite_s`) and copied (`fetcher store copy` to PostgreSQL).
   `--code DIR` (repeatable; default this checkout): run fetcher from DIR's
   code, each code with its own stores and worker, the codes alternating in
   each W2 run: before and after in one invocation.

1. Enqueue: one run of `--queue-sources` sources put on the board (COPY) and
   one procrastinate job a source deferred (batches of 10,000): sources/s.
2. Claim: with that queue full, one worker's job loop (2 jobs of 20 sources at
   once) taking jobs and doing each source's database work (the job's sources
   taken on the board with their health in one statement, each marked done;
   procrastinate's own bookkeeping once a job) with no fetch, for a
   fixed time: sources/s at that depth.
3. W2 (the next night: 95% not modified or unchanged) of `--w2-sources` sources
   over `--hosts` loopback hosts (100 ms a response, 2 requests a host at once),
   queued by `fetcher refresh` and run by 1, 2 and 4 `fetcher worker` processes:
   wall time from queueing to the run's end. The store is first filled (W1) by
   the workers. `--worker-concurrency N` runs each worker with `--concurrency N`
   (default the config's: 2 a host × the hosts, 80, what the per-host limit
   allows): with a small N one worker's own limit binds, and more workers add fetches at once
   until the per-host limit (or the machine's cores) binds. Each W2 run flips the night (2, 1, 2 …) so every run sees the same
   5% of changed pages.

PostgreSQL is a throwaway cluster (tests/postgres.py). Every fetcher process (refresh,
worker, their extraction processes) has Python's bytecode cache, as in `python -m
bench` (bench.measure.bytecode_cached; until 2026-12-07 each compiled fetcher's
sources at its start where PYTHONDONTWRITEBYTECODE is set). Prints one JSON object.
Loopback only, as bench/run.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from collections.abc import Iterator
from typing import Any

from bench import measure, workload
from bench.run import ROOT, OriginProcess, log, write_config

PY = sys.executable


def migrated(url: str, work: Path) -> None:
    """The store's tables and the queue's in the database at `url`, as `fetcher store migrate` makes them
    (the claim reads each source's health from the store's table)."""
    config = write_config(work / "migrate", [], 1)
    done = subprocess.run([PY, "-m", "fetcher", "store", "migrate"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "FETCHER_CONFIG": str(config), "FETCHER_DATABASE": url})
    if done.returncode != 0:
        raise RuntimeError(f"store migrate: {done.stderr[-500:]}")


def enqueue_rate(url: str, count: int) -> dict[str, Any]:
    from fetcher.core.models import Source
    from fetcher.run import queue

    sources = [Source(f"http://127.0.0.{2 + n % 40}/s/{n}", f"r{n:07d}") for n in range(count)]
    app = queue.make_app(url, "fetcher")

    async def go() -> float:
        async with app.open_async():
            await queue.create_schema(app, url)
            began = time.perf_counter()
            await queue.enqueue(url, "fetcher", 1, datetime.now(timezone.utc), "bench", sources, 0, {})
            return time.perf_counter() - began

    seconds = asyncio.run(go())
    return {"sources": count, "seconds": round(seconds, 2), "per_second": round(count / seconds)}


_MARK_DONE = """
UPDATE fetcher_run_sources SET state = 'done', worker = 'bench', outcome = %(outcome)s, has_content = true,
    changed = false, archived = false, transition = NULL
WHERE run_id = %(run_id)s AND resource_id = %(resource_id)s AND state <> 'done'
RETURNING 1
"""


def claim_rate(url: str, seconds: float, concurrency: int = 2) -> dict[str, Any]:
    import psycopg

    from fetcher.core.outcomes import Outcome
    from fetcher.run import board, queue

    from psycopg_pool import AsyncConnectionPool

    pool = AsyncConnectionPool(url, min_size=1, max_size=8, kwargs={"autocommit": True}, open=False)

    async def one(taken: board.Claim) -> None:  # marked done as a worker marks it, but with no fetch row to read
        async with pool.connection() as db, db.transaction():
            await db.execute(_MARK_DONE, {"run_id": taken.run_id, "resource_id": taken.source.resource_id,
                                          "outcome": Outcome.NOT_MODIFIED.value})

    async def job(context: Any, run_id: int, first: int, last: int) -> None:
        async with pool.connection() as db:
            claims = await board.claim(db, run_id, first, last, "bench")
        await asyncio.gather(*(one(taken) for taken in claims))

    app = queue.make_app(url, "fetcher", job)

    async def go() -> None:
        async with app.open_async(), pool:
            worker = asyncio.ensure_future(app.run_worker_async(
                queues=["fetcher"], concurrency=concurrency, wait=True, install_signal_handlers=False,
                delete_jobs="successful", listen_notify=False))
            await asyncio.sleep(seconds)
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)

    asyncio.run(go())
    with psycopg.connect(url) as db:
        done = db.execute("SELECT count(*) FROM fetcher_run_sources WHERE state = 'done'").fetchone()[0]
        left = db.execute("SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo'").fetchone()[0]
    return {"seconds": seconds, "jobs_at_once": concurrency, "sources": done, "per_second": round(done / seconds),
            "jobs_left": left}


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process, its children that have exited and its live ones."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    own = sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return own + sum(tree_cpu(child) for child in measure._children(pid))


def start_workers(n: int, env: dict[str, str], work: Path, cwd: Path = ROOT,
                  concurrency: int | None = None) -> list[subprocess.Popen[bytes]]:
    """`n` `fetcher worker` processes (`concurrency`: each one's fetches at once; default the config's)."""
    logs = [open(work / f"worker-{len(list(work.glob('worker-*')))}-{i}.log", "wb") for i in range(n)]
    command = [PY, "-m", "fetcher", "worker", *(["--concurrency", str(concurrency)] if concurrency else [])]
    return [subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=log_file)
            for log_file in logs]


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        worker.wait(timeout=60)


def wait_for_workers(url: str, n: int, workers: list[subprocess.Popen[bytes]], work: Path) -> None:
    import psycopg

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(worker.poll() is not None for worker in workers):
            logs = "".join(path.read_text()[-1500:] for path in sorted(work.glob("worker-*.log")))
            raise RuntimeError(f"a worker exited: {logs}")
        try:
            with psycopg.connect(url) as db:
                if db.execute("SELECT count(*) FROM procrastinate_workers").fetchone()[0] >= n:
                    return
        except psycopg.Error:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{n} workers did not start")


def timed_refresh(env: dict[str, str], work: Path, label: str) -> tuple[float, dict[str, Any]]:
    began = time.perf_counter()
    done = subprocess.run([PY, "-m", "fetcher", "refresh", "--all", "--json"], cwd=str(env.get("PYTHONPATH", ROOT)).split(os.pathsep)[-1], env=env,
                          capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - began
    (work / f"{label}.log").write_text(done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"{label}: exit {done.returncode}: {done.stderr[-500:]}")
    return seconds, json.loads(done.stdout)


def w2_over_workers(url: str, count: int, hosts: int, counts: list[int], work: Path,
                    postmaster: int, concurrency: int | None = None) -> dict[str, Any]:
    sources = workload.mixed(workload.load_corpus(), count, hosts)
    origin = OriginProcess("mixed", count, hosts, 0.1)
    results: dict[str, Any] = {"sources": count, "hosts": hosts, "worker_concurrency": concurrency}
    try:
        config = write_config(work / "w", [workload.url_of(s, origin.port) for s in sources], hosts)
        env = measure.bytecode_cached({**os.environ, "FETCHER_CONFIG": str(config), "FETCHER_DATABASE": url,
                                       "PYTHONPATH": str(ROOT)})
        workers = start_workers(2, env, work)
        wait_for_workers(url, 2, workers, work)
        log(f"W1 with 2 workers: {count} sources over {hosts} hosts")
        results["w1_two_workers_s"] = round(timed_refresh(env, work, "w1")[0], 2)
        stop_workers(workers)
        for n, night in zip(counts, [2, 1] * len(counts)):
            origin.call(f"/__night/{night}")
            workers = start_workers(n, env, work, concurrency=concurrency)
            wait_for_workers(url, n, workers, work)
            log(f"W2 with {n} worker(s){f' of concurrency {concurrency}' if concurrency else ''}, night {night}")
            cpu_before = (tree_cpu(postmaster), sum(tree_cpu(w.pid) for w in workers))
            seconds, summary = timed_refresh(env, work, f"w2-{n}")
            cpu_after = (tree_cpu(postmaster), sum(tree_cpu(w.pid) for w in workers))
            stop_workers(workers)
            results[f"w2_{n}_workers"] = {
                "seconds": round(seconds, 2), "changed": summary.get("changed"), "total": summary.get("total"),
                "cpu_postgres_s": round(cpu_after[0] - cpu_before[0], 2),
                "cpu_workers_s": round(cpu_after[1] - cpu_before[1], 2),
                "load_average": os.getloadavg()[0],
            }
            log(f"W2 with {n}: {seconds:.1f}s")
    finally:
        origin.stop()
    return results


def size(text: str) -> tuple[int, int]:
    """`COUNTxHOSTS`, as 400x10."""
    count, hosts = text.lower().split("x")
    return int(count), int(hosts)


def compare(cluster: Any, w1: tuple[int, int], w2: tuple[int, int], runs: int, codes: list[Path],
            work: Path, w1_runs: int = 1) -> dict[str, Any]:
    """W1 `w1_runs` times on SQLite and PostgreSQL (one worker) at size w1, each run into
    empty stores; W2 `runs` times on each at size w2; per code, medians."""
    results: dict[str, Any] = {"w1_size": list(w1), "w2_size": list(w2), "w1_runs": w1_runs, "w2_runs": runs,
                               "codes": {}}
    times: dict[tuple[str, str, str], list[float]] = {}
    for code in codes:
        measure.warm_bytecode(code)
    sources = workload.mixed(workload.load_corpus(), *w1)
    origin = OriginProcess("mixed", w1[0], w1[1], 0.1)
    try:
        for run in range(w1_runs):  # fresh stores each run (a new database); the order flips run by run
            setups = _setups(cluster, [workload.url_of(s, origin.port) for s in sources], w1[1], codes,
                             work / f"w1-{run}")
            for code, sqlite_env, pg_env in setups if run % 2 == 0 else setups[::-1]:
                for engine in ("sqlite", "pg") if run % 2 == 0 else ("pg", "sqlite"):
                    log(f"compare W1 run {run + 1} ({code}, {engine}): {w1[0]} sources over {w1[1]} hosts")
                    if engine == "sqlite":
                        seconds = timed_refresh(sqlite_env, work, "c-w1-sqlite")[0]
                    else:
                        with one_worker(pg_env, work, code):
                            seconds = timed_refresh(pg_env, work, "c-w1-pg")[0]
                    times.setdefault((code, "w1", engine), []).append(seconds)
                    log(f"compare W1 run {run + 1} ({code}, {engine}): {seconds:.2f}s")
    finally:
        origin.stop()
    sources = workload.mixed(workload.load_corpus(), *w2)
    origin = OriginProcess("mixed", w2[0], w2[1], 0.1)
    try:
        setups = _setups(cluster, [workload.url_of(s, origin.port) for s in sources], w2[1], codes, work / "w2")
        log(f"compare W2: the stores filled by one SQLite W1 of {w2[0]} sources over {w2[1]} hosts, copied")
        results["w2_fill_sqlite_s"] = round(timed_refresh(setups[0][1], work, "c-fill")[0], 2)
        for code, sqlite_env, pg_env in setups:
            filled = Path(setups[0][1]["FETCHER_CONFIG"]).parent / "snapshots"
            if code != setups[0][0]:
                shutil.copytree(filled, Path(sqlite_env["FETCHER_CONFIG"]).parent / "snapshots")
            copied = subprocess.run([PY, "-m", "fetcher", "store", "copy", "--to", pg_env["FETCHER_DATABASE"]],
                                    cwd=ROOT, env=setups[0][1], capture_output=True, text=True)
            if copied.returncode != 0:
                raise RuntimeError(f"store copy: {copied.stderr[-500:]}")
        with contextlib.ExitStack() as stack:
            for code, _, pg_env in setups:
                stack.enter_context(one_worker(pg_env, work, code))
            for run in range(runs):
                origin.call(f"/__night/{2 if run % 2 == 0 else 1}")
                for code, sqlite_env, pg_env in setups if run % 2 == 0 else setups[::-1]:
                    engines = [("sqlite", sqlite_env), ("pg", pg_env)]
                    for engine, env in engines if run % 2 == 0 else engines[::-1]:
                        seconds = timed_refresh(env, work, f"c-w2-{engine}")[0]
                        times.setdefault((code, "w2", engine), []).append(seconds)
                        log(f"compare W2 run {run + 1} ({code}, {engine}): {seconds:.2f}s")
    finally:
        origin.stop()
    for code in (str(code) for code in codes):
        results["codes"][code] = {night: _ratio(times, code, night) for night in ("w1", "w2")}
    return results


def _ratio(times: dict[tuple[str, str, str], list[float]], code: str, night: str) -> dict[str, Any]:
    sqlite_s = statistics.median(times[(code, night, "sqlite")])
    pg_s = statistics.median(times[(code, night, "pg")])
    log(f"{code} {night.upper()}: SQLite {sqlite_s:.2f}s, PostgreSQL {pg_s:.2f}s: {pg_s / sqlite_s:.2f}x")
    return {"sqlite_s": round(sqlite_s, 2), "pg_one_worker_s": round(pg_s, 2), "pg_over_sqlite": round(pg_s / sqlite_s, 3),
            "runs": {engine: [round(t, 2) for t in times[(code, night, engine)]] for engine in ("sqlite", "pg")}}


def _setups(cluster: Any, urls: list[str], hosts: int, codes: list[Path],
            work: Path) -> list[tuple[str, dict[str, str], dict[str, str]]]:
    """Per code: the environment of its SQLite store and of its PostgreSQL store (a fresh database)."""
    setups = []
    for n, code in enumerate(codes):
        base = measure.bytecode_cached({**os.environ, "PYTHONPATH": str(code)})
        sqlite_env = {**base, "FETCHER_CONFIG": str(write_config(work / f"c{n}-sqlite", urls, hosts))}
        pg_env = {**base, "FETCHER_CONFIG": str(write_config(work / f"c{n}-pg", urls, hosts)),
                  "FETCHER_DATABASE": cluster.database()}
        setups.append((str(code), sqlite_env, pg_env))
    return setups


@contextlib.contextmanager
def one_worker(env: dict[str, str], work: Path, code: str) -> Iterator[None]:
    started = start_workers(1, env, work, cwd=Path(code))
    try:
        wait_for_workers(env["FETCHER_DATABASE"], 1, started, work)
        yield
    finally:
        stop_workers(started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queue-sources", type=int, default=1_000_000)
    parser.add_argument("--claim-seconds", type=float, default=20.0)
    parser.add_argument("--w2-sources", type=int, default=2000)
    parser.add_argument("--hosts", type=int, default=40)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--worker-concurrency", type=int, default=None,
                        help="W2 over workers: each worker's fetches at once (default: the config's concurrency)")
    parser.add_argument("--compare-w1", type=size, default="400x10", help="W1's size, COUNTxHOSTS")
    parser.add_argument("--compare-w2", type=size, default="2000x40", help="W2's size, COUNTxHOSTS")
    parser.add_argument("--w1-runs", type=int, default=3)
    parser.add_argument("--w2-runs", type=int, default=5)
    parser.add_argument("--code", type=Path, action="append", help="fetcher's code to compare (repeatable)")
    parser.add_argument("--only", default="compare,queue,w2")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.postgres import start_cluster

    clusters = start_cluster()
    cluster = next(clusters)
    results: dict[str, Any] = {"cores": os.cpu_count()}
    try:
        with tempfile.TemporaryDirectory(prefix="fetcher-bench-workers-") as directory:
            if "compare" in args.only:
                codes = [code.resolve() for code in args.code or [ROOT]]
                results["compare"] = compare(cluster, args.compare_w1, args.compare_w2, args.w2_runs,
                                             codes, Path(directory), args.w1_runs)
            if "queue" in args.only:
                url = cluster.database()
                migrated(url, Path(directory))
                log(f"enqueue {args.queue_sources} sources")
                results["enqueue"] = enqueue_rate(url, args.queue_sources)
                log(f"enqueue: {results['enqueue']}")
                results["claim"] = claim_rate(url, args.claim_seconds)
                log(f"claim: {results['claim']}")
            if "w2" in args.only:
                counts = [int(n) for n in args.workers.split(",")]
                postmaster = int((cluster.directory / "data" / "postmaster.pid").read_text().split()[0])
                results["w2"] = w2_over_workers(cluster.database(), args.w2_sources, args.hosts, counts,
                                                Path(directory), postmaster, args.worker_concurrency)
    finally:
        next(clusters, None)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
