"""Whole refreshes: the politeness limits hold as the servers see them, a kill -9
mid-run leaves a consistent store that the next run completes, --only fetches
only what it names, and a dead host fails its sources without failing the run."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import importlib
import io
import json
import os
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack, closing
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from click.testing import CliRunner

from fetcher.cli.main import cli
from fetcher.core.config import Config, load_config
from fetcher.core.models import RunSummary
from fetcher.run.pipeline import Pipeline
from fetcher.core.sources import resource_id
from fetcher.store.sqlite import DB_NAME, Store
from tests.conftest import corpus_pdfs, fetch_count, fetcher_command, normalised, run_fetcher, write_config
from tests.fake_wayback import FakeWayback
from tests.origin import Origin, conditional, html, respond

SUBJECTS = ["harbour dredging", "school meals", "tram extension", "river flooding", "library hours"]


def article(n: int) -> str:
    """A small but real article page: navigation, a few paragraphs, a footer; its text names `n`."""
    subject = SUBJECTS[n % len(SUBJECTS)]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Council bulletin {n}</title></head>
<body>
<header><nav><a href="/">Home</a> | <a href="/bulletins">Bulletins</a> | <a href="/contact">Contact</a></nav></header>
<main><article>
<h1>Council bulletin {n}: {subject}</h1>
<p>This is bulletin number {n}. The council met on Tuesday evening to discuss {subject}, and
the chair opened the session by summarising the letters received from residents since the last meeting.</p>
<p>Officers presented three options with their costs. Members asked how each option would affect
the budget for the coming year, and whether the work could be phased so that disruption stays low.</p>
<p>After a long debate the council agreed to publish the full report for consultation. Residents
may send comments until the end of next month; a decision is expected at the following meeting.</p>
</article></main>
<footer><p>Published by the council press office. Reuse permitted with attribution.</p></footer>
</body></html>"""


def marker(n: int) -> str:
    return f"This is bulletin number {n}."


