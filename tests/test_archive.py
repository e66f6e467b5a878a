"""Archive fallback through a faithful fake of the Wayback Machine: the snapshot
comes from the capture's raw bytes, never the archive's page; lookups are
cached and paced; 429s pause the client."""

from __future__ import annotations

import asyncio
import json
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from fetcher.net.archive import parse_cdx
from fetcher.cli.main import cli
from fetcher.core.config import load_config
from fetcher.core.models import Snapshot
from fetcher.run.pipeline import FetchOptions
from fetcher.views.preview import make_preview, render_text
from fetcher.core.sources import make_source
from fetcher.store.sqlite import Store
from tests.conftest import FakeClock, ScaledClock, corpus_pdfs, fetch_count, normalised, write_config
from tests.fake_wayback import FakeWayback
from tests.origin import Origin, html

ARTICLE = (
    "<html><body><article><h1>Open models report</h1><p>{}</p></article></body></html>"
)
TEXT = "The agency recommends monitoring open-weight models rather than restricting them now. " * 6


def article(text: str = TEXT) -> bytes:
    return ARTICLE.format(text).encode()


class World:
    """An origin, a fake archive, a store and a fake clock, wired together."""

    def __init__(self, tmp_path: Path, origin: Origin, wayback: FakeWayback, clock: FakeClock, **archive):
        self.origin, self.wayback, self.clock, self.tmp_path = origin, wayback, clock, tmp_path
        self.archive = {**wayback.settings, "requests_per_minute": 600, **archive}
        self.config = load_config(write_config(tmp_path, archive=self.archive, retries=1))
        self.store = Store(self.config.storage_dir)

    def fetch(self, url: str, **options) -> object:
        return asyncio.run(self._fetch(url, FetchOptions(**options)))

    async def _fetch(self, url, options):
        async with self.clock.pipeline(self.config, self.store) as pipeline:
            return await pipeline.fetch(make_source(url), options)

    def refresh(self, urls: list[str], **options):
        async def go():
            async with self.clock.pipeline(self.config, self.store) as pipeline:
                return await pipeline.refresh([make_source(u) for u in urls], options=FetchOptions(**options))

        return asyncio.run(go())


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def wayback(clock):
    with FakeWayback("127.0.0.1", clock=clock.monotonic) as fake:
        yield fake


@pytest.fixture
def world(tmp_path, origin, wayback, clock):
    made = []

    def make(**archive) -> World:
        made.append(World(tmp_path, origin, wayback, clock, **archive))
        return made[-1]

    yield make
    for w in made:
        w.store.close()


def test_origin_404_is_replaced_by_the_capture_with_its_date(world, origin, wayback):
    w = world()
    url = origin.route("/report", html("<h1>Not found</h1>", status=404))
    wayback.add(url, "20240408194323", article())
    snap = w.fetch(url)
    assert snap.origin == "archive" and snap.outcome == "ok"
    assert (snap.live_status, snap.live_outcome, snap.http_status) == (404, "http-404", 200)
    assert snap.captured_at.isoformat() == "2024-04-08T19:43:23+00:00"
    assert snap.archive_url == f"{wayback.base}/web/20240408194323id_/{url}"
    assert "recommends monitoring open-weight models" in snap.text
    preview = render_text(make_preview(snap, snap, 3000)).split("\n")
    assert preview[1] == "HTTP 404 → archived copy · Captured Apr 8, 2024 (Wayback Machine) · Fetched Nov 23, 2026 · 1 KB"
    assert wayback.count("toolbar") == 0


def test_cdx_query_asks_for_the_closest_200_to_the_last_time_the_source_was_alive(world, origin, wayback, clock):
    w = world()
    url = origin.route("/report", html(article().decode()))
    w.fetch(url)  # alive on Nov 23, 2026
    origin.routes["/report"] = html("gone", status=410)
    wayback.add(url, "20261101000000", article(TEXT.replace("agency", "office")))
    clock.advance(days=30)
    snap = w.fetch(url)
    query = next(h.path for h in wayback.hits if h.kind == "cdx")
    assert "filter=statuscode%3A200" in query and "sort=closest" in query and "output=json" in query
    assert "closest=20261123030000" in query
    assert snap.origin == "archive" and "office recommends" in snap.text


