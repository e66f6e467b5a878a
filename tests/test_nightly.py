"""Nightly operation: which sources a run fetches (due dates, failure backoff,
--all, --only), health states and transitions, conditional requests that cost
neither bandwidth nor extraction, the scheduler, the run lock, clean shutdown on
SIGTERM, run records, and JSON logs. Time is a FakeClock wherever the code lets
it be injected; subprocesses are real `fetcher` commands on loopback origins."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo
from pathlib import Path

import pytest
from apscheduler.triggers.cron import CronTrigger
from click.testing import CliRunner

from fetcher.cli.main import cli
from fetcher.core.config import Config, load_config
from fetcher.extract.extractor import Extractor
from fetcher.core.health import classify as state
from fetcher.store.lock import Busy, RunLock
from fetcher.core.models import RunSummary
from fetcher.run.refresh import run_once
from fetcher.core import cron as core_cron
from fetcher.run.schedule import Nightly, cron_trigger, next_fire
from fetcher.core.sources import resource_id
from fetcher.store.sqlite import DB_NAME, Store
from tests.conftest import FakeClock, fetch_count, fetcher_command, run_fetcher, write_config
from tests.origin import SOFT_404_PROBE, Origin, conditional, html

UTC = timezone.utc


def page(name: str, version: int = 1) -> str:
    """A small article whose text names the page and its version."""
    return (
        f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{name} v{version}</title></head>"
        f"<body><main><article><h1>Notice {name}</h1>"
        f"<p>This is version {version} of the notice called {name}. The committee reviewed the proposal in detail "
        f"and agreed to publish the minutes, with the figures, for everyone to read before the next meeting.</p>"
        f"<p>Comments are welcome until the end of the month; the decision follows at the next session.</p>"
        f"</article></main></body></html>"
    )


def marker(name: str, version: int = 1) -> str:
    return f"This is version {version} of the notice called {name}."


def source_entries(entries: list[tuple[str, str | None]]) -> str:
    """[[sources]] tables for write_config's `text`, each with an optional refresh_every."""
    lines = []
    for url, every in entries:
        lines += ["", "[[sources]]", f"url = {json.dumps(url)}"]
        if every:
            lines.append(f"refresh_every = {json.dumps(every)}")
    return "\n".join(lines) + "\n"


# -- in-process runs on a fake clock ---------------------------------------------------


@dataclass
class Night:
    """A config, a store and a fake clock: run_once as the CLI calls it, time injected."""

    config: Config
    store: Store
    clock: FakeClock
    origin: Origin
    extractions: list[str] = field(default_factory=list)

    def run(self, everything: bool = False) -> tuple[RunSummary, set[str]]:
        """One run (everything: --all); returns its summary and the page paths the origin was asked for
        during it (robots.txt, asked once a run before the first page, and the soft-404 probe are left out)."""
        before = len(self.origin.requests)
        summary = asyncio.run(
            run_once(
                self.config, self.store, list(self.config.sources), trigger="refresh", everything=everything, wall_clock=self.clock.wall,
                make_pipeline=lambda: self.clock.pipeline(self.config, self.store),
            )
        )
        return summary, {
            seen.path for seen in self.origin.requests[before:]
            if seen.path != "/robots.txt" and not SOFT_404_PROBE.fullmatch(seen.path)
        }

    def at(self, day: int, hour: int, minute: int = 0) -> None:
        """Move the clock forward to `day` days after the start date, at hour:minute UTC."""
        target = datetime.combine(self.clock.start.date(), datetime.min.time(), UTC) + timedelta(
            days=day, hours=hour, minutes=minute
        )
        delta = (target - self.clock.wall()).total_seconds()
        assert delta >= 0, f"the clock cannot go back to {target}"
        self.clock.advance(seconds=delta)

    def health(self, url: str):
        return self.store.health(resource_id(url))

    def state(self, url: str) -> str:
        return state(self.health(url), self.config.refresh)