class Gauge:
    """Requests in flight across several origins at once, and the most there ever were."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.now -= 1


def counted(gauge: Gauge, handler: BaseHTTPRequestHandler, serve: Callable[[BaseHTTPRequestHandler], None]) -> None:
    """`serve` the request while it counts on `gauge`; its answer is sent once it no longer
    counts. (Counted out after the answer was sent, it could reach the client, which then
    sent the request the answer freed a place for, before this thread had the GIL back to
    count it out: 9 of 8 seen on a CI run, the 9th arriving 2-3 ms after the last byte
    of the answer it replaced.)"""
    wire, handler.wfile = handler.wfile, io.BytesIO()
    try:
        with gauge:
            serve(handler)
        answer = handler.wfile.getvalue()
    finally:
        handler.wfile = wire
    try:
        wire.write(answer)
    except (BrokenPipeError, ConnectionResetError):
        handler.close_connection = True


class GaugedOrigin(Origin):
    """An Origin whose requests (latency included) also count on a gauge shared with other origins."""

    def __init__(self, ip: str, gauge: Gauge, latency: float = 0.0):
        super().__init__(ip, latency)
        self._gauge = gauge

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        counted(self._gauge, handler, super()._serve)


async def refresh_in_process(config: Config, store: Store) -> RunSummary:
    async with Pipeline(config, store, processes=True) as pipeline:
        return await pipeline.refresh(config.sources)


def test_a_slow_host_holds_up_no_other_host(tmp_path):
    """One host answers slowly, one request at a time; the run has two workers.
    While the slow host answers its first page, the other worker goes through
    every page of the fast host instead of waiting for the slow host's turn
    (with one list interleaved by host it took the slow host's second page next
    and waited a whole slow answer for it)."""
    slow_answer = 1.0

    def slowly(n: int) -> Callable[[BaseHTTPRequestHandler], None]:
        def route(handler: BaseHTTPRequestHandler) -> None:
            time.sleep(slow_answer)
            html(article(n))(handler)

        return route

    with Origin("127.0.0.2") as slow, Origin("127.0.0.3") as fast:
        urls = [slow.route(f"/slow/{n}", slowly(n)) for n in range(2)]
        urls += [fast.route(f"/fast/{n}", html(article(n))) for n in range(2, 8)]
        config = load_config(write_config(tmp_path, urls, concurrency=2, per_host_concurrency=1))
        store = Store(config.storage_dir)
        try:
            summary = asyncio.run(refresh_in_process(config, store))
        finally:
            store.close()
    assert summary.counts == {"ok": 8}
    first_slow = min(seen.started for seen in slow.requests if seen.path.startswith("/slow/"))
    fast_pages = [seen.started for seen in fast.requests if seen.path.startswith("/fast/")]
    assert len(fast_pages) == 6
    assert max(fast_pages) - first_slow < slow_answer, [round(t - first_slow, 3) for t in fast_pages]


def stored_fetches(db_file: Path) -> int:
    """Fetches in a store another process may be writing (0 until it can be read)."""
    try:
        with closing(sqlite3.connect(f"{db_file.as_uri()}?mode=ro", uri=True, timeout=0.2)) as db:
            return db.execute("SELECT COUNT(*) FROM fetches").fetchone()[0]
    except sqlite3.DatabaseError:  # no file yet, no schema yet, or locked
        return 0


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes in a process group."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, _parent, group = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue
        if int(group) == pgid and state != "Z":
            members.append(int(entry.name))
    return members


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:100]
    except OSError:
        return f"{pid} (gone)"


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait_until_gone(pgid: int, seconds: float) -> list[int]:
    """Wait for a process group to empty; returns whoever is still there."""
    deadline = time.monotonic() + seconds
    while (members := group_members(pgid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return members


def offline_config(directory: Path, urls: list[str], **fetch: object) -> Path:
    """write_config, checked: a `fetcher` subprocess is outside the in-process loopback
    guard, so nothing in its config may send it off this machine (no archive fallback)."""
    path = write_config(directory, urls, **fetch)
    assert not load_config(path).archive.enabled
    return path


def start_refresh(config: Path, cwd: Path) -> subprocess.Popen:
    """`fetcher refresh` in its own session, so it and its extractor processes form one group."""
    return subprocess.Popen(
        fetcher_command() + ["--config", str(config), "refresh"],
        cwd=cwd,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_for_fetches(process: subprocess.Popen, db_file: Path, at_least: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while stored_fetches(db_file) < at_least:
        assert process.poll() is None, "the refresh ended before it could be killed"
        assert time.monotonic() < deadline, f"fewer than {at_least} fetches stored after {seconds}s"
        time.sleep(0.01)


def check_store(storage: Path) -> list[tuple[int, str, str | None, str]]:
    """The SQLite file is sound, and every fetch with content has its contents row and
    a body file whose bytes hash to its name. Returns (id, resource_id, sha256, outcome) rows."""
    with closing(sqlite3.connect(storage / DB_NAME)) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        rows = db.execute("SELECT id, resource_id, sha256, outcome FROM fetches ORDER BY id").fetchall()
        contents = {sha for (sha,) in db.execute("SELECT sha256 FROM contents")}
    for fetch_id, _, sha, _ in rows:
        if sha is None:
            continue
        assert sha in contents, f"fetch {fetch_id}: no contents row for {sha}"
        body = storage / "bodies" / sha[:2] / f"{sha}.gz"
        assert body.is_file(), f"fetch {fetch_id}: no body file {body}"
        assert hashlib.sha256(gzip.decompress(body.read_bytes())).hexdigest() == sha, f"fetch {fetch_id}: {body}"
    return rows


def closed_port(ip: str) -> int:
    """A port nothing listens on: bound for a moment, then released."""
    with socket.socket() as probe:
        probe.bind((ip, 0))
        return probe.getsockname()[1]


# -- politeness, as the servers see it ---------------------------------------------

PER_HOST = 2
CONCURRENCY = 8
# The spacing the servers see is the spacing of slot acquisitions plus the
# variation of the time from acquisition to the request reaching the server
# (connection set-up, a busy event loop, extractor processes holding both cores,
# in-process server threads): up to ~35 ms measured on a 2-core machine at a
# 0.03 s delay, up to ~20 ms at this one with both cores otherwise busy. So the
# delay is long enough for a tolerance above that noise to still mean something.
DELAY = 0.1
TOLERANCE = 0.05
# (address, latency, sources). Every request outlasts the delay, so each host would
# have two in flight even without the cap; the slow host's requests outlast two
# delays, and every fifth source in the interleaved run is its, so workers queue
# for it: a cap above PER_HOST would show there. At the start the first ten
# sources span all five hosts twice, more than CONCURRENCY.
HOSTS = [("127.0.0.2", 0.3, 30), ("127.0.0.3", 0.15, 43), ("127.0.0.4", 0.15, 43),
         ("127.0.0.5", 0.15, 42), ("127.0.0.6", 0.15, 42)]


def test_a_refresh_of_200_sources_keeps_every_limit_as_the_servers_see_it(tmp_path):
    gauge = Gauge()
    with ExitStack() as stack:
        urls, paths, origins = [], {}, []
        for ip, latency, count in HOSTS:  # listed host by host, as a config usually is
            origin = stack.enter_context(GaugedOrigin(ip, gauge, latency=latency))
            origins.append(origin)
            for n in range(len(urls), len(urls) + count):
                path = f"/bulletins/{n}"
                urls.append(origin.route(path, html(article(n))))
                paths.setdefault(ip, []).append(path)
        assert len(urls) == 200
        config = load_config(
            write_config(tmp_path, urls, concurrency=CONCURRENCY, per_host_concurrency=PER_HOST, per_host_delay=DELAY)
        )
        store = Store(config.storage_dir)
        try:
            summary = asyncio.run(refresh_in_process(config, store))

            assert summary.counts == {"ok": 200}
            assert (summary.failed, summary.changed, summary.unchanged) == (0, 200, 0)
            assert fetch_count(config.storage_dir) == 200
            for n, url in enumerate(urls):
                latest = store.latest(resource_id(url))
                assert latest is not None and latest.outcome == "ok", url
                assert marker(n) in latest.text, url
        finally:
            store.close()

    for origin in origins:
        # every page once, the host's robots.txt once (it answers 404: allow all), and the soft-404
        # probe: one made-up path per host per run
        probes = origin.unrouted()
        expected = paths[origin.ip] + ["/robots.txt"] + probes
        assert Counter(seen.path for seen in origin.requests) == Counter(expected), origin.ip
        assert len(probes) == 1, (origin.ip, probes)
        assert origin.max_in_flight <= PER_HOST, (origin.ip, origin.max_in_flight)
        starts = sorted(seen.started for seen in origin.requests)
        # Arrival times at the server carry its threads' scheduling: one request read late
        # (0.24 s after the one before, the next 0.02 s after it: seen on a 2-core CI machine)
        # shortens the gap after it. Two delays apart is what a late arrival cannot hide.
        spans = [later - earlier for earlier, later in zip(starts, starts[2:])]
        assert min(spans) >= 2 * DELAY - TOLERANCE, (origin.ip, f"{min(spans):.4f}")
        # Over a whole host the noise cancels out: n starts take at least n - 1 delays.
        assert starts[-1] - starts[0] >= (len(starts) - 1) * DELAY - TOLERANCE, origin.ip
    assert gauge.peak <= CONCURRENCY, gauge.peak
    # The limits were reached, so the checks above had something to hold back.
    assert [origin.max_in_flight for origin in origins] == [PER_HOST] * len(origins)
    assert gauge.peak == CONCURRENCY


class GaugedWayback(FakeWayback):
    """A FakeWayback whose requests also count on a gauge shared with origins, each answered after `latency`."""

    def __init__(self, ip: str, gauge: Gauge, latency: float):
        super().__init__(ip)
        self._gauge = gauge
        self._latency = latency

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        def serve(handler: BaseHTTPRequestHandler) -> None:
            time.sleep(self._latency)
            super(GaugedWayback, self)._serve(handler)

        counted(self._gauge, handler, serve)


def test_the_requests_a_source_sends_after_its_download_keep_the_runs_concurrency(tmp_path):
    """One place in the run (concurrency = 1): a source gives it to the next source
    once its download is over, but the requests it still has to send take a place
    again: the soft-404 probe of its host (asked for a page with new content), and
    the archive's lookup and copy (asked for a dead page). So at no moment is more
    than one request in flight, as the servers see it, while the next source downloads
    slowly from another host. (The probe and the archive went out without a place:
    two at once, seen as 9 of 8 on a CI run of the test above.) A source robots.txt
    keeps from its host gives its place back before it asks the archive (holding it,
    with one place, it would wait for itself for ever)."""
    gauge = Gauge()
    with (GaugedOrigin("127.0.0.2", gauge, latency=0.1) as first, GaugedOrigin("127.0.0.3", gauge, latency=0.4) as slow,
          GaugedOrigin("127.0.0.4", gauge, latency=0.1) as dead, GaugedWayback("127.0.0.5", gauge, latency=0.1) as archive,
          GaugedOrigin("127.0.0.6", gauge, latency=0.1) as walled):
        gone = dead.route("/bulletins/3", html("<html><body>gone</body></html>", status=404))
        walled.route("/robots.txt", respond(200, b"User-agent: *\nDisallow: /\n", {"Content-Type": "text/plain"}))
        kept_out = walled.url("/bulletins/5")
        archive.add(gone, "20250101000000", article(3).encode())
        archive.add(kept_out, "20250101000000", article(5).encode())
        urls = [first.route("/bulletins/1", html(article(1))), slow.route("/bulletins/2", html(article(2))), gone,
                slow.route("/bulletins/4", html(article(4))), kept_out]
        config = load_config(write_config(tmp_path, urls, archive={**archive.settings, "requests_per_minute": 600}, concurrency=1,
                                          per_host_concurrency=1))
        store = Store(config.storage_dir)
        try:
            summary = asyncio.run(asyncio.wait_for(refresh_in_process(config, store), 30))
        finally:
            store.close()
    assert summary.counts == {"ok": 3, "http-404": 1, "robots-blocked": 1}, summary.counts
    assert summary.archived == 2
    assert len(first.unrouted()) == 1 and archive.count("cdx") >= 2 and archive.count("replay") == 2
    assert [seen.path for seen in walled.requests] == ["/robots.txt"]
    assert gauge.peak == 1, gauge.peak


# -- kill -9 in the middle of a refresh, then refresh again ---------------------------

PDFS = ["google-doc-document.pdf", "multicolumn.pdf"]


def test_a_refresh_killed_mid_run_leaves_a_sound_store_and_the_next_run_completes(tmp_path):
    pdfs = corpus_pdfs()
    with Origin("127.0.0.1", latency=0.05) as origin:
        urls = [origin.route(f"/bulletins/{n}", html(article(n))) for n in range(60 - len(PDFS))]
        for name in PDFS:
            urls.append(origin.route(f"/papers/{name}", respond(200, pdfs[name][0], {"Content-Type": "application/pdf"})))
        config = offline_config(tmp_path, urls, concurrency=4, per_host_concurrency=4, per_host_delay=0)
        storage = tmp_path / "snapshots"

        first = start_refresh(config, tmp_path)
        try:
            wait_for_fetches(first, storage / DB_NAME, at_least=5)
            os.kill(first.pid, signal.SIGKILL)
            assert first.wait(timeout=10) == -signal.SIGKILL
        finally:
            kill_group(first.pid)  # the extractor processes, and the whole run if a check above failed
        assert wait_until_gone(first.pid, seconds=10) == []

        before = check_store(storage)
        assert 5 <= len(before) < 60, "the kill did not land in the middle of the run"
        fetched_before = Counter(rid for _, rid, _, _ in before)

        second = run_fetcher(tmp_path, "--config", str(config), "refresh", "--json", timeout=120)
        assert second.returncode == 0, second.stderr
        summary = json.loads(second.stdout)
        # The next nightly run does what the killed one left undone; what it stored is not due.
        remaining = 60 - len(fetched_before)
        assert (summary["total"], summary["counts"], summary["failed"]) == (remaining, {"ok": remaining}, 0)
        assert (summary["changed"], summary["not_due"]) == (remaining, len(fetched_before))

        third = run_fetcher(tmp_path, "--config", str(config), "refresh", "--all", "--json", timeout=120)
        assert third.returncode == 0, third.stderr
        summary = json.loads(third.stdout)
        assert (summary["total"], summary["counts"], summary["failed"]) == (60, {"ok": 60}, 0)
        # What the killed run stored counts as known content: unchanged now.
        assert (summary["unchanged"], summary["changed"]) == (60, 0)

    after = check_store(storage)
    assert len(after) == len(before) + remaining + 60
    store = Store(storage)
    try:
        for url in urls:
            rid = resource_id(url)
            history = store.history(rid)
            assert len(history) == 2, url  # killed run or the next one, then the --all run
            assert history[0].outcome == "ok" and history[0].has_content, url
        for name, url in zip(PDFS, urls[-len(PDFS):]):
            text = normalised(store.latest(resource_id(url)).text)
            for sentence in pdfs[name][1]:
                assert normalised(sentence) in text, (name, sentence)
    finally:
        store.close()


def test_the_extractor_processes_do_not_outlive_a_killed_refresh(tmp_path):
    with Origin("127.0.0.1", latency=0.2) as origin:
        urls = [origin.route(f"/bulletins/{n}", html(article(n))) for n in range(20)]
        config = offline_config(tmp_path, urls, concurrency=2, per_host_concurrency=2, per_host_delay=0)
        refresh = start_refresh(config, tmp_path)
        try:
            wait_for_fetches(refresh, tmp_path / "snapshots" / DB_NAME, at_least=1)  # so extraction has run
            os.kill(refresh.pid, signal.SIGKILL)
            refresh.wait(timeout=10)
            left = wait_until_gone(refresh.pid, seconds=3)
        finally:
            kill_group(refresh.pid)
        assert left == [], [command_line(pid) for pid in left]


# -- picking sources, and a host that is down ------------------------------------------


def test_refresh_only_fetches_just_the_named_source(origin, tmp_path):
    urls = [origin.route(f"/bulletins/{n}", html(article(n))) for n in range(3)]
    config = write_config(tmp_path, urls)
    wanted = resource_id(urls[1])

    result = CliRunner().invoke(cli, ["--config", str(config), "refresh", "--only", wanted, "--json"])

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["total"], summary["counts"]) == (1, {"ok": 1})
    assert [origin.hits(f"/bulletins/{n}") for n in range(3)] == [0, 1, 0]
    store = Store(tmp_path / "snapshots")
    try:
        assert fetch_count(tmp_path / "snapshots") == 1
        assert marker(1) in store.latest(wanted).text
        assert store.latest(resource_id(urls[0])) is None and store.latest(resource_id(urls[2])) is None
    finally:
        store.close()


def test_a_host_that_is_down_fails_its_sources_and_the_run_still_completes(tmp_path):
    dead = f"http://127.0.0.3:{closed_port('127.0.0.3')}"
    with Origin("127.0.0.2") as alive:
        live_urls = [alive.route(f"/bulletins/{n}", html(article(n))) for n in range(4)]
        dead_urls = [f"{dead}/bulletins/{n}" for n in range(3)]
        config = offline_config(tmp_path, live_urls + dead_urls, retries=2)

        done = run_fetcher(tmp_path, "--config", str(config), "refresh", "--json", timeout=120)

        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stdout)
        assert summary["counts"] == {"connect-refused": 3, "ok": 4}
        assert (summary["total"], summary["failed"]) == (7, 3)
        assert [alive.hits(f"/bulletins/{n}") for n in range(4)] == [1, 1, 1, 1]
    store = Store(tmp_path / "snapshots")
    try:
        for url in dead_urls:
            latest = store.latest(resource_id(url))
            assert (latest.outcome, latest.attempts, latest.has_content) == ("connect-refused", 1, False), url
        for n, url in enumerate(live_urls):
            assert marker(n) in store.latest(resource_id(url)).text, url
    finally:
        store.close()


# -- a source's place in the run goes on when its download is over ----------------------


def held_store(monkeypatch, module: str, name: str, origin: Origin, paths: list[str], upto: int) -> list[int]:
    """Replace `module.name` (a store function, run on the store's thread) by one
    that holds its first call for a second (or until the origin has answered
    `upto` requests for `paths` in all), then stores. The list it returns gets
    how many requests for `paths` the origin had answered when the hold ended."""
    target = importlib.import_module(module)
    real = getattr(target, name)
    seen_then: list[int] = []

    def seen() -> int:
        return sum(origin.hits(path) for path in paths)

    def held(*args, **kwargs):
        if not seen_then:
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline and seen() < upto:
                time.sleep(0.01)
            seen_then.append(seen())
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, held)
    return seen_then


def test_the_next_source_is_fetched_while_one_is_stored_and_as_many_again_at_most(tmp_path, monkeypatch):
    """One place in the run (concurrency = 1), the first store held up for a second.
    A source gives its place to the next one once its download is over, and as many
    sources as there are places may be past their download at once (here one): of
    three, two are fetched while the first waits to be stored, not the third. The
    same for pages with new content (their bodies held meanwhile) and for checks."""
    with Origin() as origin:
        paths = [f"/bulletins/{n}" for n in range(3)]
        urls = [origin.route(path, conditional(origin, article(n), etag=f'"v{n}"')) for n, path in enumerate(paths)]
        config = load_config(write_config(tmp_path, urls, concurrency=1, per_host_concurrency=1))
        store = Store(config.storage_dir)
        try:
            night1 = held_store(monkeypatch, "fetcher.run.pipeline", "store_result", origin, paths, upto=3)
            summary = asyncio.run(refresh_in_process(config, store))
            assert summary.changed == 3
            assert night1 == [2]  # the first page and the next one, not the third

            night2 = held_store(monkeypatch, "fetcher.run.batching", "store_checks", origin, paths, upto=6)
            summary = asyncio.run(refresh_in_process(config, store))
            assert (summary.changed, summary.unchanged, summary.failed) == (0, 3, 0)
            assert night2 == [3 + 2]  # the first check and the next one, not the third
            conditional_requests = [seen for seen in origin.requests if seen.headers.get("If-None-Match")]
            assert sorted(seen.path for seen in conditional_requests) == paths
            assert fetch_count(config.storage_dir) == 6
        finally:
            store.close()
