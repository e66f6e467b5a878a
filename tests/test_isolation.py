"""No source can stop a run: an unexpected exception on one source is stored as
its `internal-error` and the run goes on; only our own machine (a store that
cannot be written) stops a run, loudly, recorded as failed. Archives that answer
nonsense, or that we have given up on, cost nothing more."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import signal
import time

import pytest
from click.testing import CliRunner

from fetcher.cli.main import cli
from fetcher.core.config import load_config
from fetcher.extract.extractor import Extractor
from fetcher.core.health import due_sources
from fetcher.core.sources import resource_id
from fetcher.run.refresh import run_once
from fetcher.store.sqlite import Store
from tests import hostile
from tests.conftest import FakeClock, ScaledClock, assert_sound_store, run_fetcher, write_config
from tests.fake_wayback import FakeWayback
from tests.hostile import PAGE, RawServer
from tests.origin import Origin, html
from tests.test_faults import CASES, SETTINGS
from tests.test_nightly import recorded_runs, started, wait_for_fetches


def article(n: int) -> str:
    return PAGE.decode().replace("An ordinary report", f"Ordinary report {n}")


@pytest.fixture
def poisoned(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """URLs whose extraction raises a bug of ours (as a library raising an
    exception nobody foresaw would)."""
    urls: set[str] = set()
    real = Extractor.extract

    async def extract(self, body, content_type, url):
        if url in urls:
            raise RuntimeError("a bug nobody foresaw")
        return await real(self, body, content_type, url)

    monkeypatch.setattr(Extractor, "extract", extract)
    return urls


def run(config, store, clock: FakeClock, **options):
    return asyncio.run(run_once(config, store, list(config.sources), trigger="refresh", wall_clock=clock.wall,
                                make_pipeline=lambda: clock.pipeline(config, store), **options))


def test_an_exception_on_one_source_is_its_internal_error_and_the_run_goes_on(tmp_path, origin, poisoned, caplog):
    urls = [origin.route(f"/page/{n}", html(article(n))) for n in range(5)]
    poisoned.add(urls[2])
    config = load_config(write_config(tmp_path, urls, retries=0))
    store, clock = Store(config.storage_dir), FakeClock()
    try:
        with caplog.at_level(logging.ERROR, logger="fetcher"):
            summary = run(config, store, clock)
        bad = store.latest(resource_id(urls[2]))
        good = [store.latest(resource_id(url)) for url in urls if url != urls[2]]
        health = store.all_health()
        clock.advance(days=1)
        run(config, store, clock)  # fails again: now three days until the next check
        clock.advance(days=1)
        due = due_sources(list(config.sources), store.all_health(), config.refresh, clock.wall())
    finally:
        store.close()

    assert summary.counts == {"ok": 4, "internal-error": 1} and summary.failed == 1
    assert (bad.outcome, bad.detail) == ("internal-error", "RuntimeError: a bug nobody foresaw")
    assert all(snapshot.outcome == "ok" and "Paragraph 3" in snapshot.text for snapshot in good)
    assert health[resource_id(urls[2])].failures_in_a_row == 1  # it follows the failure backoff
    assert {source.url for source in due} == set(urls) - {urls[2]}  # the failure backoff, as for any failure
    record = next(r for r in caplog.records if r.exc_info)
    assert urls[2] in record.getMessage() and record.exc_info[0] is RuntimeError  # the traceback is logged
    assert_sound_store(config.storage_dir)


def test_a_disk_full_stops_the_run_loudly_recorded_as_failed(tmp_path, origin, monkeypatch):
    urls = [origin.route(f"/page/{n}", html(article(n))) for n in range(3)]
    config_path = write_config(tmp_path, urls, retries=0, concurrency=1)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("fetcher.store.bodies.write_atomically", full)
    result = CliRunner().invoke(cli, ["--config", str(config_path), "refresh"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("error: ") and "No space left on device" in lines[-1]
    assert "Traceback" not in result.output
    monkeypatch.undo()
    [run_record] = recorded_runs(tmp_path, config_path)
    assert run_record["status"] == "failed" and run_record["summary"]["total"] == 0
    assert assert_sound_store(tmp_path / "snapshots") == []  # nothing half-stored


@pytest.fixture
def bad_archive() -> RawServer:
    with RawServer("127.0.0.5") as server:
        yield server


@pytest.mark.parametrize(
    ("answer", "archive_outcome"),
    [
        pytest.param(b'[["urlkey","timestamp","original","mimetype","statuscode"],["k",20240101000000,"u","text/html","200"]]',
                     "ok", id="timestamp-as-a-number"),  # read leniently: the capture is replayed
        pytest.param(b'[["urlkey","timestamp","original","mimetype","statuscode"],["k","20241301000000","u","text/html","200"]]',
                     "archive-miss", id="month-13"),
        pytest.param(b'[["urlkey","timestamp","original","mimetype","statuscode"],["k","20240101000000",7,"text/html","200"]]',
                     "archive-miss", id="original-not-a-string"),
        pytest.param(b'[["urlkey","timestamp"],"not a row"]', "archive-error", id="row-not-a-list"),
        pytest.param(b'{"timestamp": "20240101000000"}\n[1, 2]\n', "archive-error", id="json-line-not-an-object"),
        pytest.param(b'[[1, 2], ["a", "b"]]', "archive-error", id="header-not-names"),
        pytest.param(b"<html>Service Unavailable</html>", "archive-error", id="an-error-page"),
        pytest.param(b"\xff\xfe\x00garbage", "archive-error", id="not-utf-8"),
    ],
)
def test_a_cdx_answer_of_the_wrong_shape_is_an_archive_failure_not_a_crash(tmp_path, bad_archive, answer,
                                                                           archive_outcome):
    bad_archive.route("/cdx", hostile.answer(200, answer, "application/json"))
    bad_archive.route("/web/20240101000000id_/u", hostile.answer(200, PAGE))
    dead = bad_archive.route("/dead", hostile.answer(404, b"gone"))
    archive = {"cdx_url": bad_archive.url("/cdx"), "replay_url": bad_archive.url("/web"), "requests_per_minute": 600}
    config = write_config(tmp_path, [dead], archive=archive, retries=0)
    done = run_fetcher(tmp_path, "--config", str(config), "refresh", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["counts"] == {"http-404": 1}
    assert "Traceback" not in done.stderr
    store = Store(tmp_path / "snapshots")
    try:
        latest = store.latest(resource_id(dead))
    finally:
        store.close()
    assert (latest.live_outcome or latest.outcome, latest.archive_outcome) == ("http-404", archive_outcome)


def test_once_an_archive_is_left_alone_no_later_source_waits_for_it(tmp_path, origin):
    """One request a minute to an archive that is down: the first sources pay the
    pacing until it is left alone (three failures in a row); the later ones pay
    nothing — before, each waited its minute for a turn it would not use. Time
    runs 60 times faster than real (a minute is 1 s), so waits are real waits."""
    clock = ScaledClock(speed=60)
    with FakeWayback("127.0.0.3", clock=clock.monotonic) as wayback:
        wayback.fail("/cdx/", 503, times=1000)
        archive = {**wayback.settings, "requests_per_minute": 1}
        urls = [origin.route(f"/dead/{n}", html("gone", status=404)) for n in range(30)]
        config = load_config(write_config(tmp_path, urls, archive=archive, retries=0, concurrency=4))
        store = Store(config.storage_dir)
        try:
            began = clock.monotonic()
            summary = run(config, store, clock)
            took = clock.monotonic() - began
            last = store.latest(resource_id(urls[-1]))
        finally:
            store.close()
    assert summary.counts == {"http-404": 30}
    assert wayback.count("cdx") == 3  # three failures in a row, then it is left alone
    assert took < 4 * 63, took  # three paced requests; before: about a minute for each of the 30 sources
    assert last.archive_outcome == "archive-error" and "not asked again for 1 hour" in last.detail


def test_one_refresh_over_every_hostile_source_and_ordinary_pages(tmp_path):
    """The whole matrix in one run of the real command: exit 0, every source has
    a row, and the ordinary pages among them are stored intact."""
    with RawServer("127.0.0.1") as server, Origin("127.0.0.2") as http:
        hostile_urls = [case.make(server, http) for case in CASES]
        ordinary = [http.route(f"/ordinary/{n}", html(article(n))) for n in range(5)]
        urls = [url for pair in zip(hostile_urls, ordinary * 10) for url in pair][: len(hostile_urls) + 5]
        urls += [url for url in hostile_urls + ordinary if url not in urls]
        config = write_config(tmp_path, urls, **SETTINGS, concurrency=8)
        began = time.monotonic()
        done = run_fetcher(tmp_path, "--config", str(config), "refresh", "--json", timeout=120)
        took = time.monotonic() - began
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    summary = json.loads(done.stdout)
    assert summary["total"] == len(urls) and not summary["interrupted"]
    rows = assert_sound_store(tmp_path / "snapshots")
    assert {rid for rid, _ in rows} == {resource_id(url) for url in urls}
    outcomes = dict(rows)
    for case, url in zip(CASES, hostile_urls):
        assert outcomes[resource_id(url)] == case.outcome, case.name
    store = Store(tmp_path / "snapshots")
    try:
        for n, url in enumerate(ordinary):
            snapshot = store.latest(resource_id(url))
            assert snapshot.outcome == "ok" and snapshot.title == f"Ordinary report {n}" and "Paragraph 11" in snapshot.text
    finally:
        store.close()
    assert took < 60, took


def test_sigterm_starts_no_new_source_and_records_the_counts(tmp_path):
    with Origin("127.0.0.1", latency=0.3) as origin:
        urls = [origin.route(f"/slow/{n}", html(article(n))) for n in range(20)]
        config = write_config(tmp_path, urls, concurrency=2, text="[schedule]\nshutdown_grace = 5\n")
        storage = tmp_path / "snapshots"
        with started(tmp_path, "--config", str(config), "refresh") as refresh:
            wait_for_fetches(refresh, storage / "fetcher.sqlite3", at_least=2)
            sent = time.monotonic()
            refresh.process.send_signal(signal.SIGTERM)
            code = refresh.process.wait(timeout=5 + 2)
            took = time.monotonic() - sent
            _, err = refresh.output()
        late = [seen for seen in origin.requests if seen.started > sent + 0.1]
    assert code == 130 and "Traceback" not in err, err
    assert took < 5 + 2, took
    assert not late, late  # no request started after the signal
    stored = assert_sound_store(storage)
    assert 2 <= len(stored) < 20
    [record] = recorded_runs(tmp_path, config)
    assert record["status"] == "interrupted"
    assert record["summary"]["total"] == len(stored) and record["summary"]["counts"] == {"ok": len(stored)}
    assert f"after {len(stored)} sources" in err.splitlines()[-1]