@pytest.fixture
def night(tmp_path: Path, origin: Origin, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """night(urls or (url, refresh_every) pairs, start=...) -> Night; extractions counted."""
    made: list[Night] = []
    real_extract = Extractor.extract

    async def counted(self, body, content_type, url):
        made[-1].extractions.append(url)
        return await real_extract(self, body, content_type, url)

    monkeypatch.setattr(Extractor, "extract", counted)

    def make(sources: list, start: datetime = datetime(2026, 11, 23, 3, 0, tzinfo=UTC), **fetch) -> Night:
        entries = [item if isinstance(item, tuple) else (item, None) for item in sources]
        directory = tmp_path / f"night-{len(made)}"
        directory.mkdir()
        config = load_config(write_config(directory, text=source_entries(entries), retries=0, **fetch))
        assert not config.archive.enabled
        made.append(Night(config, Store(config.storage_dir), FakeClock(start), origin))
        return made[-1]

    yield make
    for each in made:
        each.store.close()


def test_sources_are_due_by_their_own_interval_and_a_run_a_little_early_still_counts(night, origin):
    daily = origin.route("/daily", html(page("daily")))
    weekly = origin.route("/weekly", html(page("weekly")))
    ten_hours = origin.route("/ten-hours", html(page("ten-hours")))
    n = night([daily, (weekly, "7d"), (ten_hours, "10h")], start=datetime(2026, 11, 23, 3, 5, tzinfo=UTC))
    # Early slack = min(2 h, 10% of the interval): 2 h for a day or a week, 1 h for 10 hours.
    timeline = [
        ((0, 3, 5), {"/daily", "/weekly", "/ten-hours"}),
        ((0, 12, 4), set()),  # 10 h - 1 h - 1 min after: not yet
        ((0, 12, 5), {"/ten-hours"}),  # 10 h - 1 h after: due
        ((1, 1, 4), {"/ten-hours"}),  # the daily one was checked 21 h 59 min ago: 1 min short
        ((1, 3, 0), {"/daily"}),  # 03:00 after yesterday's 03:05: due
        ((6, 14, 0), {"/daily", "/ten-hours"}),  # the weekly one is 13 h early: inside 10%, outside 2 h
        ((7, 1, 4), {"/ten-hours"}),  # the weekly one: 7 d - 2 h - 1 min
        ((7, 3, 0), {"/weekly"}),  # the weekly one, 5 min early
    ]
    for (day, hour, minute), expected in timeline:
        n.at(day, hour, minute)
        summary, fetched = n.run()
        when = f"day {day} {hour:02}:{minute:02}"
        assert fetched == expected, when
        assert (summary.total, summary.not_due) == (len(expected), 3 - len(expected)), when
        assert summary.counts == ({"ok": len(expected)} if expected else {}), when
    assert [origin.hits(path) for path in ("/daily", "/weekly", "/ten-hours")] == [3, 2, 5]


def test_a_failing_source_is_rechecked_after_one_then_three_then_seven_days(night, origin):
    steady = origin.route("/steady", html(page("steady")))
    flaky = origin.route("/flaky", html(page("flaky")))
    n = night([steady, flaky])
    gone = html("<html><body><h1>Not found</h1></body></html>", status=404)

    summary, fetched = n.run()  # day 0: both fine
    assert fetched == {"/steady", "/flaky"} and (summary.newly_failing, summary.recovered) == (0, 0)
    assert n.state(flaky) == "ok"

    origin.route("/flaky", gone)
    checks, states, summaries = {}, {}, {}
    for day in range(1, 28):
        n.at(day, 3)
        summary, fetched = n.run()
        assert "/steady" in fetched, day  # the healthy one, every night
        assert summary.total + summary.not_due == 2, day
        if "/flaky" in fetched:
            checks[day] = n.health(flaky).failures_in_a_row
            states[day] = n.state(flaky)
            summaries[day] = (summary.failed, summary.newly_failing, summary.recovered)
        if day == 19:
            origin.route("/flaky", html(page("flaky", 2)))  # back, after the day-19 check

    # Rechecked 1 d after the 1st failure, 3 d after the 2nd, 7 d after the 3rd and later;
    # once it answers again (day 26), every night.
    assert sorted(checks) == [1, 2, 5, 12, 19, 26, 27]
    assert [checks[day] for day in sorted(checks)] == [1, 2, 3, 4, 5, 0, 0]
    # One bad night is only failing; dead after 3 failures in a row spanning 3+ days; a success resets.
    assert [states[day] for day in sorted(checks)] == ["failing", "failing", "dead", "dead", "dead", "ok", "ok"]
    # (failed, newly failing, recovered): newly failing once (ok -> failing), recovered once.
    assert [summaries[day] for day in sorted(checks)] == [
        (1, 1, 0), (1, 0, 0), (1, 0, 0), (1, 0, 0), (1, 0, 0), (0, 0, 1), (0, 0, 0)
    ]
    health = n.health(flaky)
    assert (health.failing_since, health.last_ok) == (None, n.clock.wall())
    assert marker("flaky", 2) in n.store.latest(resource_id(flaky)).text
    assert origin.hits("/flaky") == 1 + len(checks)


def test_dead_takes_three_failures_in_a_row_spanning_three_days(night, origin):
    gone = html("<html><body><h1>Gone</h1></body></html>", status=410)
    url = origin.route("/gone", html(page("gone")))
    n = night([url])
    n.run()
    origin.route("/gone", gone)
    seen = []
    for day in range(1, 5):  # --all: checked every night, whatever the backoff
        n.at(day, 3)
        summary, fetched = n.run(everything=True)
        assert fetched == {"/gone"} and summary.counts == {"http-410": 1}
        seen.append((n.health(url).failures_in_a_row, n.state(url), summary.newly_failing))
    # Three failures within two days are not enough: the fourth, three days after the first, is.
    assert seen == [(1, "failing", 1), (2, "failing", 0), (3, "failing", 0), (4, "dead", 0)]
    # Nor are many failures within one day.
    down = origin.route("/down-today", gone)
    quick = night([down], start=datetime(2026, 11, 23, 1, 0, tzinfo=UTC))
    for hour in range(1, 6):
        quick.at(0, hour)
        quick.run(everything=True)
    assert (quick.health(down).failures_in_a_row, quick.state(down)) == (5, "failing")


# -- conditional requests -----------------------------------------------------------------

ETAG = '"v1-5f3a"'
LAST_MODIFIED = "Sun, 22 Nov 2026 10:00:00 GMT"


def contents_rows(store: Store) -> int:
    with closing(sqlite3.connect(store.directory / DB_NAME)) as db:
        return db.execute("SELECT COUNT(*) FROM contents").fetchone()[0]


def body_files(store: Store) -> set[Path]:
    return set(store.bodies.rglob("*.gz"))


def request_headers(origin: Origin, path: str) -> list[dict[str, str]]:
    """The headers of each request for `path`, names lower-cased."""
    return [{k.lower(): v for k, v in seen.headers.items()} for seen in origin.requests if seen.path == path]


def test_a_page_that_has_not_changed_costs_a_304_and_no_extraction(night, origin):
    pages = {
        "/etag": conditional(origin, page("etag"), etag=ETAG),
        "/modified": conditional(origin, page("modified"), last_modified=LAST_MODIFIED),
        "/both": conditional(origin, page("both"), etag='W/"both-1"', last_modified=LAST_MODIFIED),
    }
    urls = {path: origin.route(path, route) for path, route in pages.items()}
    n = night(list(urls.values()))

    first, _ = n.run()
    assert (first.counts, first.changed) == ({"ok": 3}, 3)
    full_pages = sum(len(page(path.strip("/")).encode()) for path in pages)
    assert origin.bytes_sent == full_pages
    assert len(n.extractions) == 3
    before = {path: n.store.latest(resource_id(url)) for path, url in urls.items()}
    rows, files = contents_rows(n.store), body_files(n.store)
    assert rows == 3 and len(files) == 3
    assert (n.health(urls["/etag"]).etag, n.health(urls["/modified"]).last_modified) == (ETAG, LAST_MODIFIED)

    n.at(1, 3)
    second, fetched = n.run()

    assert fetched == set(pages)
    assert request_headers(origin, "/etag")[1].get("if-none-match") == ETAG
    assert request_headers(origin, "/modified")[1].get("if-modified-since") == LAST_MODIFIED
    both = request_headers(origin, "/both")[1]
    assert (both.get("if-none-match"), both.get("if-modified-since")) == ('W/"both-1"', LAST_MODIFIED)
    assert all("if-none-match" not in h and "if-modified-since" not in h
               for path in pages for h in request_headers(origin, path)[:1])  # nothing to validate the first time

    assert origin.bytes_sent == full_pages  # not one body byte the second night
    assert len(n.extractions) == 3
    assert second.counts == {"not-modified": 3}
    assert (second.changed, second.unchanged, second.failed) == (0, 3, 0)
    for path, url in urls.items():
        latest = n.store.latest(resource_id(url))
        assert latest.fetch_id != before[path].fetch_id
        assert (latest.outcome, latest.http_status, latest.changed, latest.has_content) == ("not-modified", 304, False, True)
        assert (latest.sha256, latest.text) == (before[path].sha256, before[path].text)
        assert marker(path.strip("/")) in latest.text
        assert [row.outcome for row in n.store.history(resource_id(url))] == ["not-modified", "ok"]
        assert n.state(url) == "ok"
    assert (contents_rows(n.store), body_files(n.store)) == (rows, files)

    # --all the same night: still validated, still nothing downloaded.
    third, _ = n.run(everything=True)
    assert third.counts == {"not-modified": 3} and origin.bytes_sent == full_pages and len(n.extractions) == 3


def test_the_same_body_again_is_unchanged_without_extraction_and_a_new_one_is_extracted(night, origin):
    stubborn = origin.route("/stubborn", conditional(origin, page("stubborn"), etag='"s1"', honour=False))
    changing = origin.route("/changing", conditional(origin, page("changing"), etag='"c1"'))
    n = night([stubborn, changing])
    n.run()
    assert len(n.extractions) == 2
    first = {url: n.store.latest(resource_id(url)) for url in (stubborn, changing)}

    origin.route("/changing", conditional(origin, page("changing", 2), etag='"c2"'))
    n.at(1, 3)
    summary, _ = n.run()

    assert request_headers(origin, "/stubborn")[1].get("if-none-match") == '"s1"'  # asked, but ignored
    assert request_headers(origin, "/changing")[1].get("if-none-match") == '"c1"'
    assert summary.counts == {"ok": 2}
    assert (summary.changed, summary.unchanged) == (1, 1)
    assert n.extractions[2:] == [changing]  # the same body again was not extracted
    same = n.store.latest(resource_id(stubborn))
    assert (same.outcome, same.http_status, same.changed) == ("ok", 200, False)
    assert (same.sha256, same.text) == (first[stubborn].sha256, first[stubborn].text)
    new = n.store.latest(resource_id(changing))
    assert (new.outcome, new.changed) == ("ok", True)
    assert new.sha256 != first[changing].sha256
    assert marker("changing", 2) in new.text and marker("changing", 1) not in new.text
    assert contents_rows(n.store) == 3

    # The next night validates against the new version, and gets a 304.
    n.at(2, 3)
    summary, _ = n.run()
    assert request_headers(origin, "/changing")[2].get("if-none-match") == '"c2"'
    assert summary.counts == {"ok": 1, "not-modified": 1}
    assert len(n.extractions) == 3
    assert n.store.latest(resource_id(changing)).sha256 == new.sha256


# -- the scheduler ----------------------------------------------------------------------


def test_the_scheduler_fires_on_its_cron_and_never_runs_two_jobs_at_once():
    spans: list[list[float]] = []
    running = Counter()

    async def job() -> None:
        span = [time.monotonic(), None]
        spans.append(span)
        running["now"] += 1
        running["peak"] = max(running["peak"], running["now"])
        try:
            await asyncio.sleep(1.3)  # longer than the one-second interval of the cron
        finally:
            running["now"] -= 1
            span[1] = time.monotonic()

    async def main() -> Nightly:
        nightly = Nightly(CronTrigger(second="*"), job, grace=2)
        serving = asyncio.create_task(nightly.serve())
        await asyncio.sleep(3.5)
        nightly.stop()
        await asyncio.wait_for(serving, timeout=5)
        return nightly

    nightly = asyncio.run(main())

    assert len(spans) >= 2, spans
    assert nightly.runs_started == len(spans)
    assert running["peak"] == 1
    assert all(end is not None for _, end in spans)  # the run in flight at stop() had its grace to finish
    for (_, earlier_end), (later_start, _) in zip(spans, spans[1:]):
        assert later_start >= earlier_end


def test_run_now_starts_at_once_and_stop_abandons_a_run_after_the_grace():
    started, cancelled = [], []

    async def job() -> None:
        started.append(time.monotonic())
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(time.monotonic())
            raise

    async def main() -> tuple[float, float]:
        # 03:00 every day: nothing would fire during this test but the run-now.
        nightly = Nightly(cron_trigger("0 3 * * *", "UTC"), job, grace=0.5)
        begun = time.monotonic()
        serving = asyncio.create_task(nightly.serve(run_now=True))
        await asyncio.sleep(0.3)
        stopped = time.monotonic()
        nightly.stop()
        await asyncio.wait_for(serving, timeout=5)  # serve() returns, though the job would take 30 s
        return begun, stopped

    begun, stopped = asyncio.run(main())
    assert len(started) == 1 and started[0] - begun < 1  # not at 03:00
    assert len(cancelled) == 1 and 0.5 <= cancelled[0] - stopped < 1.5


@pytest.mark.parametrize(
    ("cron", "zone", "now", "expected"),
    [
        ("0 3 * * *", "Europe/Paris", datetime(2026, 11, 23, 10, 0, tzinfo=UTC), datetime(2026, 11, 24, 2, 0, tzinfo=UTC)),
        ("0 3 * * *", "Europe/Paris", datetime(2026, 11, 23, 1, 30, tzinfo=UTC), datetime(2026, 11, 23, 2, 0, tzinfo=UTC)),
        ("0 3 * * *", "Europe/Paris", datetime(2026, 7, 1, 10, 0, tzinfo=UTC), datetime(2026, 7, 2, 1, 0, tzinfo=UTC)),
        ("0 3 * * *", "UTC", datetime(2026, 11, 23, 3, 0, 1, tzinfo=UTC), datetime(2026, 11, 24, 3, 0, tzinfo=UTC)),
        ("30 4 1 * *", "America/New_York", datetime(2026, 11, 23, 12, 0, tzinfo=UTC), datetime(2026, 12, 1, 9, 30, tzinfo=UTC)),
    ],
)
def test_the_next_scheduled_run_is_computed_in_the_configured_time_zone(cron, zone, now, expected):
    assert next_fire(cron_trigger(cron, zone), now) == expected
    assert core_cron.next_fire(cron, ZoneInfo(zone), now) == expected  # what `status` shows, without APScheduler


@pytest.mark.parametrize(
    ("cron", "zone", "now", "expected"),
    [  # Paris: 02:00 CET -> 03:00 CEST on 2026-03-29; 03:00 CEST -> 02:00 CET on 2026-10-25
        ("30 2 * * *", "Europe/Paris", datetime(2026, 3, 28, 12, 0, tzinfo=UTC), datetime(2026, 3, 29, 1, 30, tzinfo=UTC)),
        ("30 2 * * *", "Europe/Paris", datetime(2026, 10, 24, 12, 0, tzinfo=UTC), datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),
        ("30 2 * * *", "Europe/Paris", datetime(2026, 10, 25, 0, 40, tzinfo=UTC), datetime(2026, 10, 25, 1, 30, tzinfo=UTC)),
        ("*/20 * * * *", "Europe/Paris", datetime(2026, 10, 25, 0, 50, tzinfo=UTC), datetime(2026, 10, 25, 1, 0, tzinfo=UTC)),
        ("0 3 * * *", "America/New_York", datetime(2026, 3, 7, 12, 0, tzinfo=UTC), datetime(2026, 3, 8, 7, 0, tzinfo=UTC)),
    ],
)
def test_the_next_run_across_a_clock_change_is_the_one_apscheduler_fires(cron, zone, now, expected):
    """A skipped wall time is read with the offset before the change (02:30 is
    03:30 CEST), a repeated one at its second pass if the first is over.
    (Compared in UTC: Python never finds a folded time equal across zones.)"""
    assert in_utc(next_fire(cron_trigger(cron, zone), now)) == expected
    assert in_utc(core_cron.next_fire(cron, ZoneInfo(zone), now)) == expected


def test_status_computes_the_next_run_as_the_scheduler_does_on_every_day_of_a_year():
    """Samples every 5 hours over a year, clock changes included, in zones either
    side of UTC. (Not midnight: where a day's span crosses a clock change,
    APScheduler 3 skips the next midnight run; fetcher's next run is the real one.)"""
    crons = ["30 2 * * *", "0 3 * * 1", "15 4 1 * *", "*/7 1-3 * * *"]
    start = datetime(2026, 1, 1, 0, 17, 31, tzinfo=UTC)
    for zone, cron in [(z, c) for z in ("Europe/Paris", "America/New_York", "Australia/Sydney") for c in crons]:
        for hours in range(0, 365 * 24, 5):
            now = start + timedelta(hours=hours)
            ours = in_utc(core_cron.next_fire(cron, ZoneInfo(zone), now))
            assert ours == in_utc(next_fire(cron_trigger(cron, zone), now)), (cron, zone, now)


def in_utc(moment: datetime | None) -> datetime | None:
    return moment and moment.astimezone(UTC)


def test_a_weekly_cron_runs_on_the_weekday_crontab_means():
    monday_noon = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    assert monday_noon.strftime("%A") == "Monday"
    expected = {
        "30 4 * * 1": datetime(2026, 11, 30, 4, 30, tzinfo=UTC),  # next Monday
        "30 4 * * 0": datetime(2026, 11, 29, 4, 30, tzinfo=UTC),  # Sunday
        "30 4 * * 1-5": datetime(2026, 11, 24, 4, 30, tzinfo=UTC),  # weekdays: Tuesday is next
        "30 4 * * 6": datetime(2026, 11, 28, 4, 30, tzinfo=UTC),  # Saturday
    }
    assert {cron: next_fire(cron_trigger(cron, "UTC"), monday_noon) for cron in expected} == expected


def test_an_impossible_cron_is_a_config_error(tmp_path):
    config = write_config(tmp_path, text='[schedule]\ncron = "61 3 * * *"\n')
    result = CliRunner().invoke(cli, ["--config", str(config), "status"])
    assert result.exit_code == 2, (result.exit_code, repr(result.exception))
    assert result.stderr.startswith("error: ") and "cron" in result.stderr


# -- one run at a time ------------------------------------------------------------------


def test_a_run_while_another_holds_the_lock_raises_busy_and_records_nothing(night, origin):
    url = origin.route("/notice", html(page("notice")))
    n = night([url])
    holder = RunLock(n.config.storage_dir)
    holder.acquire(datetime(2026, 11, 23, 2, 59, tzinfo=UTC), "schedule")
    try:
        with pytest.raises(Busy) as busy:
            n.run()
    finally:
        holder.release()
    message = str(busy.value)
    assert str(n.config.storage_dir / "refresh.lock") in message
    assert f"pid {os.getpid()} (schedule)" in message and "2026-11-23T02:59:00Z" in message
    assert (origin.requests, n.store.runs(), fetch_count(n.store.directory)) == ([], [], 0)

    summary, fetched = n.run()  # once released, the next run goes ahead
    assert fetched == {"/notice"} and summary.counts == {"ok": 1}
    assert [(run.status, run.trigger) for run in n.store.runs()] == [("completed", "refresh")]


# -- subprocesses ----------------------------------------------------------------------------


def offline_config(directory: Path, urls: list[str], text: str = "", **fetch) -> Path:
    """write_config, checked: a `fetcher` subprocess is outside the in-process loopback
    guard, so its config must not enable the archive fallback."""
    path = write_config(directory, urls, text=text, **fetch)
    assert not load_config(path).archive.enabled
    return path


@dataclass
class Started:
    process: subprocess.Popen
    stdout: Path
    stderr: Path

    def output(self) -> tuple[str, str]:
        return self.stdout.read_text(encoding="utf-8"), self.stderr.read_text(encoding="utf-8")


@contextmanager
def started(directory: Path, *args: str) -> Iterator[Started]:
    """`fetcher ARGS` in its own session (so it and its extractor processes form one
    group), output to files; the whole group is killed on the way out, whatever happened."""
    name = f"{args[-1].strip('-')}-{time.monotonic_ns()}"
    out, err = directory / f"{name}.out", directory / f"{name}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            fetcher_command() + list(args), cwd=directory, start_new_session=True, stdout=stdout, stderr=stderr
        )
    try:
        yield Started(process, out, err)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=10)


