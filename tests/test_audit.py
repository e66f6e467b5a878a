"""The broken-link audit as a user sees it.

A mixed set of 31 sources on four loopback origins (alive pages, permanent and
temporary redirects, 404, 410, DNS failures, bot walls, soft 404s, a flapping
500, archived-only pages with captures in a fake Wayback Machine) goes through
four simulated nights with a fake clock; the audit is checked after each night,
then through every CLI format and flag, and the HTML report in a real headless
Chromium (filter, sort and search from the address, the chart, a screenshot).

Nothing leaves loopback: in-process name lookups are guarded (.invalid names
fail without asking DNS), subprocesses only read stores (no --check), and
Chromium runs in an empty network namespace when the kernel allows it, with
every host name mapped to "not found" either way."""

from __future__ import annotations

import asyncio
import csv
import functools
import io
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from lxml import html as lxml_html

from fetcher.views.audit import STATES, Audit, build_audit
from fetcher.views.audit_formats import COLOURS, COLUMNS
from fetcher.cli.main import cli
from fetcher.core.config import Config, load_config
from fetcher.run.refresh import run_once
from fetcher.core.sources import resource_id
from fetcher.store.sqlite import Store
from tests.conftest import FakeClock, run_fetcher, write_config
from tests.fake_wayback import FakeWayback
from tests.origin import Origin, html, redirect

UTC = timezone.utc
CHROMIUM = Path("/usr/bin/chromium")
CAPTURE = "20240408194323"  # the archived-only pages' capture in the fake Wayback Machine
CAPTURED_AT = datetime(2024, 4, 8, 19, 43, 23, tzinfo=UTC)


# -- pages -------------------------------------------------------------------------------


def article(name: str, paragraphs: int = 3, extra: str = "") -> str:
    """A real-looking article whose text names it."""
    body = "".join(
        f"<p>Paragraph {n} of the report called {name}. The committee reviewed the figures in detail and agreed "
        f"to publish the minutes, with every table, so that residents can read them before the next meeting.</p>"
        for n in range(1, paragraphs + 1)
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{name}</title></head><body>'
        f'<header><nav><a href="/">Home</a> | <a href="/about">About</a></nav></header>'
        f"<main><article><h1>{name}</h1>{body}{extra}</article></main>"
        f"<footer><p>Published by the press office.</p></footer></body></html>"
    )


HOME = article("News site home page", paragraphs=4)
LONG_MENTION = article(
    "How our servers answer a 404 error", paragraphs=24,
    extra="<p>When a page is not found the server answers with a 404 error page; this article explains why.</p>",
)
ERROR_PAGE = (
    "<!doctype html><html><head><title>Oops</title></head><body><header><a href='/'>Home</a></header><main>"
    "<h1>Sorry, the page you requested could not be found.</h1>"
    "<p>It may have been moved or deleted. Try the search box, or go back to the home page.</p></main></body></html>"
)
PARKED = (
    "<!doctype html><html><head><title>old-lab.example</title></head><body><div class='banner'>"
    "<h1>This domain is for sale!</h1><p>Buy this domain today. Contact our brokers for a quote; "
    "financing is available.</p></div></body></html>"
)
NOT_FOUND = html("<html><body><h1>Not Found</h1></body></html>", status=404)
GONE = html("<html><body><h1>Gone</h1></body></html>", status=410)
SERVER_ERROR = html("<html><body><h1>Internal Server Error</h1></body></html>", status=500)
BOT_WALL = html("<html><body><h1>Checking your browser before accessing</h1></body></html>", status=403)
LOGIN = html("<html><body><h1>Please sign in</h1></body></html>", status=401)


# -- the sources and what each should be after each night ----------------------------------

# Nights at day 0, 1, 2 and 4 after the start. Failing sources are rechecked on the
# backoff (1 day, then 3 days), so a source failing since night 1 is checked on nights
# 1, 2 and 4: three failures spanning four days make it dead on night 4, not before.
NIGHT_DAYS = (0, 1, 2, 4)


@dataclass(frozen=True)
class Spec:
    name: str
    host: str  # "news", "blog", "walled", "parked" or a .invalid host name
    path: str
    title: str
    routes: tuple  # one route, or one per night
    states: tuple[str, str, str, str]  # expected state after each night
    capture: bool = False  # archived in the fake Wayback Machine
    extra_routes: dict = field(default_factory=dict)