def test_dns_failure_falls_back_to_the_archive(world, wayback, no_dns):
    w = world()
    url = "https://www.gone-agency.invalid/report.html"
    wayback.add(url, "20230102030405", article())
    snap = w.fetch(url)
    assert (snap.origin, snap.live_outcome, snap.live_status) == ("archive", "dns-error", None)
    preview = render_text(make_preview(snap, snap, 3000))
    assert "No response (dns-error) → archived copy · Captured Jan 2, 2023 (Wayback Machine)" in preview


def test_archived_pdf_is_extracted_as_a_pdf_not_the_toolbar(world, origin, wayback):
    """The old system's bug (seed 001): the Wayback page stored as the PDF's text."""
    w = world()
    data, sentences = corpus_pdfs()["pdflatex-4-pages.pdf"]
    url = origin.route("/files/report.pdf", html("moved", status=404))
    wayback.add(url, "20260408194323", data, mime="application/pdf")
    snap = w.fetch(url)
    assert snap.origin == "archive" and snap.size_bytes == len(data)
    for sentence in sentences:
        assert normalised(sentence) in normalised(snap.text)
    for chrome in ("Wayback Machine", "About this capture", "COLLECTED BY"):
        assert chrome not in snap.text
    assert snap.text_chars > 10_000  # not "0 KB"


def test_archive_chrome_is_rejected_as_bad_content(world, origin, wayback):
    w = world()
    url = origin.route("/page", html("gone", status=404))
    wayback.add(url, "20240101000000", article())
    wayback.replay_chrome = True
    snap = w.fetch(url)
    assert snap.origin == "live" and not snap.has_content
    assert snap.archive_outcome == "archive-error" and "bad-content" in snap.detail
    assert fetch_count(w.store.directory) == 1


@pytest.mark.parametrize("honour_filter", [True, False], ids=["archive-filters", "client-filters"])
def test_a_capture_that_is_itself_a_404_is_skipped_for_the_nearest_200(world, origin, wayback, honour_filter):
    wayback.honour_filter = honour_filter
    w = world()
    url = origin.route("/page", html("gone", status=404))
    wayback.add(url, "20261120000000", b"<html>Not Found</html>", status=404)  # closest, but a 404
    wayback.add(url, "20250101000000", article())
    wayback.add(url, "20200101000000", article(TEXT.replace("agency", "older agency")))
    snap = w.fetch(url)
    assert snap.captured_at.year == 2025 and "older agency" not in snap.text


def test_no_capture_at_all_is_an_archive_miss_and_the_live_failure_is_kept(world, origin, wayback):
    w = world()
    url = origin.route("/page", html("gone", status=404))
    snap = w.fetch(url)
    assert (snap.origin, snap.outcome, snap.archive_outcome) == ("live", "http-404", "archive-miss")
    assert "no capture" in snap.detail
    assert wayback.count("replay") == 0


def test_replay_redirect_to_the_exact_capture_is_followed(world, origin, wayback):
    w = world()
    url = origin.route("/page", html("gone", status=404))
    wayback.add(url, "20240408194323", article())
    served = asyncio.run(_replay_inexact(w, url))
    w.store.remember_lookup(make_source(url), "Wayback Machine", w.clock.wall(), served)
    snap = w.fetch(url)
    assert snap.captured_at.isoformat() == "2024-04-08T19:43:23+00:00"
    assert snap.archive_url.endswith(f"/web/20240408194323id_/{url}")


async def _replay_inexact(w: World, url: str):
    """Ask for a rounded timestamp, as a cached capture from another index might."""
    from fetcher.core.models import Capture
    from fetcher.net.archive import timestamp_to_datetime

    async with w.clock.pipeline(w.config, w.store) as pipeline:
        client = pipeline._archives[0]
        asked = Capture("Wayback Machine", "20240408000000", url, client.raw_url("20240408000000", url),
                        timestamp_to_datetime("20240408000000"))
        download, served = await client.replay(asked)
    assert download.outcome.value == "ok" and download.redirects[0].status == 302
    return served


