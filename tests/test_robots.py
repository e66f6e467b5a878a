"""robots.txt (RFC 9309) as the servers see it: a disallowed page is never
requested, robots.txt is asked once per host per run, 5xx means disallow all,
4xx allow all, Crawl-delay spaces the requests, and the audit calls such a
source blocked rather than dead."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from fetcher.views.audit import build_audit
from fetcher.core.config import Config, FetchSettings, load_config
from fetcher.net.client import make_client
from fetcher.net.download import Downloader
from fetcher.net.hosts import HostSlots
from fetcher.core.models import RunSummary, Snapshot
from fetcher.run.pipeline import Pipeline
from fetcher.net.robots import ROBOTS_MAX_BYTES, product_token
from fetcher.core.sources import make_source
from fetcher.store.sqlite import Store
from tests.conftest import FakeClock, FakeSleep, ScaledClock, write_config
from tests.fake_wayback import FakeWayback
from tests.origin import Origin, Route, gzipped, html, redirect, respond

TEXT = "The committee publishes its annual report on open standards and their adoption. " * 6
PAGE = f"<html><body><article><h1>Annual report</h1><p>{TEXT}</p></article></body></html>"
USER_AGENT = "fetcher/0.1 (cached content previews of cited sources)"


def robots(text: str, status: int = 200) -> Route:
    return respond(status, text.encode(), {"Content-Type": "text/plain"})


def pages(origin: Origin, *paths: str) -> list[str]:
    return [origin.route(path, html(PAGE)) for path in paths]


class World:
    """A config over some sources, a store, and runs of the real pipeline."""

    def __init__(self, tmp_path: Path, urls: list[str], clock: FakeClock | None = None,
                 archive: dict | None = None, **fetch: object):
        self.config: Config = load_config(write_config(tmp_path, urls, archive=archive, **fetch))
        self.store = Store(self.config.storage_dir)
        self.clock = clock

    def pipeline(self) -> Pipeline:
        if self.clock is not None:
            return self.clock.pipeline(self.config, self.store)
        return Pipeline(self.config, self.store, processes=False, sleep=FakeSleep())

    def refresh(self) -> RunSummary:
        async def go() -> RunSummary:
            async with self.pipeline() as pipeline:
                return await pipeline.refresh(list(self.config.sources))

        return asyncio.run(go())

    def fetch(self, url: str) -> Snapshot:
        async def go() -> Snapshot:
            async with self.pipeline() as pipeline:
                return await pipeline.fetch(make_source(url))

        return asyncio.run(go())

    def latest(self, url: str) -> Snapshot:
        snapshot = self.store.latest(make_source(url).resource_id)
        assert snapshot is not None
        return snapshot


@pytest.fixture
def world(tmp_path):
    made: list[World] = []

    def make(urls: list[str], **kwargs: object) -> World:
        made.append(World(tmp_path, urls, **kwargs))
        return made[-1]

    yield make
    for w in made:
        w.store.close()


# -- what is allowed, what is not -------------------------------------------------


def test_a_disallowed_page_is_never_requested_and_an_allowed_one_is_fetched(world, origin):
    origin.route("/robots.txt", robots("User-agent: *\nDisallow: /private/\n"))
    blocked, allowed = pages(origin, "/private/report?year=2025", "/public/report")
    w = world([blocked, allowed])
    summary = w.refresh()

    assert summary.counts == {"robots-blocked": 1, "ok": 1}
    snap = w.latest(blocked)
    assert (snap.outcome, snap.http_status, snap.attempts, snap.has_content) == ("robots-blocked", None, 0, False)
    assert snap.detail == "robots.txt disallows /private/report?year=2025 for fetcher"
    assert origin.hits("/private/report?year=2025") == 0
    assert w.latest(allowed).outcome == "ok" and "open standards" in w.latest(allowed).text
    assert origin.hits("/public/report") == 1
    assert origin.requests[0].path == "/robots.txt"  # asked first
    assert origin.requests[0].headers["User-Agent"] == USER_AGENT


def test_robots_txt_is_fetched_once_per_host_per_run_for_many_sources(world):
    asked = threading.Event()

    def slow_robots(handler: BaseHTTPRequestHandler) -> None:
        asked.set()
        time.sleep(0.1)  # every worker reaches the gate while the one request is in flight
        robots("User-agent: *\nDisallow: /drafts/\n")(handler)

    with Origin("127.0.0.2") as one, Origin("127.0.0.3") as two:
        urls = []
        for origin in (one, two):
            origin.route("/robots.txt", slow_robots)
            urls += pages(origin, *(f"/reports/{n}" for n in range(12)), "/drafts/next")
        w = world(urls, concurrency=8, per_host_concurrency=2)
        first = w.refresh()
        assert first.counts == {"ok": 24, "robots-blocked": 2}
        assert (one.hits("/robots.txt"), two.hits("/robots.txt")) == (1, 1)
        assert one.hits("/reports/0") == 1 and one.hits("/drafts/next") == 0

        w.refresh()  # the next run asks again: robots.txt may have changed overnight
        assert (one.hits("/robots.txt"), two.hits("/robots.txt")) == (2, 2)
    assert asked.is_set()


@pytest.mark.parametrize("status", [500, 503, 429])
def test_a_robots_txt_answering_5xx_or_429_disallows_everything(world, origin, status):
    origin.route("/robots.txt", robots("Temporarily unavailable", status))
    [url] = pages(origin, "/public/report")
    w = world([url], retries=1)
    snap = w.fetch(url)
    assert snap.outcome == "robots-blocked"
    assert snap.detail == f"robots.txt {origin.url('/robots.txt')} answered {status}: treated as disallow all"
    assert origin.hits("/public/report") == 0
    assert origin.hits("/robots.txt") == 2  # a transient answer is retried like any request


@pytest.mark.parametrize("status", [404, 401, 403, 410])
def test_a_robots_txt_answering_4xx_allows_everything(world, origin, status):
    origin.route("/robots.txt", robots("User-agent: *\nDisallow: /\n", status))  # the body of a 4xx means nothing
    [url] = pages(origin, "/public/report")
    snap = world([url]).fetch(url)
    assert snap.outcome == "ok" and origin.hits("/public/report") == 1


def test_robots_txt_redirects_are_followed(world, origin):
    origin.route("/robots.txt", redirect("/site/robots.txt"))
    origin.route("/site/robots.txt", robots("User-agent: *\nDisallow: /private/\n"))
    [url] = pages(origin, "/private/a")
    assert world([url]).fetch(url).outcome == "robots-blocked"
    assert origin.hits("/site/robots.txt") == 1 and origin.hits("/private/a") == 0


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_a_robots_txt_over_500_kib_is_read_up_to_500_kib(world, origin, encoding):
    """As Google does: the first 500 KiB are parsed, the rest is ignored."""
    early = "User-agent: *\nDisallow: /early/\n"
    padding = "# " + "x" * 97 + "\n"
    body = early + padding * (ROBOTS_MAX_BYTES // len(padding) + 100) + "Disallow: /late/\n"
    assert len(body) > ROBOTS_MAX_BYTES + 10_000
    if encoding == "gzip":
        origin.route("/robots.txt", gzipped(body.encode(), "text/plain"))
    else:
        origin.route("/robots.txt", robots(body))
    early_url, late_url = pages(origin, "/early/a", "/late/a")
    w = world([early_url, late_url])
    w.refresh()
    assert w.latest(early_url).outcome == "robots-blocked"
    assert w.latest(late_url).outcome == "ok"  # its rule came after the first 500 KiB
    assert origin.hits("/late/a") == 1


def test_robots_ignore_fetches_a_disallowed_page_without_asking(world, origin):
    origin.route("/robots.txt", robots("User-agent: *\nDisallow: /\n"))
    [url] = pages(origin, "/private/report")
    snap = world([url], robots="ignore").fetch(url)
    assert snap.outcome == "ok"
    assert (origin.hits("/robots.txt"), origin.hits("/private/report")) == (0, 1)


# -- whose rules: the product token ------------------------------------------------


def test_the_product_token_is_the_user_agents_first_word():
    assert product_token(USER_AGENT) == "fetcher"
    assert product_token("Example-Bot/3.1 (+https://example.org)") == "example-bot"
    assert product_token("fetcher") == "fetcher"


@pytest.mark.parametrize(
    ("text", "user_agent", "blocked"),
    [
        ("User-agent: otherbot\nDisallow: /\n", USER_AGENT, False),  # another bot's group does not apply
        ("User-agent: fetcher\nDisallow: /reports/\n", USER_AGENT, True),  # ours does
        ("User-agent: FETCHER\nDisallow: /reports/\n", "Fetcher/2.0", True),  # case-insensitively
        ("User-agent: *\nDisallow: /\n\nUser-agent: fetcher\nAllow: /\n", USER_AGENT, False),  # ours beats *
        ("User-agent: otherbot\nAllow: /\n\nUser-agent: *\nDisallow: /reports/\n", USER_AGENT, True),  # else *
        ("User-agent: fetcher-pro\nDisallow: /\n", USER_AGENT, False),  # a longer token is another bot
    ],
    ids=["other-bot", "our-group", "case", "ours-over-star", "star", "longer-token"],
)
def test_the_group_for_our_product_token_applies(world, origin, text, user_agent, blocked):
    origin.route("/robots.txt", robots(text))
    [url] = pages(origin, "/reports/2025")
    snap = world([url], user_agent=user_agent).fetch(url)
    assert snap.outcome == ("robots-blocked" if blocked else "ok")
    assert origin.hits("/reports/2025") == (0 if blocked else 1)


# -- redirects of the page ---------------------------------------------------------


def test_a_redirect_to_a_disallowed_path_is_not_followed(world, origin):
    origin.route("/robots.txt", robots("User-agent: *\nDisallow: /private/\n"))
    origin.route("/old", redirect("/private/new"))
    pages(origin, "/private/new")
    url = origin.url("/old")
    snap = world([url]).fetch(url)
    assert snap.outcome == "robots-blocked"
    assert snap.detail == "robots.txt disallows /private/new for fetcher"
    assert (origin.hits("/old"), origin.hits("/private/new"), origin.hits("/robots.txt")) == (1, 0, 1)


def test_a_redirect_to_another_host_asks_that_hosts_robots_txt(world):
    with Origin("127.0.0.2") as here, Origin("127.0.0.3") as there:
        there.route("/robots.txt", robots("User-agent: fetcher\nDisallow: /\n"))
        pages(there, "/moved")
        here.route("/report", redirect(there.url("/moved")))
        url = here.url("/report")
        snap = world([url]).fetch(url)
    assert snap.outcome == "robots-blocked"
    assert (here.hits("/robots.txt"), there.hits("/robots.txt"), there.hits("/moved")) == (1, 1, 0)


# -- one pipeline for days (what `fetcher worker` keeps while it serves) ----------


def nights(w: World, clock: FakeClock, url: str, *between: Callable[[], None]) -> list[Snapshot]:
    """Fetch `url` on one pipeline, then again after each of `between` (which moves
    the clock, and may change what the origin says), as a worker does night after night."""

    async def go() -> list[Snapshot]:
        async with w.pipeline() as pipeline:
            seen = [await pipeline.fetch(make_source(url))]
            for step in between:
                step()
                seen.append(await pipeline.fetch(make_source(url)))
            return seen

    return asyncio.run(go())


def test_a_pipeline_kept_for_days_asks_robots_txt_again_after_24_hours(world, origin):
    """RFC 9309 2.4: a robots.txt is not used for more than 24 hours. An owner who
    disallows us today is heard by a worker that has been serving for a week."""
    origin.route("/robots.txt", robots("User-agent: *\nDisallow: /private/\n"))
    [url] = pages(origin, "/public/report")
    clock = FakeClock()
    w = world([url], clock=clock)

    def owner_disallows_it_an_hour_later() -> None:
        clock.advance(hours=1)
        origin.route("/robots.txt", robots("User-agent: *\nDisallow: /public/\n"))

    seen = nights(w, clock, url, owner_disallows_it_an_hour_later, lambda: clock.advance(hours=22, minutes=58),
                  lambda: clock.advance(minutes=3))
    assert [snap.outcome for snap in seen] == ["ok", "ok", "ok", "robots-blocked"]
    assert origin.hits("/robots.txt") == 2  # once, and again once the first answer was a day old
    assert origin.hits("/public/report") == 3


def test_a_robots_txt_that_could_not_be_had_is_asked_again_after_ten_minutes(world, origin):
    """A 5xx (or no answer at all) disallows everything, but only for a while: a
    worker does not keep a host blocked (or dead) for as long as it serves."""
    origin.route("/robots.txt", robots("Down for maintenance", 503))
    [url] = pages(origin, "/public/report")
    clock = FakeClock()
    w = world([url], clock=clock, retries=0)

    def it_comes_back() -> None:
        clock.advance(minutes=5)
        origin.route("/robots.txt", robots("User-agent: *\nDisallow:\n"))

    seen = nights(w, clock, url, it_comes_back, lambda: clock.advance(minutes=6))
    assert [snap.outcome for snap in seen] == ["robots-blocked", "robots-blocked", "ok"]
    assert origin.hits("/robots.txt") == 2 and origin.hits("/public/report") == 1


# -- a host that does not answer ---------------------------------------------------


def test_a_host_whose_robots_txt_gets_no_answer_keeps_that_failure(world):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/report"
    snap = world([url], retries=3).fetch(url)
    assert (snap.outcome, snap.http_status, snap.attempts) == ("connect-refused", None, 1)
    assert snap.detail.startswith(f"robots.txt http://127.0.0.1:{port}/robots.txt: connect-refused ")
    assert snap.detail.endswith("; the page was not requested")


# -- Crawl-delay -------------------------------------------------------------------


def page_starts(origin: Origin, clock: ScaledClock) -> list[float]:
    """Server-side start times of the requests, in the scaled clock's seconds."""
    return [seen.started * clock.speed for seen in origin.requests]