def _specs() -> list[Spec]:
    ok4 = ("ok",) * 4
    specs = [
        Spec("home", "news", "/", "News site home", (html(HOME),), ok4),
        *(Spec(f"article-{n}", "news", f"/articles/{n}", f"Council bulletin {n}", (html(article(f"bulletin {n}")),), ok4)
          for n in range(1, 7)),
        Spec("long-mention", "news", "/articles/about-404", "How servers answer a 404 error",
             (html(LONG_MENTION),), ok4),
        Spec("moved", "news", "/old/story", "Tram extension (old address)", (redirect("/articles/story-new", 301),),
             ("redirected",) * 4, extra_routes={"/articles/story-new": html(article("tram extension"))}),
        Spec("permalink", "news", "/p/42", "Q&A: harbour dredging", (redirect("/articles/answer", 308),),
             ("redirected",) * 4, extra_routes={"/articles/answer": html(article("harbour dredging"))}),
        Spec("slash", "news", "/trailing", "School meals", (redirect("/trailing/", 301),), ok4,
             extra_routes={"/trailing/": html(article("school meals"))}),
        Spec("temporary", "news", "/temp", "Library hours", (redirect("/articles/temp-target", 302),), ok4,
             extra_routes={"/articles/temp-target": html(article("library hours"))}),
        Spec("deep-link", "news", "/deep/removed-story", "Removed story", (redirect("/", 302),), ("soft-404",) * 4),
        Spec("missing", "news", "/missing", "Missing report", (NOT_FOUND,), ("failing", "failing", "failing", "dead")),
        Spec("gone", "news", "/gone", "Withdrawn consultation", (GONE,), ("failing", "failing", "failing", "dead")),
        Spec("error-page", "news", "/error-page", "Budget 2024", (html(ERROR_PAGE),), ("soft-404",) * 4),
        Spec("flaky", "news", "/flaky", "River flooding",
             (html(article("river flooding")),) * 2 + (SERVER_ERROR, html(article("river flooding"))),
             ("ok", "ok", "failing", "ok")),
        Spec("breaks-last", "news", "/breaks-last", "Bus timetable",
             (html(article("bus timetable")),) * 3 + (NOT_FOUND,), ("ok", "ok", "ok", "failing")),
        Spec("archived", "news", "/archived-report", "Annual report 2023", (NOT_FOUND,),
             ("failing", "failing", "failing", "dead"), capture=True),
        *(Spec(f"post-{n}", "blog", f"/posts/{n}", f"Blog post {n}", (html(article(f"blog post {n}")),), ok4)
          for n in range(1, 6)),
        Spec("withdrawn", "blog", "/posts/withdrawn", "Withdrawn post",
             (html(article("withdrawn post")), NOT_FOUND), ("ok", "failing", "failing", "failing")),
        Spec("archived-410", "blog", "/posts/removed", "Removed post", (GONE,), ("failing", "failing", "failing", "dead"),
             capture=True),
        Spec("walled", "walled", "/report", "Walled report", (BOT_WALL,), ("blocked",) * 4),
        Spec("members", "walled", "/members/paper", "Members-only paper", (LOGIN,), ("blocked",) * 4),
        Spec("parked", "parked", "/whitepaper", "Lab white paper", (html(PARKED),), ("soft-404",) * 4),
        Spec("agency", "gone-agency.invalid", "/report.html", "Agency report", (),
             ("failing", "failing", "failing", "dead")),
        Spec("lab", "old-lab.invalid", "/data.html", "Lab data", (), ("failing", "failing", "failing", "dead")),
    ]
    assert len(specs) == 31 and len({s.name for s in specs}) == 31
    return specs


SPECS = _specs()
BY_NAME = {spec.name: spec for spec in SPECS}
ORIGIN_IPS = {"news": "127.0.0.2", "blog": "127.0.0.3", "walled": "127.0.0.4", "parked": "127.0.0.5"}
WAYBACK_IP = "127.0.0.6"


def route_for(spec: Spec, night: int) -> Any:
    return spec.routes[min(night, len(spec.routes) - 1)]


def source_entries(urls: dict[str, str]) -> str:
    lines = []
    for spec in SPECS:
        lines += ["", "[[sources]]", f"url = {json.dumps(urls[spec.name])}", f"title = {json.dumps(spec.title)}"]
    return "\n".join(lines) + "\n"


# -- the simulated nights (once per module) --------------------------------------------------


@dataclass
class Site:
    directory: Path  # config.toml and snapshots/ after the four nights (read-only: tests copy it)
    after_first_night: Path  # the same after night 1 only
    config: Config
    urls: dict[str, str]  # spec name -> URL
    nights: list[datetime]  # when each night's run started
    audits: list[Audit]  # the audit after each night
    hits: dict[str, int]  # requests each origin path got over the four nights
    origins: dict[str, Origin]
    wayback: FakeWayback
    replays: int = 0  # capture replays the archive served over the four nights
    soft_404_shas: dict[str, list[str | None]] = field(default_factory=dict)
    stored_texts: list[str] = field(default_factory=list)

    def url(self, name: str) -> str:
        return self.urls[name]

    def rid(self, name: str) -> str:
        return resource_id(self.urls[name])

    def copy(self, target: Path, first_night_only: bool = False) -> Path:
        """A private copy (config.toml + snapshots/) to read or write; returns its config path."""
        shutil.copytree(self.after_first_night if first_night_only else self.directory, target)
        return target / "config.toml"


def guarded_lookups(real: Any) -> Any:
    """Loopback names resolve; .invalid names fail at once, as no_dns makes them; anything
    else is refused (the module-wide site is built before the per-test guard is in place)."""

    def lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name.endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        if not name.startswith(("localhost", "127.", "::1")):
            raise socket.gaierror(socket.EAI_NONAME, f"tests resolve loopback names only, not {name!r}")
        return real(host, *args, **kwargs)

    return lookup