def test_second_run_over_the_same_dead_sources_asks_the_archive_nothing(world, origin, wayback, clock):
    w = world()
    urls = [origin.route(f"/dead/{i}", html("gone", status=404)) for i in range(5)]
    for url in urls[:3]:
        wayback.add(url, "20240101000000", article(TEXT + url))
    first = w.refresh(urls)
    assert first.archived == 3 and first.counts == {"http-404": 5}
    hits_after_first = len(wayback.hits)
    assert wayback.count("cdx") == 5 and wayback.count("replay") == 3
    clock.advance(days=1)
    second = w.refresh(urls)
    assert len(wayback.hits) == hits_after_first  # zero CDX, zero replay
    assert second.archived == 3
    for url in urls[:3]:
        latest = w.store.latest(make_source(url).resource_id)
        assert latest.origin == "archive" and url in latest.text and not latest.changed


def test_misses_are_looked_up_again_after_a_week_or_when_asked(world, origin, wayback, clock):
    w = world()
    url = origin.route("/dead", html("gone", status=404))
    w.fetch(url)
    clock.advance(days=3)
    w.fetch(url)
    assert wayback.count("cdx") == 1
    w.fetch(url, recheck_archive=True)
    assert wayback.count("cdx") == 2
    clock.advance(days=8)
    wayback.add(url, "20261125000000", article())
    snap = w.fetch(url)
    assert wayback.count("cdx") == 3 and snap.origin == "archive"


@contextmanager
def scaled_world(tmp_path: Path, origin: Origin, speed: float, **archive):
    """A World whose clock is real time sped up: sleeps really wait, so the fake
    archive stamps requests in the order and spacing they were sent."""
    clock = ScaledClock(speed=speed)
    # On an address of its own: sharing the origin's host slots, a lookup granted its
    # turn could wait behind page requests (whose error bodies are read, keeping their
    # connections) and go out together with the next one, blurring the spacing measured.
    with FakeWayback("127.0.0.2", clock=clock.monotonic) as wayback:
        w = World(tmp_path, origin, wayback, clock, **archive)
        try:
            yield w, wayback
        finally:
            w.store.close()


def test_rate_limit_holds_over_100_failing_sources(tmp_path, origin):
    with scaled_world(tmp_path, origin, speed=25, requests_per_minute=60) as (w, wayback):
        urls = [origin.route(f"/dead/{i}", html("gone", status=404)) for i in range(100)]
        summary = w.refresh(urls)
    assert summary.counts == {"http-404": 100}
    times = sorted(hit.at for hit in wayback.hits)
    assert len(times) == 100
    worst = max(sum(1 for t in times if start <= t < start + 60) for start in times)
    assert worst <= 60, f"{worst} archive requests in one minute"
    assert times[-1] - times[0] >= 98  # 100 requests at one a second, evenly spaced


def test_429_with_retry_after_pauses_the_archive_client(world, origin, wayback):
    w = world(requests_per_minute=600)
    url = origin.route("/dead", html("gone", status=404))
    wayback.add(url, "20240101000000", article())
    wayback.fail("/cdx/", 429, times=1, Retry_After="2")
    snap = w.fetch(url)
    assert snap.origin == "archive"
    cdx = [hit.at for hit in wayback.hits if hit.kind == "cdx"]
    assert len(cdx) == 2 and cdx[1] - cdx[0] >= 2


def test_a_429_storm_stops_the_archive_for_the_run(tmp_path, origin):
    # 105 ms real between requests: each 429 is back before the next one goes.
    with scaled_world(tmp_path, origin, speed=10, requests_per_minute=60) as (w, wayback):
        urls = [origin.route(f"/dead/{i}", html("gone", status=404)) for i in range(20)]
        wayback.fail("/cdx/", 429, times=1000, Retry_After="5")
        summary = w.refresh(urls)
        latest = w.store.latest(make_source(urls[-1]).resource_id)
    assert summary.counts == {"http-404": 20}
    assert wayback.count("cdx") == 3  # three 429s in a row, then no more asking
    assert latest.archive_outcome == "archive-error" and "not asked again for 1 hour" in latest.detail


