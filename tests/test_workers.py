"""`fetcher worker` on a PostgreSQL store: three worker processes, as a user
starts them, over ten loopback hosts and 300 sources, checked where it counts:
at the servers (every page requested once, never more than the per-host limit
at once, starts spaced by the per-host delay) and in the store (every source
stored once a run), with one worker SIGKILLed in the middle of a run and another sent SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import psycopg

from tests.conftest import fetcher_command, write_config
from tests.origin import Origin, html

HOSTS = [f"127.0.0.{n}" for n in range(1, 11)]
PER_HOST, DELAY, LATENCY, CONCURRENCY, LEASE = 2, 0.2, 0.25, 8, 3.0
# Turns are taken DELAY apart on the database's clock; between a worker taking its
# turn and its request reaching the server, three worker processes with their
# extraction processes on two cores (and the servers' own threads) now and then add
# well over 100 ms. So: at most one gap a host closer than DELAY - TOLERANCE, and
# the host's whole span (where the noise cancels out, the host being busy
# throughout) at least (n - 1) × DELAY, less a little.
TOLERANCE = 0.12
GRACE = 2.0


def article(n: int) -> str:
    words = " ".join(f"word{n}x{i}" for i in range(80))
    return (f"<html><head><title>Bulletin {n}</title></head><body><article><h1>Bulletin {n}</h1>"
            f"<p>This is bulletin number {n}. {words}</p><p>{words}</p></article></body></html>")


def start_worker(cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(fetcher_command() + ["worker"], cwd=cwd, env=env, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stored_per_source(url: str) -> Counter[str]:
    """How many fetches the store holds for each source, read with psycopg itself."""
    with psycopg.connect(url) as db:
        return Counter(dict(db.execute("SELECT resource_id, count(*) FROM fetches GROUP BY 1").fetchall()))


def board_done(url: str, run_id: int) -> int:
    with psycopg.connect(url) as db:
        row = db.execute("SELECT count(*) FROM fetcher_run_sources WHERE run_id = %s AND state = 'done'",
                         (run_id,)).fetchone()
    return int(row[0]) if row else 0


def test_three_workers_fetch_each_source_once_within_the_host_limits_and_survive_a_kill(tmp_path, pg_url):
    with ExitStack() as stack:
        origins = [stack.enter_context(Origin(ip, latency=LATENCY)) for ip in HOSTS]
        urls = [origins[n % 10].route(f"/bulletins/{n}", html(article(n))) for n in range(300)]
        write_config(tmp_path, urls, concurrency=CONCURRENCY, per_host_concurrency=PER_HOST, per_host_delay=DELAY,
                     text=f"\n[workers]\nlease = {LEASE}\n\n[schedule]\nshutdown_grace = {GRACE}\n")
        env = worker_env(tmp_path, pg_url)
        workers = [start_worker(tmp_path, env) for _ in range(3)]
        stack.callback(lambda: [w.kill() for w in workers])

        # One run, all three workers: every page once, the limits held across the workers.
        done = subprocess.run(fetcher_command() + ["refresh", "--json"], cwd=tmp_path, env=env, text=True,
                              capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert '"ok": 300' in done.stdout
        for origin in origins:
            pages = Counter(seen.path for seen in origin.requests if seen.path.startswith("/bulletins/"))
            assert sorted(pages.values()) == [1] * 30, origin.ip
            assert origin.max_in_flight <= PER_HOST, (origin.ip, origin.max_in_flight)
            seen_in_order = sorted(origin.requests, key=lambda seen: seen.started)
            close = [(a.path, a.peer, b.path, b.peer, round(b.started - a.started, 4))
                     for a, b in zip(seen_in_order, seen_in_order[1:]) if b.started - a.started < DELAY - TOLERANCE]
            assert len(close) <= 1, (origin.ip, close)
            span = seen_in_order[-1].started - seen_in_order[0].started
            assert span >= (len(seen_in_order) - 1) * DELAY - 0.05, (origin.ip, span)
        assert max(origin.max_in_flight for origin in origins) == PER_HOST  # the limit was reached
        assert stored_per_source(pg_url) == Counter({rid: 1 for rid in stored_per_source(pg_url)})
        assert len(stored_per_source(pg_url)) == 300
        for origin in origins:
            origin.requests.clear()

        # A second run; one worker is killed halfway: the others finish it, each source stored once.
        queued = subprocess.run(fetcher_command() + ["refresh", "--all", "--no-wait", "--json"], cwd=tmp_path,
                                env=env, text=True, capture_output=True, timeout=30)
        assert queued.returncode == 0, queued.stderr
        run_id = int(queued.stdout.split('"run_id":')[1].split(",")[0])
        deadline = time.monotonic() + 30
        while board_done(pg_url, run_id) < 100 and time.monotonic() < deadline:
            time.sleep(0.05)
        workers[0].send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        refused = subprocess.run(fetcher_command() + ["refresh"], cwd=tmp_path, env=env, text=True,
                                 capture_output=True, timeout=60)
        assert refused.returncode == 3, refused.stderr  # a run is going: a second one is refused
        assert f"queued run {run_id}" in refused.stderr
        shown = subprocess.run(fetcher_command() + ["status", "--json"], cwd=tmp_path, env=env, text=True,
                               capture_output=True, timeout=30)
        assert shown.returncode == 0, shown.stderr
        status = json.loads(shown.stdout)
        assert status["queued_run"]["run_id"] == run_id
        assert len(status["workers"]) >= 2 and any(w["fetching"] for w in status["workers"]), status["workers"]
        # SIGTERM to a second worker: it takes nothing new, and ends once what it holds is done or handed back.
        workers[1].send_signal(signal.SIGTERM)
        assert workers[1].wait(timeout=GRACE + 10) == 0
        while board_done(pg_url, run_id) < 300 and time.monotonic() < deadline + 30:
            time.sleep(0.1)
        assert board_done(pg_url, run_id) == 300
        taken_up_within = time.monotonic() - killed_at
        assert stored_per_source(pg_url) == Counter({rid: 2 for rid in stored_per_source(pg_url)})
        runs = subprocess.run(fetcher_command() + ["runs", "--json"], cwd=tmp_path, env=env, text=True,
                              capture_output=True, timeout=30)
        assert runs.returncode == 0, runs.stderr
        second = json.loads(runs.stdout)[0]
        assert (second["id"], second["status"], second["summary"]["total"]) == (run_id, "completed", 300), second
        repeated = [path for origin in origins
                    for path, n in Counter(s.path for s in origin.requests if s.path.startswith("/bulletins/")).items()
                    if n > 1]
        # only what the killed worker had in hand, and what the SIGTERMed one handed back unfinished
        assert len(repeated) <= 2 * CONCURRENCY, repeated
        assert taken_up_within < 1.25 * LEASE + 10, taken_up_within
        workers[2].send_signal(signal.SIGTERM)
        assert workers[2].wait(timeout=20) == 0, workers[2].stderr.read() if workers[2].stderr else ""


def test_worker_and_no_wait_need_a_postgresql_store(tmp_path, monkeypatch):
    monkeypatch.delenv("FETCHER_DATABASE", raising=False)
    config = write_config(tmp_path, ["http://127.0.0.1:9/a"])
    for words in (["worker"], ["refresh", "--no-wait"]):
        result = subprocess.run(fetcher_command() + ["--config", str(config), *words], cwd=tmp_path, text=True,
                                capture_output=True, timeout=60)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        assert "PostgreSQL" in lines[0] or "SQLite" in lines[0], lines[0]


def test_schedule_on_postgresql_queues_the_run_and_a_worker_with_once_finishes_it(tmp_path, pg_url):
    with Origin("127.0.0.1") as origin:
        urls = [origin.route(f"/bulletins/{n}", html(article(n))) for n in range(6)]
        write_config(tmp_path, urls, text="\n[schedule]\ncron = \"0 3 * * *\"\n")
        env = worker_env(tmp_path, pg_url)
        scheduler = subprocess.Popen(fetcher_command() + ["schedule", "--run-now"], cwd=tmp_path, env=env, text=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_for_a_queued_run(pg_url)
        finally:
            scheduler.send_signal(signal.SIGTERM)
            assert scheduler.wait(timeout=20) == 0, scheduler.stderr.read() if scheduler.stderr else ""
        assert queued_runs(pg_url) == [("schedule", 6)]
        assert origin.requests == []  # the scheduler queues; it fetches nothing itself

        shown = subprocess.run(fetcher_command() + ["status", "--json"], cwd=tmp_path, env=env, text=True,
                               capture_output=True, timeout=30)
        status = json.loads(shown.stdout)
        assert status["queued_run"]["done"] == 0 and status["queued_run"]["total"] == 6
        assert status["workers"] == []

        once = subprocess.run(fetcher_command() + ["worker", "--once", "--concurrency", "2"], cwd=tmp_path, env=env,
                              text=True, capture_output=True, timeout=60)
        assert once.returncode == 0, once.stderr
        pages = Counter(seen.path for seen in origin.requests if seen.path.startswith("/bulletins/"))
        assert pages == Counter({f"/bulletins/{n}": 1 for n in range(6)})
    runs = json.loads(subprocess.run(fetcher_command() + ["runs", "--json"], cwd=tmp_path, env=env, text=True,
                                     capture_output=True, timeout=30).stdout)
    assert [(run["trigger"], run["status"], run["summary"]["total"]) for run in runs] == [("schedule", "completed", 6)]


def worker_env(directory: Path, url: str) -> dict[str, str]:
    """The environment of a fetcher command on the config in `directory`, its store the database at `url`."""
    return {**os.environ, "FETCHER_CONFIG": str(directory / "config.toml"), "FETCHER_DATABASE": url,
            "PYTHONPATH": str(Path(__file__).parent.parent)}


def wait_for_a_queued_run(url: str, seconds: float = 30) -> None:
    """Until a run is on the queue's board (or `seconds` have passed)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not queued_runs(url):
        time.sleep(0.1)