def night_start(days_ago: int) -> datetime:
    """03:00 UTC, `days_ago` days before today: the nights are in the past, so a real
    `audit --check` afterwards comes later than all of them."""
    today = datetime.now(UTC).replace(hour=3, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days_ago)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    directory = tmp_path_factory.mktemp("audit-site") / "site"
    directory.mkdir()
    clock = FakeClock(start=night_start(days_ago=7))
    with ExitStack() as stack:
        monkeypatch = stack.enter_context(pytest.MonkeyPatch.context())
        monkeypatch.setattr(socket, "getaddrinfo", guarded_lookups(socket.getaddrinfo))
        origins = {host: stack.enter_context(Origin(ip)) for host, ip in ORIGIN_IPS.items()}
        wayback = stack.enter_context(FakeWayback(WAYBACK_IP, clock=clock.monotonic))
        urls = {}
        for spec in SPECS:
            if spec.host in origins:
                origin = origins[spec.host]
                urls[spec.name] = origin.url(spec.path)
                for path, route in spec.extra_routes.items():
                    origin.route(path, route)
            else:
                urls[spec.name] = f"http://{spec.host}{spec.path}"
            if spec.capture:
                wayback.add(urls[spec.name], CAPTURE, article(f"archived copy of {spec.title}").encode())
        archive = {**wayback.settings, "requests_per_minute": 600}
        config = load_config(write_config(directory, text=source_entries(urls), archive=archive, retries=1))
        assert config.archive.enabled and all(a.cdx_url.startswith(f"http://{WAYBACK_IP}:") for a in config.archives)
        assert [s.url for s in config.sources] == [urls[s.name] for s in SPECS]

        store = Store(config.storage_dir)
        nights, audits = [], []
        after_first_night = directory.parent / "after-first-night"
        for night, day in enumerate(NIGHT_DAYS):
            clock.advance(seconds=(clock.start + timedelta(days=day) - clock.wall()).total_seconds())
            for spec in SPECS:
                if spec.host in origins:
                    origins[spec.host].route(spec.path, route_for(spec, night))
            nights.append(clock.wall())
            asyncio.run(run_once(
                config, store, list(config.sources), trigger="refresh", wall_clock=clock.wall,
                make_pipeline=lambda: clock.pipeline(config, store),
            ))
            audits.append(build_audit(config, store, list(config.sources)))
            if night == 0:
                store.close()
                shutil.copytree(directory, after_first_night)
                store = Store(config.storage_dir)
        hits = {f"{host}{path}": origin.hits(path) for host, origin in origins.items() for path in origin.routes}
        soft = {spec.name: [snap.sha256 for snap in store.history(resource_id(urls[spec.name]))]
                for spec in SPECS if spec.states[-1] == "soft-404"}
        texts = [row[0] for row in store._db.execute("SELECT text FROM contents")]
        store.close()
        yield Site(directory, after_first_night, config, urls, nights, audits, hits, origins, wayback,
                   wayback.count("replay"), soft, texts)


def by_name(site: Site, audit: Audit) -> dict[str, Any]:
    rows = {row.resource_id: row for row in audit.rows}
    return {spec.name: rows[site.rid(spec.name)] for spec in SPECS}


def expected_counts(night: int) -> dict[str, int]:
    found = Counter(spec.states[night] for spec in SPECS)
    return {name: found[name] for name in STATES if found[name]}


def within(moment: datetime | None, start: datetime, minutes: int = 5) -> bool:
    """In the run that started at `start` (a retry's back-off moves the fake clock a few seconds)."""
    return moment is not None and start <= moment < start + timedelta(minutes=minutes)


# -- 1. states over the nights -----------------------------------------------------------------


def test_each_source_has_the_expected_state_after_every_night(site):
    for night, audit in enumerate(site.audits):
        rows = by_name(site, audit)
        states = {name: row.state for name, row in rows.items()}
        assert states == {spec.name: spec.states[night] for spec in SPECS}, f"night {night + 1}"
        assert audit.counts() == expected_counts(night), f"night {night + 1}"
        # Worst first, then by URL: the order of every report.
        assert [row.state for row in audit.rows] == sorted((r.state for r in audit.rows), key=STATES.index)
    # One bad night is failing, never dead; dead only on night 4 (3 failed checks over 4 days).
    assert "dead" not in site.audits[0].counts() and site.audits[0].counts()["failing"] == 6
    assert site.audits[2].counts().get("dead") is None
    assert site.audits[3].counts() == {
        "dead": 6, "soft-404": 3, "failing": 2, "blocked": 2, "redirected": 2, "ok": 16,
    }


def test_failing_sources_are_rechecked_on_the_backoff(site):
    # Failing since night 1: checked nights 1 and 2, skipped on night 3 (3-day backoff), checked night 4.
    assert site.hits["news/missing"] == 3 and site.hits["news/gone"] == 3
    assert site.hits["walled/report"] == 3 and site.hits["parked/whitepaper"] == 3
    # Broken from night 2: checked nights 1, 2, 3, then not due until day 5.
    assert site.hits["blog/posts/withdrawn"] == 3
    # Healthy every night; the 500 was retried once on night 3.
    assert site.hits["news/articles/1"] == 4 and site.hits["news/flaky"] == 5
    assert site.hits["news/breaks-last"] == 4


def test_failure_and_good_dates(site):
    n1, n2, n3, n4 = site.nights
    rows = by_name(site, site.audits[-1])

    missing = rows["missing"]
    assert within(missing.first_failure, n1) and within(missing.last_failure, n4) and missing.last_good is None
    assert (missing.outcome, missing.http_status) == ("http-404", 404)
    assert within(missing.last_checked, n4)
    assert (rows["gone"].outcome, rows["gone"].http_status) == ("http-410", 410)
    for name in ("agency", "lab"):
        assert (rows[name].outcome, rows[name].http_status) == ("dns-error", None)
        assert within(rows[name].first_failure, n1) and within(rows[name].last_failure, n4)

    withdrawn = rows["withdrawn"]  # good on night 1, a 404 since night 2, last checked night 3
    assert within(withdrawn.last_good, n1)
    assert within(withdrawn.first_failure, n2) and within(withdrawn.last_failure, n3)
    assert within(withdrawn.last_checked, n3)

    breaks = rows["breaks-last"]
    assert within(breaks.last_good, n3) and within(breaks.first_failure, n4) and within(breaks.last_failure, n4)

    flaky = rows["flaky"]  # failed on night 3, fine again on night 4
    assert (flaky.state, flaky.first_failure, flaky.last_failure) == ("ok", None, None)
    assert within(flaky.last_good, n4)
    mid = by_name(site, site.audits[2])["flaky"]
    assert (mid.state, mid.outcome, mid.http_status) == ("failing", "http-5xx", 500)
    assert within(mid.first_failure, n3) and within(mid.last_good, n2)

    for name in ("article-1", "home", "moved", "slash"):
        assert within(rows[name].last_good, n4) and rows[name].first_failure is None