def test_an_archive_left_alone_is_asked_again_an_hour_later_by_an_engine_that_serves_on(world, origin, wayback, clock):
    """`fetcher worker` keeps one engine for as long as it serves: an archive that
    failed three times in a row is left alone for an hour, not for the worker's life."""
    w = world()  # retries=1: a lookup is two requests at most
    urls = [origin.route(f"/dead/{n}", html("gone", status=404)) for n in range(4)]
    for url in urls:
        wayback.add(url, "20240101000000", article())
    wayback.fail("/cdx/", 503, times=3)

    async def serving() -> list[Snapshot]:
        seen = []
        async with clock.pipeline(w.config, w.store) as pipeline:
            for url, later in zip(urls, (0, 0, 30, 31)):  # minutes after the one before
                clock.advance(minutes=later)
                seen.append(await pipeline.fetch(make_source(url)))
        return seen

    seen = asyncio.run(serving())
    assert [snap.origin for snap in seen] == ["live", "live", "live", "archive"]
    assert "not asked again for 1 hour" in seen[1].detail and "not asked again for 1 hour" in seen[2].detail
    assert wayback.count("cdx") == 4  # three 503s, none while it rested, then the lookup that found it


def test_5xx_from_the_archive_is_retried(world, origin, wayback):
    w = world()
    url = origin.route("/dead", html("gone", status=404))
    wayback.add(url, "20240101000000", article())
    wayback.fail("/cdx/", 503, times=1)
    assert w.fetch(url).origin == "archive" and wayback.count("cdx") == 2


def test_bot_walls_fall_back_by_default_and_not_when_configured(world, origin, wayback, tmp_path):
    url = origin.route("/walled", html("Checking your browser", status=403))
    wayback.add(url, "20240101000000", article())
    assert world().fetch(url).origin == "archive"
    strict = world(fallback_on_blocked=False)
    snap = strict.fetch(url)
    assert (snap.origin, snap.outcome, snap.archive_outcome) == ("live", "http-403", None)


def test_second_archive_is_tried_when_the_first_has_nothing(world, origin, wayback, clock):
    with FakeWayback("127.0.0.3", clock=clock.monotonic) as other:
        more = {**other.settings, "name": "Other Archive", "requests_per_minute": 600}
        more.pop("save_url")
        w = world(more=[more])
        url = origin.route("/dead", html("gone", status=404))
        other.add(url, "20220202020202", article())
        snap = w.fetch(url)
    assert snap.origin == "archive" and snap.archive_name == "Other Archive"
    assert wayback.count("cdx") == 1 and other.count("replay") == 1


def test_archive_only_and_no_archive(world, origin, wayback):
    w = world()
    url = origin.route("/page", html(article().decode()))
    wayback.add(url, "20240101000000", article(TEXT.replace("agency", "archived agency")))
    only = w.fetch(url, live=False)
    assert only.origin == "archive" and "archived agency" in only.text and origin.hits("/page") == 0
    assert render_text(make_preview(only, only, 3000)).split("\n")[1].startswith("Archived copy · Captured Jan 1, 2024")
    origin.routes["/page"] = html("gone", status=404)
    never = w.fetch(url, archive=False)
    assert never.origin == "live" and never.outcome == "http-404" and wayback.count("cdx") == 1


def test_save_page_now_after_a_changed_live_fetch_never_fails_the_fetch(world, origin, wayback):
    w = world(save=True)
    url = origin.route("/page", html(article().decode()))
    wayback.fail("/save/", 500, times=100)
    first = w.fetch(url)
    second = w.fetch(url)  # unchanged: no new save
    assert first.outcome == second.outcome == "ok"
    saves = [hit.path for hit in wayback.hits if hit.kind == "save"]
    assert saves and all(path == f"/save/{url}" for path in saves) and len(saves) == 2  # one try + one retry


