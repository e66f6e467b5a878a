"""What previews and times say, checked through the CLI as a user runs it: a 304
night confirms the content held (the preview still says `HTTP 200`, dated the
night it was confirmed); an archive-only attempt that finds nothing does not hide
a healthy page's content; a fetch is dated when its request went out, and a
run has one duration."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from click.testing import CliRunner

from fetcher.cli.main import cli
from tests.conftest import write_config
from tests.fake_wayback import FakeWayback
from tests.origin import Origin, Route, conditional

PAGE = (
    "<html><head><title>Open models report</title></head><body><article><h1>Open models report</h1>"
    "<p>{}</p></article></body></html>"
).format("The agency recommends monitoring open-weight models rather than restricting them now. " * 6)


def day(iso: str) -> str:
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return f"{moment:%b} {moment.day}, {moment.year}"


def invoke(config: Path, *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cli, ["--config", str(config), *args])
    assert result.exit_code == code, result.output
    return result.stdout


def set_back(storage: Path, fetch_id: int, days: int) -> None:
    """Date one stored fetch `days` earlier: the first night of a store a week old."""
    with closing(sqlite3.connect(storage / "fetcher.sqlite3")) as db, db:
        (when,) = db.execute("SELECT fetched_at FROM fetches WHERE id = ?", (fetch_id,)).fetchone()
        earlier = (datetime.fromisoformat(when) - timedelta(days=days)).isoformat()
        db.execute("UPDATE fetches SET fetched_at = ? WHERE id = ?", (earlier, fetch_id))


def test_a_304_night_shows_the_content_status_and_the_date_it_was_confirmed(tmp_path: Path, origin: Origin) -> None:
    url = origin.route("/report", conditional(origin, PAGE, etag='"v1"'))
    config = write_config(tmp_path, [url])
    first = json.loads(invoke(config, "fetch", url, "--json"))
    set_back(tmp_path / "snapshots", first["fetch_id"], days=7)
    night = json.loads(invoke(config, "fetch", url, "--json"))
    assert origin.requests[-1].headers.get("If-None-Match") == '"v1"'
    # fetch --json: the check's own status and outcome, and the content's
    assert (night["http_status"], night["outcome"]) == (304, "not-modified")
    assert night["content_http_status"] == 200 and night["sha256"] == first["sha256"]
    assert day(night["content_fetched_at"]) != day(night["fetched_at"])  # delivered a week before the check
    status = f"HTTP 200 · Fetched {day(night['fetched_at'])}"
    assert invoke(config, "show", url).split("\n")[1].startswith(status)
    assert f"**{status}" in invoke(config, "show", url, "--format", "markdown")
    for record in (json.loads(invoke(config, "show", url, "--format", "json")), json.loads(invoke(config, "export"))[0]):
        assert "HTTP 304" not in record["preview"] and record["preview"].split("\n")[1].startswith(status)
        assert (record["http_status"], record["outcome"]) == (304, "not-modified")  # the check
        assert record["content_http_status"] == 200 and record["content"]["http_status"] == 200
        assert record["confirmed_at"] == night["fetched_at"] == record["content"]["fetched_at"]
        assert record["content_fetched_at"] == night["content_fetched_at"]
    # the fetch command's own preview after a 304 says the same
    assert invoke(config, "fetch", url).split("\n")[1].startswith("HTTP 200 · Fetched")


def test_a_later_failure_shows_the_copy_confirmed_last(tmp_path: Path, origin: Origin) -> None:
    url = origin.route("/report", conditional(origin, PAGE, etag='"v1"'))
    config = write_config(tmp_path, [url], retries=0)
    invoke(config, "fetch", url)
    night = json.loads(invoke(config, "fetch", url, "--json"))
    del origin.routes["/report"]  # gone: 404
    invoke(config, "fetch", url, code=1)
    record = json.loads(invoke(config, "show", url, "--format", "json"))
    assert (record["http_status"], record["outcome"]) == (404, "http-404")
    assert record["content_http_status"] == 200 and record["confirmed_at"] == night["fetched_at"]
    assert f"showing the copy fetched {day(night['fetched_at'])}" in record["preview"]


def test_an_archive_only_miss_does_not_hide_the_good_content(tmp_path: Path, origin: Origin) -> None:
    with FakeWayback("127.0.0.1") as wayback:  # it has no capture of the page
        url = origin.route("/report", conditional(origin, PAGE, etag='"v1"'))
        config = write_config(tmp_path, [url], archive={**wayback.settings, "requests_per_minute": 6000})
        invoke(config, "fetch", url)
        before = {"show": invoke(config, "show", url), "export": json.loads(invoke(config, "export"))}
        missed = invoke(config, "fetch", url, "--archive-only", code=1)
        assert "archive-miss" in missed and wayback.count("cdx") == 1
        assert invoke(config, "show", url) == before["show"]
        assert json.loads(invoke(config, "export")) == before["export"]
        history = json.loads(invoke(config, "history", url, "--json"))
        assert [(row["origin"], row["outcome"]) for row in history] == [("archive", "archive-miss"), ("live", "ok")]


def test_an_archive_only_miss_is_shown_when_it_is_all_there_is(tmp_path: Path, origin: Origin) -> None:
    with FakeWayback("127.0.0.1") as wayback:
        url = origin.url("/never-fetched")
        config = write_config(tmp_path, [url], archive={**wayback.settings, "requests_per_minute": 6000})
        invoke(config, "fetch", url, "--archive-only", code=1)
        assert "(archive-miss)" in invoke(config, "show", url).split("\n")[1]
        assert json.loads(invoke(config, "export"))[0]["outcome"] == "archive-miss"


def stamped(route: Route, served: dict[str, datetime]) -> Route:
    """`route`, noting (wall clock) when each path was last asked for."""

    def answer(handler: BaseHTTPRequestHandler) -> None:
        served[handler.path] = datetime.now(timezone.utc)
        route(handler)

    return answer


def test_times_are_the_requests_not_the_queues(tmp_path: Path, origin: Origin) -> None:
    """Three pages of one host, one worker, a second between request starts: each
    page waits its host's turn (robots.txt first). `fetched_at` is when its request
    went out and `elapsed_ms` from then to stored: a 304 takes milliseconds, not the
    second spent waiting."""
    served: dict[str, datetime] = {}
    paths = ["/a", "/b", "/c"]
    urls = [origin.route(path, stamped(conditional(origin, PAGE.replace("report", path), etag=f'"{path}"'), served))
            for path in paths]
    config = write_config(tmp_path, urls, concurrency=1, per_host_delay=1.0)
    invoke(config, "refresh")
    invoke(config, "refresh", "--all")  # the night of 304s
    for path, url in zip(paths, urls):
        latest = json.loads(invoke(config, "history", url, "--json"))[0]
        assert latest["outcome"] == "not-modified"
        fetched_at = datetime.fromisoformat(latest["fetched_at"].replace("Z", "+00:00"))
        assert abs((fetched_at - served[path]).total_seconds()) < 0.25, path  # not when it was queued
        assert latest["elapsed_ms"] < 500, (path, latest["elapsed_ms"])  # no wait for the host's turn in it


def test_a_run_has_one_duration(tmp_path: Path, origin: Origin) -> None:
    urls = [origin.route(path, conditional(origin, PAGE.replace("report", path))) for path in ("/a", "/b")]
    config = write_config(tmp_path, urls)
    summary = json.loads(invoke(config, "refresh", "--json"))
    [run] = json.loads(invoke(config, "runs", "--json"))
    started, finished = (datetime.fromisoformat(run[key].replace("Z", "+00:00")) for key in ("started_at", "finished_at"))
    assert (run["started_at"], run["finished_at"]) == (summary["started_at"], summary["finished_at"])
    assert round((finished - started).total_seconds(), 3) == summary["seconds"] == run["summary"]["seconds"]
    assert run["summary"] == summary