def test_newly_broken_and_recovered_are_what_the_last_run_changed(site):
    def names(rows: list) -> list[str]:
        return sorted(next(s.name for s in SPECS if site.rid(s.name) == row.resource_id) for row in rows)

    changes = [(names(audit.newly_broken), names(audit.recovered)) for audit in site.audits]
    assert changes[1:] == [(["withdrawn"], []), (["flaky"], []), (["breaks-last"], ["flaky"])]
    last = site.audits[-1]
    assert [row.state for row in last.newly_broken] == ["failing"] and [row.state for row in last.recovered] == ["ok"]


def test_redirects(site):
    rows = by_name(site, site.audits[-1])
    news = site.origins["news"]
    assert rows["moved"].moved_to == news.url("/articles/story-new")
    assert rows["permalink"].moved_to == news.url("/articles/answer")
    # A trailing-slash 301 is the same address; a 302 is not a move: both plain ok.
    assert (rows["slash"].state, rows["slash"].moved_to) == ("ok", None)
    assert (rows["temporary"].state, rows["temporary"].moved_to) == ("ok", None)


def test_soft_404s_are_detected_and_their_text_never_stored(site):
    rows = by_name(site, site.audits[-1])
    assert rows["error-page"].detail.startswith("soft 404: the page says it was not found")
    assert rows["parked"].detail.startswith("soft 404: a parked domain")
    assert rows["deep-link"].detail.startswith(
        f"soft 404: redirected to the site's home page {site.origins['news'].url('/')}")
    for name in ("error-page", "parked", "deep-link"):
        assert rows[name].outcome == "bad-content" and rows[name].http_status == 200
        assert rows[name].last_good is None and rows[name].stand_in_url is None
    # Checked on nights 1, 2 and 4 (backoff), and not one of those checks stored content.
    assert site.soft_404_shas == {"deep-link": [None] * 3, "error-page": [None] * 3, "parked": [None] * 3}
    assert site.stored_texts, "the live pages' text is stored"
    for text in site.stored_texts:
        assert "could not be found" not in text and "domain is for sale" not in text.lower()
    assert sum("News site home page" in text for text in site.stored_texts) == 1  # only the home page's own copy


def test_archived_only_sources_have_their_stand_in(site):
    rows = by_name(site, site.audits[-1])
    for name in ("archived", "archived-410"):
        row = rows[name]
        assert row.state == "dead"
        assert row.stand_in_url == f"{site.wayback.base}/web/{CAPTURE}id_/{site.url(name)}"
        assert (row.stand_in_captured_at, row.stand_in_archive) == (CAPTURED_AT, "Wayback Machine")
    first = by_name(site, site.audits[0])["archived"]
    assert first.state == "failing" and first.stand_in_url == rows["archived"].stand_in_url
    others = {name for name, row in rows.items() if row.stand_in_url}
    assert others == {"archived", "archived-410"}
    assert site.replays == 2  # each capture replayed once, then reused


def test_dead_needs_three_failures_spanning_three_days(tmp_path):
    """Checked every night (--all): three failures over two days are still failing, the fourth makes it dead."""
    clock = FakeClock(start=night_start(days_ago=5))
    with Origin("127.0.0.2") as origin:
        urls = [origin.route("/gone", NOT_FOUND), origin.route("/fine", html(article("fine")))]
        config = load_config(write_config(tmp_path, urls))
        store = Store(config.storage_dir)
        try:
            states = []
            for day in range(4):
                clock.advance(seconds=(clock.start + timedelta(days=day) - clock.wall()).total_seconds())
                asyncio.run(run_once(config, store, list(config.sources), trigger="refresh", everything=True,
                                     wall_clock=clock.wall, make_pipeline=lambda: clock.pipeline(config, store)))
                audit = build_audit(config, store, list(config.sources))
                states.append(tuple(row.state for row in audit.rows))
                assert audit.counts() == {states[-1][0]: 1, "ok": 1}
        finally:
            store.close()
    assert [s[0] for s in states] == ["failing", "failing", "failing", "dead"]
    assert origin.hits("/gone") == 4


def test_a_soft_404_with_an_archived_copy_is_still_a_soft_404(tmp_path):
    clock = FakeClock(start=night_start(days_ago=1))
    with Origin("127.0.0.2") as origin, FakeWayback(WAYBACK_IP, clock=clock.monotonic) as wayback:
        origin.route("/", html(HOME))
        urls = [origin.route("/error-page", html(ERROR_PAGE)), origin.route("/whitepaper", html(PARKED)),
                origin.route("/deep/removed-story", redirect("/", 302))]
        for url in urls:
            wayback.add(url, CAPTURE, article(f"archived copy of {url}").encode())
        config = load_config(write_config(tmp_path, urls, archive={**wayback.settings, "requests_per_minute": 600}))
        store = Store(config.storage_dir)
        try:
            asyncio.run(run_once(config, store, list(config.sources), trigger="refresh", wall_clock=clock.wall,
                                 make_pipeline=lambda: clock.pipeline(config, store)))
            audit = build_audit(config, store, list(config.sources))
        finally:
            store.close()
    rows = {row.url: row for row in audit.rows}
    for url in urls:  # the archived copy did stand in
        assert rows[url].stand_in_url == f"{wayback.base}/web/{CAPTURE}id_/{url}"
        assert (rows[url].outcome, rows[url].http_status) == ("bad-content", 200)
    found = {url: (rows[url].state, rows[url].detail) for url in urls}
    assert all(state == "soft-404" and detail.startswith("soft 404: ") for state, detail in found.values()), found