def test_crawl_delay_spaces_the_request_starts(world, origin):
    clock = ScaledClock(speed=20)  # 5 s of crawl delay is 0.25 s of real time
    origin.route("/robots.txt", robots("User-agent: fetcher\nCrawl-delay: 5\nDisallow: /private/\n"))
    urls = pages(origin, "/a", "/b", "/c")
    w = world(urls, clock=clock, per_host_delay=0, per_host_concurrency=2)
    w.refresh()
    assert [seen.path for seen in origin.requests][0] == "/robots.txt"
    starts = page_starts(origin, clock)
    gaps = [later - earlier for earlier, later in zip(starts, starts[1:])]
    # robots.txt, the three pages and the soft-404 probe (a request like any other): all spaced
    assert len(gaps) == 3 + len(origin.unrouted()) and min(gaps) >= 5 - 1, gaps  # 1 s (50 ms real): noise


def test_crawl_delay_is_capped_by_max_crawl_delay(world, origin):
    clock = ScaledClock(speed=50)
    origin.route("/robots.txt", robots("User-agent: *\nCrawl-delay: 100\n"))
    urls = pages(origin, "/a", "/b", "/c")
    w = world(urls, clock=clock, per_host_delay=0.5, max_crawl_delay=3)
    w.refresh()
    starts = page_starts(origin, clock)
    gaps = [later - earlier for earlier, later in zip(starts, starts[1:])]
    assert min(gaps) >= 3 - 1.5, gaps  # 1.5 s (30 ms real) for scheduling noise
    assert max(gaps) < 10, gaps  # not the 100 s asked for
    assert max(clock.sleeps) <= 3