def queued_runs(url: str) -> list[tuple[str, int]]:
    with psycopg.connect(url) as db:
        if not db.execute("SELECT to_regclass('fetcher_queue_runs') IS NOT NULL").fetchone()[0]:
            return []
        return [tuple(row) for row in db.execute("SELECT trigger, total FROM fetcher_queue_runs").fetchall()]


def test_a_followed_refresh_with_no_worker_says_so_and_ends_when_one_comes(tmp_path, pg_url):
    """`refresh` on PostgreSQL waits for the workers: with none running it says so
    (once, on stderr), and it ends with the run once a worker has fetched it."""
    with Origin("127.0.0.1") as origin:
        urls = [origin.route(f"/notes/{n}", html(article(n))) for n in range(3)]
        write_config(tmp_path, urls)
        env = worker_env(tmp_path, pg_url)
        following = subprocess.Popen(fetcher_command() + ["refresh", "--json"], cwd=tmp_path, env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            wait_for_a_queued_run(pg_url)
            assert following.poll() is None and origin.requests == []  # queued, waiting, nothing fetched
            once = subprocess.run(fetcher_command() + ["worker", "--once"], cwd=tmp_path, env=env, text=True,
                                  capture_output=True, timeout=60)
            assert once.returncode == 0, once.stderr
            out, err = following.communicate(timeout=30)
        finally:
            following.kill()
    assert following.returncode == 0, err
    assert err.count("no worker is running on this store") == 1, err
    assert json.loads(out)["total"] == 3


def test_a_fetch_of_a_source_another_worker_marked_done_first_is_rolled_back_whole(tmp_path, pg_url, origin):
    """The board's mark is part of the fetch's transaction: for a source another
    worker marked done first, nothing of the fetch is stored (AlreadyFetched);
    for the other, the board says what the stored fetch was."""
    import asyncio
    from datetime import datetime, timezone

    from fetcher.core.config import load_config
    from fetcher.core.errors import AlreadyFetched
    from fetcher.run import board
    from fetcher.run.options import FetchOptions
    from fetcher.run.pipeline import Pipeline
    from fetcher.run.worker import MarkDone
    from fetcher.store.opening import open_store

    urls = [origin.route("/taken", html(article(1))), origin.route("/free", html(article(2)))]
    config = load_config(write_config(tmp_path, urls, database=pg_url))
    taken, free = config.sources
    store = open_store(config)
    with psycopg.connect(pg_url, autocommit=True) as db:
        board.create_schema(db)
        with db.transaction():
            board.add_run(db, 7, datetime.now(timezone.utc), "test", {}, config.sources, 0)
        db.execute("UPDATE fetcher_run_sources SET state = 'done', worker = 'other' WHERE resource_id = %s",
                   (taken.resource_id,))

    mark = MarkDone(store, 7, "me")

    async def fetch_both() -> list[object]:
        outcomes: list[object] = []
        async with Pipeline(config, store, processes=False) as pipeline:
            for source in (taken, free):
                try:
                    outcomes.append(await pipeline.fetch(source, FetchOptions(also_in_transaction=mark)))
                except AlreadyFetched as error:
                    outcomes.append(error)
        return outcomes

    try:
        outcome_taken, outcome_free = asyncio.run(fetch_both())
    finally:
        store.close()
    assert isinstance(outcome_taken, AlreadyFetched)
    assert stored_per_source(pg_url) == Counter({free.resource_id: 1})
    with psycopg.connect(pg_url) as db:
        rows = db.execute("SELECT resource_id, state, worker, outcome, has_content, changed, archived"
                          " FROM fetcher_run_sources WHERE run_id = 7 ORDER BY position").fetchall()
        health = db.execute("SELECT resource_id FROM health").fetchall()
    assert rows == [(taken.resource_id, "done", "other", None, None, None, None),
                    (free.resource_id, "done", "me", "ok", True, True, False)]
    assert health == [(free.resource_id,)]


def test_a_batch_with_a_source_another_worker_stored_keeps_the_others(tmp_path, pg_url, monkeypatch):
    """A worker stores the fetches that bring no body in batches and marks their
    sources done in one statement. When another worker stored one of them
    first, the batch is stored again one by one: that fetch alone is rolled back
    (AlreadyFetched), the others are stored and marked once."""
    from datetime import datetime, timezone

    from fetcher.core.config import load_config
    from fetcher.core.errors import AlreadyFetched
    from fetcher.core.models import Download, FetchResult, Snapshot
    from fetcher.core.outcomes import Outcome
    from fetcher.run import board
    from fetcher.run import storing
    from fetcher.run.storing import store_checks, store_result
    from fetcher.run.worker import MarkDone
    from fetcher.store.opening import open_store

    alone: list[str] = []  # the fetches stored one by one
    monkeypatch.setattr(storing, "store_result",
                        lambda store, result, *a, **k: alone.append(result.source.resource_id) or store_result(store, result, *a, **k))
    urls = [f"http://127.0.0.1:9/page/{n}" for n in range(4)]
    config = load_config(write_config(tmp_path, urls, database=pg_url))
    store = open_store(config)
    with psycopg.connect(pg_url, autocommit=True) as db:
        board.create_schema(db)
        with db.transaction():
            board.add_run(db, 7, datetime.now(timezone.utc), "test", {}, config.sources, 0)
    mark = MarkDone(store, 7, "me")
    when = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def gone(source):
        return FetchResult(source, when, "live", Download(source.url, Outcome.HTTP_404, source.url, 404), 1,
                           live_status=404, live_outcome=Outcome.HTTP_404)

    try:
        first = store_checks(store, [(gone(source), mark) for source in config.sources[:2]])
        with psycopg.connect(pg_url, autocommit=True) as db:
            db.execute("UPDATE fetcher_run_sources SET state = 'done', worker = 'other' WHERE resource_id = %s",
                       (config.sources[3].resource_id,))
        second = store_checks(store, [(gone(source), mark) for source in config.sources[2:]])
    finally:
        store.close()
    assert all(isinstance(outcome, Snapshot) for outcome in first)
    assert alone == [source.resource_id for source in config.sources[2:]]  # the first batch: together
    assert isinstance(second[0], Snapshot) and isinstance(second[1], AlreadyFetched)
    stored = [source.resource_id for source in config.sources[:3]]
    assert stored_per_source(pg_url) == Counter(stored)
    with psycopg.connect(pg_url) as db:
        rows = db.execute("SELECT resource_id, state, worker, outcome, has_content FROM fetcher_run_sources"
                          " WHERE run_id = 7 ORDER BY position").fetchall()
    assert rows == [*[(resource_id, "done", "me", "http-404", False) for resource_id in stored],
                    (config.sources[3].resource_id, "done", "other", None, None)]


def test_a_followed_run_ends_when_its_end_is_notified_not_at_the_next_look(tmp_path, pg_url, origin):
    """`refresh` follows a queued run by looking at its board every `poll`
    seconds; the run's end, recorded by a worker, wakes it at once."""
    import asyncio
    import threading
    from datetime import datetime, timezone

    from fetcher.core.config import load_config
    from fetcher.run import board
    from fetcher.run.distributed import finish_if_done, follow
    from fetcher.store.opening import open_store

    config = load_config(write_config(tmp_path, [origin.route("/a", html(article(1)))], database=pg_url))
    store = open_store(config)
    run_id = store.start_run(datetime.now(timezone.utc), "test")
    with psycopg.connect(pg_url, autocommit=True) as db:
        board.create_schema(db)
        with db.transaction():
            board.add_run(db, run_id, datetime.now(timezone.utc), "test", {}, list(config.sources), 0)

    def a_worker_finishes_the_run() -> None:  # as the worker that stores the last source does
        time.sleep(0.5)
        with psycopg.connect(pg_url, autocommit=True) as db:
            db.execute("UPDATE fetcher_run_sources SET state = 'done', outcome = 'ok' WHERE run_id = %s", (run_id,))
            assert finish_if_done(db, config, store, run_id) is not None

    worker = threading.Thread(target=a_worker_finishes_the_run)
    began = time.monotonic()
    worker.start()
    try:
        summary = asyncio.run(follow(config, store, run_id, poll=30))
    finally:
        worker.join()
        store.close()
    assert summary.total == 1
    assert time.monotonic() - began < 5  # not the 30 s of the next look


def big_page(n: int) -> str:
    """An article long enough that extracting it takes a while (~10,000 paragraphs)."""
    paragraphs = "".join(f"<p>Paragraph {i} of bulletin {n}: {' '.join(f'word{i}x{j}' for j in range(12))}.</p>"
                         for i in range(10000))
    return f"<html><head><title>Bulletin {n}</title></head><body><article><h1>Bulletin {n}</h1>{paragraphs}</article></body></html>"


def test_a_worker_downloads_the_next_source_while_one_is_extracted_within_its_concurrency(tmp_path, pg_url):
    """One place in the worker (--concurrency 1). A long page's place goes to the next
    source once its download is over: the next source's requests go out while the long
    page is extracted and stored (they waited for both). A request a source sends
    after its download takes a place again: the long page's host's soft-404 probe,
    asked once it is extracted, waits for the slow page in flight, as the servers see it."""
    from tests.test_refresh import Gauge, GaugedOrigin

    gauge = Gauge()
    with GaugedOrigin("127.0.0.2", gauge, latency=0.1) as first, GaugedOrigin("127.0.0.3", gauge, latency=1.5) as slow:
        long_one = first.route("/bulletins/1", html(big_page(1)))
        urls = [long_one, slow.route("/bulletins/2", html(article(2)))]
        write_config(tmp_path, urls, concurrency=1, per_host_concurrency=1)
        env = worker_env(tmp_path, pg_url)
        queued = subprocess.run(fetcher_command() + ["refresh", "--all", "--no-wait", "--json"], cwd=tmp_path,
                                env=env, text=True, capture_output=True, timeout=30)
        assert queued.returncode == 0, queued.stderr
        once = subprocess.run(fetcher_command() + ["worker", "--once", "--concurrency", "1"], cwd=tmp_path, env=env,
                              text=True, capture_output=True, timeout=60)
        assert once.returncode == 0, once.stderr
    assert len(stored_per_source(pg_url)) == 2
    assert len(first.unrouted()) == 1  # the probe was asked
    assert gauge.peak == 1, gauge.peak
    with psycopg.connect(pg_url) as db:
        (elapsed_ms,) = db.execute("SELECT elapsed_ms FROM fetches WHERE url = %s", (long_one,)).fetchone()
    # The long page's fetch is timed from its first request (robots.txt at the latest) until it is stored.
    stored_at = min(seen.started for seen in first.requests) + elapsed_ms / 1000
    next_asked = min(seen.started for seen in slow.requests)  # the next source's first request: its robots.txt
    assert next_asked < stored_at - 0.2, (next_asked, stored_at)