# -- 2. the CLI ----------------------------------------------------------------------------------------


@pytest.fixture
def cli_run(monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """invoke(config, *args) -> click Result (conftest puts the CLI's logger back afterwards)."""

    def invoke(config: Path, *args: str):
        return CliRunner().invoke(cli, ["--config", str(config), "audit", *args], env={"COLUMNS": "200"})

    yield invoke


def fetcher_audit(config: Path, *args: str) -> subprocess.CompletedProcess:
    """The real `fetcher audit` in a subprocess: it only reads the store (no --check), so it sends nothing."""
    assert "--check" not in args
    return run_fetcher(config.parent, "--config", str(config), "audit", *args)


def test_json_has_counts_and_every_source_with_the_stable_keys(site, tmp_path, cli_run):
    config = site.copy(tmp_path / "site")
    result = cli_run(config, "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["counts"] == expected_counts(3)
    assert len(report["sources"]) == 31
    assert all(set(row) == set(COLUMNS) for row in report["sources"])
    rows = {row["resource_id"]: row for row in report["sources"]}
    missing = rows[site.rid("missing")]
    assert (missing["state"], missing["outcome"], missing["http_status"], missing["url"], missing["title"]) == (
        "dead", "http-404", 404, site.url("missing"), "Missing report")
    assert datetime.fromisoformat(missing["first_failure"]) == by_name(site, site.audits[-1])["missing"].first_failure
    archived = rows[site.rid("archived")]
    assert archived["stand_in_captured_at"] == "2024-04-08T19:43:23Z"
    assert archived["stand_in_url"].endswith(f"/web/{CAPTURE}id_/{site.url('archived')}")
    assert rows[site.rid("moved")]["moved_to"] == site.origins["news"].url("/articles/story-new")
    assert report["newly_broken"] == [site.rid("breaks-last")] and report["recovered"] == [site.rid("flaky")]
    assert [row["state"] for row in report["sources"]] == [row.state for row in site.audits[-1].rows]


def test_csv_has_the_documented_columns_and_one_row_per_source(site, tmp_path, cli_run):
    config = site.copy(tmp_path / "site")
    result = cli_run(config, "--format", "csv")
    assert result.exit_code == 0, result.output
    table = list(csv.reader(io.StringIO(result.stdout)))
    assert tuple(table[0]) == COLUMNS == (
        "state", "resource_id", "url", "title", "outcome", "http_status", "detail", "last_checked", "first_failure",
        "last_failure", "last_good", "moved_to", "stand_in_url", "stand_in_captured_at", "stand_in_archive",
    )
    rows = [dict(zip(table[0], line)) for line in table[1:]]
    assert len(rows) == 31 and {row["resource_id"] for row in rows} == {site.rid(s.name) for s in SPECS}
    assert Counter(row["state"] for row in rows) == expected_counts(3)
    gone = next(row for row in rows if row["resource_id"] == site.rid("gone"))
    assert (gone["state"], gone["url"], gone["outcome"], gone["http_status"], gone["last_good"]) == (
        "dead", site.url("gone"), "http-410", "410", "")
    permalink = next(row for row in rows if row["resource_id"] == site.rid("permalink"))
    assert permalink["title"] == "Q&A: harbour dredging" and permalink["state"] == "redirected"


def test_markdown_tables_the_broken_sources(site, tmp_path, cli_run):
    config = site.copy(tmp_path / "site")
    result = cli_run(config, "--format", "markdown")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "dead 6 · soft-404 3 · failing 2 · blocked 2 · redirected 2 · ok 16" in text
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert table[:2] == ["| state | source | outcome | failing since | archived copy |", "| --- | --- | --- | --- | --- |"]
    body = table[2:]
    broken = [row for row in site.audits[-1].rows if row.state not in ("ok", "unchecked")]
    assert len(body) == len(broken) == 15
    for line, row in zip(body, broken):
        cells = [cell.strip() for cell in line.strip("|").split(" | ")]
        assert cells[0] == row.state and f"]({row.url})" in cells[1]
    archived = next(line for line in body if site.url("archived") + ")" in line)
    assert f"[2024-04-08]({site.wayback.base}/web/{CAPTURE}id_/{site.url('archived')})" in archived
    assert f"| {site.nights[0]:%Y-%m-%d} |" in archived
    moved = next(line for line in body if site.url("moved") + ")" in line)
    assert f"moved to <{site.origins['news'].url('/articles/story-new')}>" in moved
    for name in ("article-1", "home", "flaky", "slash"):
        assert site.url(name) + ")" not in "\n".join(body)
    newly = text.split("### Newly broken since the last run", 1)[1].split("###", 1)[0]
    assert f"[Bus timetable]({site.url('breaks-last')}) (http-404)" in newly
    recovered = text.split("### Recovered since the last run", 1)[1].split("|", 1)[0]
    assert f"[River flooding]({site.url('flaky')}) (ok)" in recovered


def table_cells(line: str) -> list[str]:
    """A GitHub-flavoured Markdown table row's cells: split at every pipe not escaped with a backslash."""
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def test_markdown_table_survives_a_pipe_in_a_url(tmp_path, cli_run):
    with Origin("127.0.0.2") as origin:
        url = origin.route("/fonts?family=Roboto|Open+Sans", NOT_FOUND)
        config = write_config(tmp_path, [url, origin.route("/fine", html(article("fine")))])
        refresh(config)
        assert origin.hits("/fonts?family=Roboto|Open+Sans") == 1
    result = cli_run(config, "--format", "markdown")
    assert result.exit_code == 0, result.output
    table = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert len(table) == 3 and table[2].startswith("| failing |")
    assert [len(table_cells(line)) for line in table] == [5, 5, 5], table[2]


def test_only_broken_leaves_out_the_ok_sources(site, tmp_path, cli_run):
    config = site.copy(tmp_path / "site")
    result = cli_run(config, "--format", "json", "--only-broken")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    states = Counter(row["state"] for row in report["sources"])
    assert states == {"dead": 6, "soft-404": 3, "failing": 2, "blocked": 2, "redirected": 2}
    assert site.rid("article-1") not in {row["resource_id"] for row in report["sources"]}
    plain = cli_run(config, "--format", "csv", "--only-broken")
    assert len(list(csv.reader(io.StringIO(plain.stdout)))) == 1 + 15


def test_output_file_is_written_atomically(site, tmp_path, cli_run):
    config = site.copy(tmp_path / "site")
    out = tmp_path / "reports"
    out.mkdir()
    (out / "audit.json").write_text("an older report", encoding="utf-8")
    result = cli_run(config, "--format", "json", "-o", str(out / "audit.json"))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert sorted(p.name for p in out.iterdir()) == ["audit.json"]  # replaced, no temporary file left
    assert json.loads((out / "audit.json").read_text(encoding="utf-8"))["counts"] == expected_counts(3)

    html_result = cli_run(config, "--format", "html", "--output", str(out / "audit.html"))
    assert html_result.exit_code == 0 and sorted(p.name for p in out.iterdir()) == ["audit.html", "audit.json"]
    assert (out / "audit.html").read_text(encoding="utf-8").rstrip().endswith("</html>")

    nowhere = cli_run(config, "--format", "csv", "-o", str(tmp_path / "no-such-dir" / "audit.csv"))
    assert nowhere.exit_code == 2 and "cannot write" in nowhere.output
    assert not (tmp_path / "no-such-dir").exists()


def test_fail_on_dead_exits_1_only_when_a_source_is_dead(site, tmp_path):
    dead_config = site.copy(tmp_path / "after-four-nights")
    first_config = site.copy(tmp_path / "after-one-night", first_night_only=True)
    dead = fetcher_audit(dead_config, "--fail-on", "dead", "--format", "json")
    assert dead.returncode == 1, dead.stderr
    assert json.loads(dead.stdout)["counts"]["dead"] == 6  # the report is printed all the same
    one_night = fetcher_audit(first_config, "--fail-on", "dead", "--format", "json")
    assert one_night.returncode == 0, one_night.stderr
    counts = json.loads(one_night.stdout)["counts"]
    assert "dead" not in counts and counts["failing"] == 6
    # failing also counts failing and soft-404 sources
    assert fetcher_audit(first_config, "--fail-on", "failing", "--format", "csv").returncode == 1


def refresh(config_path: Path) -> None:
    """One run over every source, in process (the loopback guard applies), on a fake clock."""
    config = load_config(config_path)
    store = Store(config.storage_dir)
    clock = FakeClock(start=night_start(days_ago=1))
    try:
        asyncio.run(run_once(config, store, list(config.sources), trigger="refresh", wall_clock=clock.wall,
                             make_pipeline=lambda: clock.pipeline(config, store)))
    finally:
        store.close()


def test_fail_on_failing_and_any(tmp_path, cli_run):
    """failing: dead, failing or soft-404; any: everything but ok and unchecked (a bot wall, a move)."""
    with Origin("127.0.0.2") as origin:
        fine = origin.route("/fine", html(article("fine")))
        moved = origin.route("/moved", redirect("/new-home", 301))
        origin.route("/new-home", html(article("new home")))
        walled = origin.route("/walled", BOT_WALL)
        soft = origin.route("/soft", html(ERROR_PAGE))
        cases = [([fine], (0, 0, 0)), ([fine, moved], (0, 0, 1)), ([fine, walled], (0, 0, 1)),
                 ([fine, soft], (0, 1, 1))]
        for number, (urls, expected) in enumerate(cases):
            directory = tmp_path / f"case-{number}"
            directory.mkdir()
            config = write_config(directory, urls)
            refresh(config)
            assert cli_run(config, "--format", "csv").exit_code == 0  # no --fail-on: 0 whatever the states
            codes = tuple(cli_run(config, "--fail-on", level, "--format", "csv").exit_code
                          for level in ("dead", "failing", "any"))
            assert codes == expected, (urls, codes)


def test_without_a_store_everything_is_unchecked_and_nothing_is_created(tmp_path):
    urls = [f"http://127.0.0.2:9/page/{n}" for n in range(3)] + ["http://gone-agency.invalid/report"]
    config = write_config(tmp_path, urls)
    done = fetcher_audit(config, "--format", "json", "--fail-on", "any")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["counts"] == {"unchecked": 4}
    assert [row["url"] for row in report["sources"]] == sorted(urls)
    assert all(row["last_checked"] is None and row["outcome"] is None for row in report["sources"])
    assert (report["newly_broken"], report["recovered"]) == ([], [])
    table = fetcher_audit(config)
    assert table.returncode == 0 and "unchecked 4" in table.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]  # no snapshots/


def test_check_rechecks_every_source_then_reports(site, tmp_path, cli_run, no_dns):
    config = site.copy(tmp_path / "site")
    paths = {"news": ("/missing", "/articles/1", "/breaks-last", "/deep/removed-story"),
             "blog": ("/posts/withdrawn",), "walled": ("/report",), "parked": ("/whitepaper",)}

    def hits() -> dict[str, int]:
        return {f"{host}{path}": site.origins[host].hits(path) for host, wanted in paths.items() for path in wanted}

    def runs() -> list:
        store = Store(config.parent / "snapshots")
        try:
            return store.runs()
        finally:
            store.close()

    before, runs_before = hits(), len(runs())
    result = cli_run(config, "--check", "--format", "json")
    assert result.exit_code == 0, result.output
    once = hits()
    assert {key: once[key] - before[key] for key in once} == dict.fromkeys(once, 1)
    recorded = runs()
    assert len(recorded) == runs_before + 1 and (recorded[0].trigger, recorded[0].status) == ("audit", "completed")

    report = json.loads(result.stdout)
    rows = {row["resource_id"]: row for row in report["sources"]}
    withdrawn = rows[site.rid("withdrawn")]
    # Its third failed check, days after the first: the re-check made it dead, and the report says so.
    assert withdrawn["state"] == "dead" and by_name(site, site.audits[-1])["withdrawn"].state == "failing"
    assert datetime.fromisoformat(withdrawn["last_checked"]) >= recorded[0].started_at
    assert report["counts"]["dead"] == 7 and report["counts"]["ok"] == 16
    assert (report["newly_broken"], report["recovered"]) == ([], [])  # the check run changed nothing else

    # Right after, nothing is due, yet --check checks every source again.
    again = cli_run(config, "--check", "--format", "csv")
    assert again.exit_code == 0, again.output
    twice = hits()
    assert {key: twice[key] - once[key] for key in twice} == dict.fromkeys(twice, 1)
    assert len(runs()) == runs_before + 2


# -- 3. the HTML report in a real browser ----------------------------------------------------------


@functools.cache
def network_namespace_works() -> bool:
    """Can Chromium run in an empty network namespace (root, or user namespaces allowed)?"""
    if not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "--net", "true"], capture_output=True, timeout=10).returncode == 0


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess:
    """Headless Chromium with its own profile and no way off this machine: in an empty network
    namespace when possible, and every host name mapped to "not found" in any case. It runs in
    its own session, so a timeout kills it and its helper processes, and only them."""
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--dns-prefetch-disable", "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={profile}",
    ]
    command = [str(CHROMIUM), *flags, *args]
    if network_namespace_works():
        command = ["unshare", "--net", *command]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        out, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    return subprocess.CompletedProcess(command, process.returncode, out, err)