def stored_fetches(db_file: Path) -> int:
    """Fetches in a store another process may be writing (0 until it can be read)."""
    try:
        with closing(sqlite3.connect(f"{db_file.as_uri()}?mode=ro", uri=True, timeout=0.2)) as db:
            return db.execute("SELECT COUNT(*) FROM fetches").fetchone()[0]
    except sqlite3.DatabaseError:
        return 0


def wait_for_fetches(run: Started, db_file: Path, at_least: int, seconds: float = 30) -> int:
    deadline = time.monotonic() + seconds
    while (count := stored_fetches(db_file)) < at_least:
        assert run.process.poll() is None, f"the process ended early: {run.output()}"
        assert time.monotonic() < deadline, f"fewer than {at_least} fetches stored after {seconds}s"
        time.sleep(0.02)
    return count


def sound_store(storage: Path) -> list[tuple[str, str]]:
    """The SQLite file passes its integrity and foreign key checks; returns (resource_id, outcome) of each fetch."""
    with closing(sqlite3.connect(storage / DB_NAME)) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        return db.execute("SELECT resource_id, outcome FROM fetches ORDER BY id").fetchall()


def slow_site(origin: Origin, count: int) -> list[str]:
    return [origin.route(f"/notices/{n}", html(page(f"notice-{n}"))) for n in range(count)]