def test_a_crawl_delay_shorter_than_per_host_delay_changes_nothing():
    async def go() -> list[float]:
        clock = FakeClock()
        slots = HostSlots(1, 2.0, clock.monotonic, clock.sleep)
        starts = []
        for _ in range(3):
            async with slots.slot("example.org"):
                starts.append(clock.monotonic())
            slots.crawl_delay("example.org", "https://example.org/robots.txt", 0.5)
        slots.crawl_delay("example.org", "https://example.org/robots.txt", 4.0)
        async with slots.slot("example.org"):
            starts.append(clock.monotonic())
        return [later - earlier for earlier, later in zip(starts, starts[1:])]

    assert asyncio.run(go()) == [2.0, 2.0, 4.0]


def test_a_hosts_spacing_is_the_longest_crawl_delay_its_robots_txt_give_now():
    """Two robots.txt on one host (http and https): the longer delay holds; once
    one is read again without it, the other's; once neither has one, per_host_delay."""
    async def go() -> list[float]:
        clock = FakeClock()
        slots = HostSlots(1, 1.0, clock.monotonic, clock.sleep)
        starts = []

        async def start() -> None:
            async with slots.slot("example.org"):
                starts.append(clock.monotonic())

        await start()
        for robots_url, delay in [("https://example.org/robots.txt", 5.0), ("http://example.org/robots.txt", 3.0),
                                  ("https://example.org/robots.txt", 0.0), ("http://example.org/robots.txt", 0.0)]:
            slots.crawl_delay("example.org", robots_url, delay)
            await start()
        return [later - earlier for earlier, later in zip(starts, starts[1:])]

    assert asyncio.run(go()) == [5.0, 5.0, 3.0, 1.0]