@dataclass
class Dom:
    rows: list[dict[str, Any]]  # in DOM order: state, visible, the cells' text, resource id
    shown: str
    sorted_headers: list[tuple[int, str]]
    chart: list[list[tuple[str, str, float]]]  # per bar, left to right: (title, fill, height) of its rects


def read_dom(markup: str) -> Dom:
    root = lxml_html.fromstring(markup)
    rows = []
    for tr in root.xpath('//table[@id="sources"]/tbody/tr'):
        cells = tr.xpath("./td")
        rows.append({
            "state": tr.get("data-state"),
            "visible": "none" not in (tr.get("style") or "").replace(" ", ""),
            "source": cells[1].text_content().strip().lower(),
            "failing_since": cells[3].text_content().strip(),
            "rid": cells[1].xpath('./div[@class="id"]')[0].text_content(),
        })
    headers = [(i, th.get("class") or "") for i, th in enumerate(root.xpath('//table[@id="sources"]/thead/tr/th'))]
    bars: dict[float, list] = {}
    for rect in root.xpath('//*[local-name()="svg"][@id="chart"]/*[local-name()="rect"]'):
        title = rect.xpath('./*[local-name()="title"]')[0].text_content()
        bars.setdefault(float(rect.get("x")), []).append((title, rect.get("fill"), float(rect.get("height"))))
    return Dom(rows, root.xpath('string(//span[@id="shown"])'), [h for h in headers if h[1]],
               [bars[x] for x in sorted(bars)])