def test_a_second_refresh_exits_3_at_once_naming_the_holder_and_the_first_completes(tmp_path):
    with Origin("127.0.0.1", latency=0.3) as origin:
        urls = slow_site(origin, 20)
        config = offline_config(tmp_path, urls, concurrency=1)
        storage = tmp_path / "snapshots"
        with started(tmp_path, "--config", str(config), "refresh", "--json") as first:
            wait_for_fetches(first, storage / DB_NAME, at_least=1)
            began = time.monotonic()
            second = run_fetcher(tmp_path, "--config", str(config), "refresh", timeout=30)
            took = time.monotonic() - began
            assert first.process.poll() is None, "the first run ended before the second tried: nothing was tested"
            origin.latency = 0  # the rest of the first run need not be slow
            first_code = first.process.wait(timeout=60)
            first_out, first_err = first.output()

        assert second.returncode == 3, second.stderr
        assert took < 5
        assert second.stdout == ""
        lines = second.stderr.splitlines()
        assert len(lines) == 1, second.stderr
        assert str(storage / "refresh.lock") in lines[0] and f"pid {first.process.pid} " in lines[0]

        assert first_code == 0, first_err
        summary = json.loads(first_out)
        assert (summary["total"], summary["counts"]) == (20, {"ok": 20})
        # the second run fetched nothing, not even robots.txt (the first: 20 pages, robots.txt, one soft-404 probe)
        assert (len(origin.requests), origin.hits("/robots.txt")) == (20 + 1 + 1, 1)
    assert len(sound_store(storage)) == 20
    store = Store(storage)
    try:
        assert [(run.status, run.pid) for run in store.runs()] == [("completed", first.process.pid)]
    finally:
        store.close()