def test_cli_fetch_flags(tmp_path, origin, wayback):
    config = write_config(tmp_path, archive={**wayback.settings, "requests_per_minute": 6000})
    url = origin.route("/gone", html("gone", status=404))
    wayback.add(url, "20240101000000", article())
    runner = CliRunner()
    plain = runner.invoke(cli, ["--config", str(config), "fetch", url, "--no-archive"])
    assert plain.exit_code == 1 and "HTTP 404 (http-404)" in plain.output and wayback.count("cdx") == 0
    archived = runner.invoke(cli, ["--config", str(config), "fetch", url, "--json"])
    data = json.loads(archived.stdout)
    assert archived.exit_code == 0 and data["origin"] == "archive" and data["live_status"] == 404
    assert data["captured_at"] == "2024-01-01T00:00:00Z" and data["archive_url"].endswith(f"id_/{url}")
    again = runner.invoke(cli, ["--config", str(config), "fetch", url, "--archive-only", "--recheck-archive"])
    assert again.exit_code == 0 and "Archived copy · Captured Jan 1, 2024 (Wayback Machine)" in again.output
    assert wayback.count("cdx") == 2
    both = runner.invoke(cli, ["--config", str(config), "fetch", url, "--archive-only", "--no-archive"])
    assert both.exit_code == 2


def test_parse_cdx_reads_both_dialects():
    ia = b'[["urlkey","timestamp","original","mimetype","statuscode","digest","length"],' \
         b'["org,x)/","20240101000000","https://x.org/","text/html","200","D","10"]]'
    assert parse_cdx(ia)[0]["statuscode"] == "200"
    assert parse_cdx(b"[]") == [] and parse_cdx(b"") == []
    pywb = b'{"urlkey": "org,x)/", "timestamp": "20240101000000", "url": "https://x.org/", "status": "200"}\n'
    assert parse_cdx(pywb)[0]["url"] == "https://x.org/"
    with pytest.raises(ValueError):
        parse_cdx(b"<html>503 Service Unavailable</html>")


def test_a_capture_already_stored_is_reused_with_no_http_status_of_its_own(tmp_path, origin, wayback):
    """A capture replayed on an earlier fetch is not asked for again: the new fetch
    row has no HTTP status (none was received); the preview shows the live status."""
    config = write_config(tmp_path, archive={**wayback.settings, "requests_per_minute": 6000})
    url = origin.route("/gone", html("gone", status=404))
    wayback.add(url, "20240101000000", article())
    runner = CliRunner()
    first = json.loads(runner.invoke(cli, ["--config", str(config), "fetch", url, "--json"]).stdout)
    again = runner.invoke(cli, ["--config", str(config), "fetch", url])
    second = json.loads(runner.invoke(cli, ["--config", str(config), "show", url, "--format", "json"]).stdout)
    assert wayback.count("replay") == 1  # the second fetch replayed nothing
    assert (first["origin"], first["http_status"], first["live_status"]) == ("archive", 200, 404)
    assert (second["origin"], second["http_status"], second["live_status"]) == ("archive", None, 404)
    assert again.exit_code == 0 and "HTTP 404 → archived copy · Captured Jan 1, 2024 (Wayback Machine)" in again.output
    history = json.loads(runner.invoke(cli, ["--config", str(config), "history", url, "--json"]).stdout)
    assert [(h["http_status"], h["attempts"], h["sha256"]) for h in history] == [
        (None, 0, first["sha256"]), (200, 1, first["sha256"])]


def test_an_engine_serving_run_after_run_saves_within_each_runs_budget(world, origin, wayback, clock):
    """`fetcher worker` keeps one engine for as long as it serves: Save Page Now's
    `max_saves_per_run` is each run's budget, not one budget for the worker's life."""
    w = world(save=True, max_saves_per_run=1)
    first, second = (origin.route(f"/page{n}", html(article(TEXT.replace("agency", f"agency {n}")).decode()))
                     for n in range(2))

    async def two_nights() -> None:
        async with clock.pipeline(w.config, w.store) as pipeline:
            for url in (first, second):  # run 1: both new, the budget allows one save
                await pipeline.fetch(make_source(url), FetchOptions(run_id=1))
            clock.advance(days=1)
            origin.routes["/page0"] = html(article(TEXT.replace("agency", "agency, revised")).decode())
            await pipeline.fetch(make_source(first), FetchOptions(run_id=2))  # run 2: changed, its own budget

    asyncio.run(two_nights())
    saves = [hit.path for hit in wayback.hits if hit.kind == "save"]
    assert saves == [f"/save/{first}", f"/save/{first}"]