# Every address the tests look at: loaded once each, two browsers at a time.
FRAGMENTS = (
    "", "state=dead", "sort=1&dir=desc", "sort=0&dir=desc", "state=dead&sort=3&dir=desc", "sort=3&dir=asc",
    "q=http-410", "q=Q%26A%3A%20harbour", "state=failing&q=bus", "q=gone-agency",
)


@dataclass
class Browser:
    report: Path
    directory: Path
    pages: dict[str, Dom]
    failures: dict[str, str]

    def dom(self, fragment: str) -> Dom:
        assert fragment not in self.failures, self.failures[fragment]
        return self.pages[fragment]


@pytest.fixture(scope="module")
def browser(site: Site, tmp_path_factory: pytest.TempPathFactory) -> Browser:
    if not CHROMIUM.exists():
        pytest.skip(f"the HTML report checks need Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    directory = tmp_path_factory.mktemp("audit-html")
    config = site.copy(directory / "site")
    report = directory / "report.html"
    done = fetcher_audit(config, "--format", "html", "-o", str(report))
    assert done.returncode == 0, done.stderr

    def load(numbered: tuple[int, str]) -> tuple[str, Dom | str]:
        number, fragment = numbered
        loaded = chromium(directory / f"profile-{number}", "--dump-dom", f"{report.as_uri()}#{fragment}")
        if loaded.returncode != 0 or "<html" not in loaded.stdout:
            return fragment, f"chromium exited {loaded.returncode}: {loaded.stderr[-2000:]}"
        return fragment, read_dom(loaded.stdout)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(pool.map(load, enumerate(FRAGMENTS)))
    pages = {fragment: dom for fragment, dom in results.items() if isinstance(dom, Dom)}
    failures = {fragment: dom for fragment, dom in results.items() if isinstance(dom, str)}
    return Browser(report, directory, pages, failures)


def visible_ids(dom: Dom) -> list[str]:
    return [row["rid"] for row in dom.rows if row["visible"]]


def test_html_is_self_contained(browser):
    markup = browser.report.read_text(encoding="utf-8")
    assert not re.search(r"""<(script|link|img|iframe)[^>]+(src|href)=""", markup)  # no external assets
    assert "Q&amp;A: harbour dredging" in markup  # escaped in the source, shown as written below


def test_html_state_filter_from_the_address(site, browser):
    dom = browser.dom("state=dead")
    assert len(dom.rows) == 31
    assert set(visible_ids(dom)) == {site.rid(s.name) for s in SPECS if s.states[-1] == "dead"}
    assert all(row["visible"] == (row["state"] == "dead") for row in dom.rows)
    assert dom.shown == "6 shown"

    everything = browser.dom("")
    assert len(visible_ids(everything)) == 31 and everything.shown == "31 shown"
    # Unsorted, the rows are in the report's order: worst first.
    assert [row["rid"] for row in everything.rows] == [row.resource_id for row in site.audits[-1].rows]
    assert everything.sorted_headers == []


def test_html_sort_from_the_address(site, browser):
    original = browser.dom("").rows

    by_source = browser.dom("sort=1&dir=desc")  # the source column (title, or URL), Z to A
    expected = sorted(original, key=lambda row: row["source"], reverse=True)
    assert [row["rid"] for row in by_source.rows] == [row["rid"] for row in expected]
    assert by_source.rows[0]["source"].startswith("withdrawn post")
    assert by_source.rows[-1]["source"].startswith("agency report")
    assert [(i, names.split()[0]) for i, names in by_source.sorted_headers] == [(1, "sorted")]
    assert by_source.shown == "31 shown"

    by_state = browser.dom("sort=0&dir=desc")  # best first
    assert [row["state"] for row in by_state.rows] == sorted(
        (row["state"] for row in original), key=STATES.index, reverse=True)
    assert by_state.rows[0]["state"] == "ok" and by_state.rows[-1]["state"] == "dead"

    # The README's example: the dead ones, latest "failing since" first.
    dead_by_date = browser.dom("state=dead&sort=3&dir=desc")
    dates = [row["failing_since"] for row in dead_by_date.rows if row["visible"]]
    assert len(dates) == 6 and dates == sorted(dates, reverse=True) and dead_by_date.shown == "6 shown"
    ascending = [row["failing_since"] for row in browser.dom("sort=3&dir=asc").rows]
    assert ascending == sorted(ascending)
    assert ascending[0] == f"{site.nights[0]:%Y-%m-%d}" and ascending[-1] == "—"
    assert ascending.count(f"{site.nights[3]:%Y-%m-%d}") == 1  # breaks-last


def test_html_search_from_the_address(site, browser):
    dom = browser.dom("q=http-410")
    assert set(visible_ids(dom)) == {site.rid("gone"), site.rid("archived-410")} and dom.shown == "2 shown"
    assert visible_ids(browser.dom("q=Q%26A%3A%20harbour")) == [site.rid("permalink")]
    both = browser.dom("state=failing&q=bus")
    assert visible_ids(both) == [site.rid("breaks-last")] and both.shown == "1 shown"


def test_html_search_finds_a_titled_source_by_its_url(site, browser):
    dom = browser.dom("q=gone-agency")
    assert visible_ids(dom) == [site.rid("agency")], dom.shown


def test_html_chart_has_one_bar_per_recorded_run(site, browser):
    dom = browser.dom("")
    assert len(dom.chart) == len(site.nights) == 4
    for night, (bar, start) in enumerate(zip(dom.chart, site.nights)):
        titles = {title for title, _, _ in bar}
        assert titles == {f"{start:%Y-%m-%d %H:%M}: {state} {n}" for state, n in expected_counts(night).items()}
        # All 31 sources stacked: the heights add up to the chart's height.
        assert sum(height for _, _, height in bar) == pytest.approx(180, abs=0.5)
    assert [fill for _, fill, _ in dom.chart[3]][-1] == COLOURS["dead"]  # dead on top, only on night 4
    assert all(fill != COLOURS["dead"] for bar in dom.chart[:3] for _, fill, _ in bar)


def test_html_screenshot(browser, tmp_path):
    shot = tmp_path / "audit.png"
    done = chromium(tmp_path / "profile", f"--screenshot={shot}", "--window-size=1200,900", browser.report.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1200, 900)
    assert len(data) > 20_000, len(data)  # text, cards, the chart: not a blank page
    print(f"audit report screenshot: {shot}")