def test_a_pipeline_kept_for_days_lets_go_of_a_crawl_delay_the_owner_removed(world, origin):
    """A worker reads robots.txt again daily: a Crawl-delay the owner has since
    removed no longer spaces its requests to the host (it was kept for the worker's life)."""
    origin.route("/robots.txt", robots("User-agent: *\nCrawl-delay: 5\n"))
    [url] = pages(origin, "/report")
    clock = FakeClock()
    w = world([url], clock=clock)
    waited: list[list[float]] = []

    def a_day_later_without_it() -> None:
        waited.append(list(clock.sleeps))
        clock.sleeps.clear()
        clock.advance(hours=24, minutes=1)
        origin.route("/robots.txt", robots("User-agent: *\n"))

    nights(w, clock, url, a_day_later_without_it)
    waited.append(list(clock.sleeps))
    assert origin.hits("/robots.txt") == 2 and origin.hits("/report") == 2
    # the first day: the page 5 s after robots.txt, the soft-404 probe 5 s after the page
    assert waited == [[5.0, 5.0], []]


# -- the archive stands in; the audit says blocked -------------------------------------


def test_a_robots_blocked_page_is_served_from_the_archive(world, origin):
    clock = FakeClock()
    with FakeWayback("127.0.0.4", clock=clock.monotonic) as wayback:
        origin.route("/robots.txt", robots("User-agent: *\nDisallow: /\n"))
        [url] = pages(origin, "/report")
        wayback.add(url, "20240408194323", PAGE.encode())
        w = world([url], clock=clock, archive={**wayback.settings, "requests_per_minute": 600})
        snap = w.fetch(url)
    assert (snap.origin, snap.outcome, snap.live_outcome) == ("archive", "ok", "robots-blocked")
    assert "open standards" in snap.text
    assert origin.hits("/report") == 0