def test_a_lock_left_by_a_killed_run_does_not_block_the_next_one(tmp_path):
    with Origin("127.0.0.1", latency=0.2) as origin:
        urls = slow_site(origin, 10)
        config = offline_config(tmp_path, urls, concurrency=1)
        storage = tmp_path / "snapshots"
        with started(tmp_path, "--config", str(config), "refresh") as killed:
            wait_for_fetches(killed, storage / DB_NAME, at_least=1)
            killed.process.send_signal(signal.SIGKILL)
            assert killed.process.wait(timeout=10) == -signal.SIGKILL
        left = json.loads((storage / "refresh.lock").read_text())
        assert left["pid"] == killed.process.pid  # the file is still there, with the dead holder in it
        done_before = len(sound_store(storage))

        origin.latency = 0
        began = time.monotonic()
        after = run_fetcher(tmp_path, "--config", str(config), "refresh", "--json")
        assert after.returncode == 0, after.stderr
        assert time.monotonic() - began < 15
        summary = json.loads(after.stdout)
        assert (summary["total"], summary["not_due"]) == (10 - done_before, done_before)
        assert summary["counts"] == {"ok": 10 - done_before}
    assert Counter(rid for rid, _ in sound_store(storage)) == {resource_id(url): 1 for url in urls}