def test_the_audit_counts_a_robots_blocked_source_as_blocked(world, origin):
    origin.route("/robots.txt", robots("User-agent: *\nDisallow: /private/\n"))
    blocked, fine = pages(origin, "/private/report", "/public/report")
    w = world([blocked, fine])
    w.refresh()
    audit = build_audit(w.config, w.store, list(w.config.sources))
    states = {row.url: (row.state, row.outcome) for row in audit.rows}
    assert states == {blocked: ("blocked", "robots-blocked"), fine: ("ok", "ok")}
    assert not audit.fails("failing")


# -- the Downloader's per-call cap ------------------------------------------------------


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_a_per_call_cap_cuts_or_refuses_a_long_body(origin, encoding):
    body = bytes(range(256)) * 400  # 102,400 bytes
    origin.route("/big", gzipped(body, "text/plain") if encoding == "gzip" else respond(200, body))

    async def go() -> tuple:
        settings = FetchSettings(per_host_delay=0, allow_private_networks=True)
        async with make_client(settings) as client:
            downloader = Downloader(client, settings, HostSlots(2, 0))
            cut = await downloader.get(origin.url("/big"), max_bytes=1000, keep_head=True)
            refused = await downloader.get(origin.url("/big"), max_bytes=1000)
            whole = await downloader.get(origin.url("/big"))
        return cut, refused, whole

    cut, refused, whole = asyncio.run(go())
    assert (cut.outcome.value, cut.body, cut.detail) == ("ok", body[:1000], "body cut at its first 1000 bytes")
    assert (refused.outcome.value, refused.body) == ("too-large", b"")
    assert whole.outcome.value == "ok" and whole.body == body