# -- SIGTERM ------------------------------------------------------------------------------


def recorded_runs(directory: Path, config: Path) -> list[dict]:
    done = run_fetcher(directory, "--config", str(config), "runs", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_sigterm_stops_the_scheduler_after_the_grace_and_the_next_run_completes(tmp_path):
    with Origin("127.0.0.1", latency=0.3) as origin:
        urls = slow_site(origin, 20)
        config = offline_config(tmp_path, urls, concurrency=1, text="[schedule]\nshutdown_grace = 1\n")
        storage = tmp_path / "snapshots"
        with started(tmp_path, "--config", str(config), "schedule", "--run-now") as scheduler:
            at_signal = wait_for_fetches(scheduler, storage / DB_NAME, at_least=1)
            sent = time.monotonic()
            scheduler.process.send_signal(signal.SIGTERM)
            code = scheduler.process.wait(timeout=1 + 5)
            took = time.monotonic() - sent
            _, log = scheduler.output()

        assert code == 0, log
        assert took < 1 + 2, took  # within the grace (1 s) and 2 s to wind down
        # No new source starts after the signal; the one in flight finishes (0.1 s: the server's own lag).
        assert not [seen for seen in origin.requests if seen.started > sent + 0.1]
        assert "Traceback" not in log
        fetched = sound_store(storage)
        assert at_signal <= len(fetched) < 20
        [run] = recorded_runs(tmp_path, config)
        assert (run["status"], run["trigger"], run["pid"]) == ("interrupted", "schedule", scheduler.process.pid)
        assert run["finished_at"] is not None and run["summary"]["interrupted"]
        assert run["summary"]["total"] == len(sound_store(storage))  # the counts of what it did
        assert run["summary"]["finished_at"] == run["finished_at"]  # one duration, interrupted or not

        origin.latency = 0
        after = run_fetcher(tmp_path, "--config", str(config), "refresh", "--all", "--json")
        assert after.returncode == 0, after.stderr
        summary = json.loads(after.stdout)
        assert (summary["total"], summary["counts"], summary["failed"]) == (20, {"ok": 20}, 0)
        assert (summary["changed"], summary["unchanged"]) == (20 - len(fetched), len(fetched))
    assert len(sound_store(storage)) == len(fetched) + 20
    assert [(run["status"], run["trigger"]) for run in recorded_runs(tmp_path, config)] == [
        ("completed", "refresh"), ("interrupted", "schedule")
    ]


def test_sigterm_interrupts_a_refresh_with_exit_130_and_leaves_a_sound_store(tmp_path):
    with Origin("127.0.0.1", latency=0.3) as origin:
        urls = slow_site(origin, 20)
        config = offline_config(tmp_path, urls, concurrency=1)
        storage = tmp_path / "snapshots"
        with started(tmp_path, "--config", str(config), "refresh", "--json") as refresh:
            wait_for_fetches(refresh, storage / DB_NAME, at_least=2)
            sent = time.monotonic()
            refresh.process.send_signal(signal.SIGTERM)
            code = refresh.process.wait(timeout=10)
            took = time.monotonic() - sent
            out, err = refresh.output()

    assert code == 130, err
    assert took < 5
    assert out == ""
    assert err.splitlines()[-1].startswith("interrupted: ") and "Traceback" not in err
    fetched = sound_store(storage)
    assert 2 <= len(fetched) < 20 and {outcome for _, outcome in fetched} == {"ok"}
    [run] = recorded_runs(tmp_path, config)
    assert (run["status"], run["trigger"], run["pid"]) == ("interrupted", "refresh", refresh.process.pid)


def test_sigterm_to_the_whole_process_group_records_no_false_failures(tmp_path):
    with Origin("127.0.0.1", latency=0.2) as origin:
        urls = slow_site(origin, 20)
        config = offline_config(tmp_path, urls, concurrency=1, text="[schedule]\nshutdown_grace = 1\n")
        storage = tmp_path / "snapshots"
        with started(tmp_path, "--config", str(config), "schedule", "--run-now") as scheduler:
            wait_for_fetches(scheduler, storage / DB_NAME, at_least=2)
            os.killpg(scheduler.process.pid, signal.SIGTERM)  # as systemd stops a service
            code = scheduler.process.wait(timeout=1 + 5)
            _, log = scheduler.output()

    assert code == 0, log
    [run] = recorded_runs(tmp_path, config)
    assert run["status"] == "interrupted"
    fetched = sound_store(storage)
    assert len(fetched) < 20
    assert Counter(outcome for _, outcome in fetched) == {"ok": len(fetched)}


# -- run records, status and logs ---------------------------------------------------------


@pytest.fixture
def cli_run() -> Iterator:
    """invoke(config, *args) -> click Result (conftest puts the CLI's logger back afterwards)."""

    def invoke(config: Path, *args: str):
        return CliRunner().invoke(cli, ["--config", str(config), *args], env={"COLUMNS": "200"})  # tables unclipped

    yield invoke


def test_runs_and_status_report_what_the_runs_did(tmp_path, origin, cli_run):
    fine = [origin.route(f"/fine/{n}", html(page(f"fine-{n}"))) for n in range(2)]
    broken = origin.route("/broken", html("<html><body><h1>Not found</h1></body></html>", status=404))
    config = write_config(tmp_path, [*fine, broken])

    summaries, times = [], []
    for args in ([], [], ["--only", resource_id(fine[0])], ["--all"]):
        times.append(datetime.now(UTC))
        result = cli_run(config, "refresh", *args, "--json")
        assert result.exit_code == 0, result.output
        summaries.append(json.loads(result.stdout))
    times.append(datetime.now(UTC))
    assert [(s["total"], s["not_due"], s["failed"]) for s in summaries] == [(3, 0, 1), (0, 3, 0), (1, 0, 0), (3, 0, 1)]
    assert [origin.hits(path) for path in ("/fine/0", "/fine/1", "/broken")] == [3, 2, 2]

    result = cli_run(config, "runs", "--json")
    assert result.exit_code == 0, result.output
    runs = json.loads(result.stdout)
    assert [run["id"] for run in runs] == [4, 3, 2, 1]  # newest first
    assert {(run["status"], run["trigger"], run["pid"]) for run in runs} == {("completed", "refresh", os.getpid())}
    assert [run["summary"] for run in reversed(runs)] == summaries
    for run, began, ended in zip(reversed(runs), times, times[1:]):
        started_at, finished_at = datetime.fromisoformat(run["started_at"]), datetime.fromisoformat(run["finished_at"])
        assert began <= started_at <= finished_at <= ended

    result = cli_run(config, "status", "--json")
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    last = status["last_run"]
    assert (last["id"], last["status"], last["trigger"], last["sources"], last["seconds"]) == (
        4, "completed", "refresh", 3, summaries[3]["seconds"]
    )
    assert times[3] <= datetime.fromisoformat(last["started_at"]) <= times[4]
    assert (status["sources"], status["states"], status["due_now"]) == (3, {"failing": 1, "ok": 2}, 0)
    # The soonest is a healthy source checked in the last run: due a day later, less the 2 h of slack.
    next_due = datetime.fromisoformat(status["next_due"])
    assert times[3] + timedelta(hours=22) <= next_due <= times[4] + timedelta(hours=22)
    next_night = (times[4] + timedelta(days=1)).date() if times[4].hour >= 3 else times[4].date()
    assert status["next_scheduled_run"] == f"{next_night:%Y-%m-%d}T03:00:00Z"
    assert status["schedule"] == {"cron": "0 3 * * *", "timezone": "UTC"}
    table = cli_run(config, "status").stdout  # a person reads the same facts as lines
    assert "due now" in table and "3: failing 1 · ok 2" in table


def test_json_logs_are_one_object_a_line_with_the_fields_of_each_source(tmp_path, origin):
    urls = [origin.route("/fine", html(page("fine"))),
            origin.route("/broken", html("<html><body><h1>Not found</h1></body></html>", status=404))]
    config = offline_config(tmp_path, urls)

    done = run_fetcher(tmp_path, "--config", str(config), "--log-format", "json", "refresh")

    assert done.returncode == 0, done.stderr
    entries = [json.loads(line) for line in done.stderr.splitlines()]  # every line is a JSON object
    assert all({"ts", "level", "message"} <= set(entry) for entry in entries)
    assert all(datetime.fromisoformat(entry["ts"].replace("Z", "+00:00")).tzinfo for entry in entries)
    per_source = {entry["resource_id"]: entry for entry in entries if entry.get("event") == "fetched"}
    assert set(per_source) == {resource_id(url) for url in urls}
    fine, broken = (per_source[resource_id(url)] for url in urls)
    assert (fine["url"], fine["outcome"], fine["http_status"], fine["changed"], fine["level"]) == (
        urls[0], "ok", 200, True, "info")
    assert (broken["url"], broken["outcome"], broken["http_status"], broken["changed"]) == (
        urls[1], "http-404", 404, False)
    messages = [entry["message"] for entry in entries]
    assert messages[0] == "run 1 started (refresh): 2 of 2 sources due" and messages[-1] == "run 1 completed"
    assert done.stdout.startswith("2 sources refreshed in ")


def test_json_logs_stay_json_when_a_source_is_a_duplicate(tmp_path, origin):
    urls = [origin.route("/report", html(page("report"))), origin.route("/report/", html(page("report")))]
    config = offline_config(tmp_path, urls)
    done = run_fetcher(tmp_path, "--config", str(config), "--log-format", "json", "refresh")
    assert done.returncode == 0, done.stderr
    for line in done.stderr.splitlines():
        assert isinstance(json.loads(line), dict), line


def test_a_killed_run_is_not_reported_as_running(tmp_path, cli_run):
    with Origin("127.0.0.1", latency=0.2) as origin:
        config = offline_config(tmp_path, slow_site(origin, 10), concurrency=1)
        with started(tmp_path, "--config", str(config), "refresh") as killed:
            wait_for_fetches(killed, tmp_path / "snapshots" / DB_NAME, at_least=1)
            killed.process.send_signal(signal.SIGKILL)
            killed.process.wait(timeout=10)

    table = cli_run(config, "runs")
    assert table.exit_code == 0 and "did not finish" in table.stdout  # the text table knows
    [run] = json.loads(cli_run(config, "runs", "--json").stdout)
    status = json.loads(cli_run(config, "status", "--json").stdout)
    assert run["status"] != "running", run
    assert status["last_run"]["status"] == "did not finish", status["last_run"]
