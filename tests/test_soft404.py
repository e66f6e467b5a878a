"""Soft 404s in any language, found by asking each host once per run for a path
that cannot exist and comparing (fetcher/soft404.py): error pages in English,
German and one that echoes the path are caught with no phrase list; the 181
real articles of the shared corpus are never flagged, whether their hosts answer
unknown paths with a 404 or with their home page; one probe per host per run,
none when nothing new needs checking."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from functools import cache
from http.server import BaseHTTPRequestHandler
from itertools import combinations
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from fetcher.extract.soft404 import soft_404_reason
from fetcher.views.audit import build_audit
from fetcher.core.config import load_config
import fetcher.extract.extractor
from fetcher.extract.document import extract
from fetcher.core.models import Extracted, Snapshot
from fetcher.core.outcomes import Outcome
from fetcher.core.sources import make_source
from fetcher.extract.soft404 import ALIKE, Seen, is_home, looks_like_probe, origin_of, shingles, similarity, url_words
from fetcher.store.sqlite import Store
from tests.conftest import FIXTURES, FakeClock, FakeSleep, Run, corpus_pdfs, write_config
from tests.fake_wayback import FakeWayback
from tests.origin import SOFT_404_PROBE, Origin, Route, conditional, html, redirect, respond

CORPUS = FIXTURES / "corpus"
CAPTURE = "20240101120000"


@dataclass(frozen=True)
class Article:
    key: str
    html: bytes
    path: str  # the original URL's path and query: where a test origin serves it


@cache
def articles() -> tuple[Article, ...]:
    """The 181 articles of the shared corpus (scripts and styles stripped; see fixtures/README.md)."""
    urls = json.loads((CORPUS / "urls.json").read_text(encoding="utf-8"))
    found = []
    for key, url in sorted(urls.items()):
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        found.append(Article(key, gzip.decompress((CORPUS / f"{key}.html.gz").read_bytes()), path))
    return tuple(found)


def refresh(tmp_path: Path, urls: list[str], store_dir: str = "run", processes: bool = False,
            archive: dict[str, Any] | None = None, **fetch: Any) -> tuple[dict[str, Snapshot], dict[str, str]]:
    """One real refresh of `urls` (a fresh run, the store kept in tmp_path/store_dir):
    the snapshot and the audit's state of each URL."""
    directory = tmp_path / store_dir
    directory.mkdir(exist_ok=True)
    config = load_config(write_config(directory, urls, archive=archive, **fetch))
    store = Store(config.storage_dir)
    try:
        done = Run(config, store, FakeSleep()).refresh(processes)
        states = {row.url: row.state for row in build_audit(config, store, list(config.sources)).rows}
    finally:
        store.close()
    return done, states


# -- the comparison, on its own -------------------------------------------------------------------------

ERROR_TEXT = "Oops!\nSorry, we couldn't find {path}. Try the search box or go back to the front page."


def test_an_error_page_that_echoes_the_path_it_was_asked_for_reads_like_the_probe():
    page = Seen("http://v.test/news/2024/budget-vote", "http://v.test/news/2024/budget-vote", "Oops!",
                ERROR_TEXT.format(path="/news/2024/budget-vote"))
    probe = Seen("http://v.test/0f3a9c", "http://v.test/0f3a9c", "Oops!", ERROR_TEXT.format(path="/0f3a9c"))
    assert similarity(page.text, probe.text) < ALIKE  # the echo alone would hide it...
    assert looks_like_probe(page, probe) == 1.0  # ...but the URLs' words are left out


def test_an_echo_in_the_title_is_left_out_too_and_percent_encoding_is_undone():
    page = Seen("http://v.test/stra%C3%9Fe/neu", "http://v.test/stra%C3%9Fe/neu", "straße/neu: nicht gefunden",
                "Diese Seite existiert leider nicht: /straße/neu")
    probe = Seen("http://v.test/abc123", "http://v.test/abc123", "abc123: nicht gefunden",
                 "Diese Seite existiert leider nicht: /abc123")
    assert url_words(page.url) == {"straße", "neu"}
    assert looks_like_probe(page, probe) == 1.0


def test_the_same_title_alone_is_not_a_soft_404():
    probe = Seen("http://v.test/abc", "http://v.test/abc", "Valley Gazette", ERROR_TEXT.format(path="/abc"))
    page = Seen("http://v.test/story", "http://v.test/story", "Valley Gazette",
                "The council voted on Tuesday to approve the budget for next year, after a long debate.")
    assert looks_like_probe(page, probe) is None


def test_the_same_text_under_another_title_is_not_a_soft_404():
    """A blog whose home page shows its latest post in full, and answers unknown
    paths with its home page: the post's own page has the post's title."""
    post = "A long post about gardening. " * 20
    probe = Seen("http://b.test/abc", "http://b.test/abc", "My garden blog", post)
    page = Seen("http://b.test/2024/tomatoes", "http://b.test/2024/tomatoes", "Tomatoes in May", post)
    assert similarity(page.text, probe.text) == 1.0
    assert looks_like_probe(page, probe) is None


def test_home_pages_and_origins():
    assert all(is_home(url) for url in ("http://a.test", "http://a.test/", "http://a.test/index.html", "http://a.test/Default.aspx"))
    assert not any(is_home(url) for url in ("http://a.test/?p=12", "http://a.test/news/", "http://a.test/indexes"))
    assert origin_of("HTTPS://User@News.Example:8443/a/b?c") == "https://news.example:8443"


# -- (a) error pages served as 200, in any language -----------------------------------------------------

def valley_gazette(path: str) -> str:
    return ("<html><head><title>Page not found | Valley Gazette</title></head><body><nav><a href='/'>Home</a> "
            "<a href='/news/'>News</a></nav><main><h1>Oops!</h1><p>Sorry, we couldn't find that page.</p></main>"
            "<footer>© 2024 Valley Gazette</footer></body></html>")


def talbote(path: str) -> str:
    return ("<html><head><title>Seite nicht gefunden | Talbote</title></head><body><nav><a href='/'>Start</a></nav>"
            "<main><h1>Hoppla</h1><p>Diese Seite existiert leider nicht.</p></main></body></html>")


def echoing(path: str) -> str:
    """An error page that names the path it could not find, in its title and its text."""
    return (f"<html><head><title>{path} – nicht gefunden</title></head><body><main><h1>Nicht gefunden: {path}</h1>"
            f"<p>Die Adresse {path} gibt es auf diesem Server nicht (mehr). Bitte prüfen Sie die Schreibweise.</p>"
            "</main></body></html>")


def for_any_path(page: Callable[[str], str]) -> Route:
    def route(handler: BaseHTTPRequestHandler) -> None:
        html(page(handler.path))(handler)

    return route


ERROR_SITES = {"127.0.0.31": valley_gazette, "127.0.0.32": talbote, "127.0.0.33": echoing}
DEEP_LINKS = ("/news/2024/05/budget-vote", "/politik/gemeinderat-beschliesst-haushalt.html")


@pytest.mark.parametrize("page", ERROR_SITES.values(), ids=ERROR_SITES.keys())
def test_the_phrase_rule_alone_misses_these_error_pages(page):
    for path in DEEP_LINKS:
        url = f"http://127.0.0.1{path}"
        found = extract(page(path).encode(), "text/html; charset=utf-8", url)
        assert found.outcome is Outcome.OK and soft_404_reason(url, url, found.title, found.text) is None


def test_error_pages_served_as_200_in_any_language_are_soft_404s_and_the_archive_stands_in(tmp_path):
    real = articles()[0]
    with ExitStack() as stack:
        wayback = stack.enter_context(FakeWayback("127.0.0.39"))
        origins = [stack.enter_context(Origin(ip, default=for_any_path(page))) for ip, page in ERROR_SITES.items()]
        deep, fine, archived = [], [], []
        for origin in origins:
            fine.append(origin.route(real.path, html(real.html)))
            deep += [origin.url(path) for path in DEEP_LINKS]
        for url in deep[:4]:  # the echoing host's pages have no capture: they stay soft 404s with no content
            wayback.add(url, CAPTURE, f"<html><body><article><p>{'Archived budget story. ' * 30}</p></article></body></html>".encode())
            archived.append(url)
        snaps, states = refresh(tmp_path, deep + fine, archive={**wayback.settings, "requests_per_minute": 6000})
    for url in deep:
        snap = snaps[url]
        assert (snap.live_status, snap.live_outcome) == (200, "bad-content"), snap
        if url in archived:
            assert (snap.origin, snap.outcome, snap.archive_outcome) == ("archive", "ok", "ok")
            assert "Archived budget story." in snap.text
        else:
            assert (snap.origin, snap.outcome, snap.sha256) == ("live", "bad-content", None)
        assert snap.detail.removeprefix("live: ").startswith(
            "soft 404: reads like what the host answers for a path that cannot exist"), snap.detail
        assert states[url] == "soft-404"  # as the audit reports it
    for url in fine:
        assert (snaps[url].origin, snaps[url].outcome, states[url]) == ("live", "ok", "ok"), snaps[url]
    for origin in origins:  # the deep links, and one probe
        probes = [path for path in origin.unrouted() if SOFT_404_PROBE.fullmatch(path)]
        assert len(probes) == 1 and len(origin.unrouted()) == len(DEEP_LINKS) + 1, origin.unrouted()


def test_a_host_that_redirects_unknown_paths_to_its_index_page(tmp_path):
    """The redirect-to-home rule sees only `/`; the probe lands where deep links do, so
    a deep link redirected to /index.html is caught too, and /index.html itself is not."""
    home = "<html><head><title>Valley Gazette</title></head><body><main><h1>Today</h1><p>{}</p></main></body></html>"
    with Origin("127.0.0.34", default=redirect("/index.html", 302)) as origin:
        index = origin.route("/index.html", html(home.format("Headlines of the day, with a short line on each story. " * 20)))
        story = origin.route(articles()[1].path, html(articles()[1].html))
        deep, root = origin.url("/news/2019/removed-story"), origin.url("/")  # "/" too redirects to /index.html
        snaps, states = refresh(tmp_path, [deep, index, story, root])
    assert snaps[deep].live_outcome == "bad-content" and states[deep] == "soft-404", snaps[deep]
    assert snaps[deep].detail.startswith("soft 404: reads like what the host answers for a path that cannot exist")
    assert [snaps[url].outcome for url in (index, story, root)] == ["ok"] * 3
    assert snaps[root].final_url == index
    assert len([path for path in origin.unrouted() if SOFT_404_PROBE.fullmatch(path)]) == 1


# -- (b), (c) no false positive on the 181 real articles of the shared corpus ---------------------------

CORPUS_HOSTS = [f"127.0.0.{n}" for n in range(21, 27)]


@dataclass(frozen=True)
class CorpusRun:
    snaps: dict[str, Snapshot]
    states: dict[str, str]
    unrouted: dict[str, list[str]]  # per host: the paths asked for that no article lives at
    seconds: float


def serve_corpus(tmp_path: Path, name: str, default: Callable[[list[Article]], Route] | None) -> CorpusRun:
    """Every corpus article at its original path, spread over six loopback hosts whose
    unknown paths answer `default(articles of the host)` (None: a plain 404), in one refresh."""
    shares = {ip: list(articles()[n :: len(CORPUS_HOSTS)]) for n, ip in enumerate(CORPUS_HOSTS)}
    with ExitStack() as stack:
        origins = [stack.enter_context(Origin(ip, default=default(shares[ip]) if default else None)) for ip in CORPUS_HOSTS]
        urls = [origin.route(article.path, html(article.html)) for origin in origins for article in shares[origin.ip]]
        assert len(set(urls)) == len(articles()) == 181
        started = time.perf_counter()
        snaps, states = refresh(tmp_path, urls, store_dir=name, processes=False, concurrency=8)
        seconds = time.perf_counter() - started
    return CorpusRun(snaps, states, {origin.ip: origin.unrouted() for origin in origins}, seconds)


@pytest.fixture(scope="module")
def same_bytes_extracted_once() -> Iterator[None]:
    """The two corpus refreshes serve the same 181 bodies: the second reuses what the
    real extractor made of each (text, title, language and date depend only on the
    bytes and the content type), so it takes a second or two, not a dozen. Probe
    answers are new bytes and are extracted for real."""
    real, seen = fetcher.extract.extractor.extract, {}

    def once(body: bytes, content_type: str | None, url: str | None) -> Extracted:
        key = (hashlib.sha256(body).digest(), content_type)
        if key not in seen:
            seen[key] = real(body, content_type, url)
        return seen[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fetcher.extract.extractor, "extract", once)
        yield


@pytest.fixture(scope="module")
def honest_hosts(tmp_path_factory: pytest.TempPathFactory, same_bytes_extracted_once: None) -> CorpusRun:
    return serve_corpus(tmp_path_factory.mktemp("honest"), "honest", None)


def assert_none_flagged(run: CorpusRun) -> None:
    assert len(run.snaps) == 181
    flagged = {url: snap.detail for url, snap in run.snaps.items() if (snap.outcome, run.states[url]) != ("ok", "ok")}
    assert not flagged, flagged
    for host, paths in run.unrouted.items():  # exactly one probe per host, shared by its ~30 sources
        assert len(paths) == 1 and SOFT_404_PROBE.fullmatch(paths[0]), (host, paths)


def test_no_corpus_article_is_a_soft_404_on_hosts_whose_unknown_paths_answer_404(honest_hosts):
    assert_none_flagged(honest_hosts)
    print(f"181 articles over {len(CORPUS_HOSTS)} hosts (unknown paths: 404) in {honest_hosts.seconds:.1f}s")


def test_no_two_corpus_articles_read_alike(honest_hosts):
    """The text measure alone, on every pair of the 181 articles as extracted (pages
    of one site share a template): none comes near the threshold."""
    sets = [shingles(snap.text) for snap in honest_hosts.snaps.values()]
    worst = max(len(a & b) / len(a | b) for a, b in combinations(sets, 2))
    assert worst < ALIKE / 2, worst
    print(f"highest similarity between two corpus articles: {worst:.3f} (soft 404 at {ALIKE})")


def front_page(share: list[Article]) -> Route:
    return html(front_body(share))


def front_body(share: list[Article]) -> bytes:
    """A news front page: the headline and the start of the first paragraph of each of the host's articles."""
    teasers = [b"<article><h2><a href='%s'>%s</a></h2><p>%s</p></article>"
               % (article.path.encode(), first(rb"<title[^>]*>(.*?)</title>", article.html),
                  first(rb"<p(?:\s[^>]*)?>(.*?)</p>", article.html)[:400])
               for article in share]
    return (b"<html><head><title>Loopback Daily: front page</title></head><body><nav><a href='/'>Home</a>"
            b"<a href='/news/'>News</a></nav><main><h1>Today</h1>" + b"".join(teasers) + b"</main></body></html>")


def first(pattern: bytes, page: bytes) -> bytes:
    """The first match's group, its tags removed."""
    found = re.search(pattern, page, re.IGNORECASE | re.DOTALL)
    return re.sub(rb"<[^>]*>", b"", found.group(1)).strip() if found else b""


def test_no_corpus_article_is_a_soft_404_on_hosts_whose_unknown_paths_answer_their_home_page(
    tmp_path, honest_hosts, same_bytes_extracted_once
):
    run = serve_corpus(tmp_path, "home", front_page)
    assert_none_flagged(run)
    # Not only the titles differ: no article's text comes near its host's front page either.
    fronts = {ip: extract(front_body(list(articles()[n :: len(CORPUS_HOSTS)])), "text/html", None)
              for n, ip in enumerate(CORPUS_HOSTS)}
    assert all(front.outcome is Outcome.OK and len(front.text) > 1000 for front in fronts.values())
    worst = max(similarity(snap.text, fronts[urlsplit(url).hostname].text) for url, snap in run.snaps.items())
    assert worst < ALIKE / 2, worst
    print(f"181 articles over {len(CORPUS_HOSTS)} hosts (unknown paths: 200 + front page) in {run.seconds:.1f}s")


# -- (d) the cost: at most one probe per host per run, none when nothing new is checked -------------------

def test_one_probe_per_host_per_run_and_none_for_a_304_an_unchanged_body_or_a_pdf(tmp_path):
    story = "<html><head><title>{0}</title></head><body><article><h1>{0}</h1><p>{1}</p></article></body></html>"
    bodies = {f"/story/{n}": story.format(f"Story {n}", f"Paragraph {n} of the story. " * 40) for n in range(6)}
    pdf, _ = next(iter(corpus_pdfs().values()))
    with Origin("127.0.0.41", latency=0.05) as news, Origin("127.0.0.42") as papers:
        for n, (path, body) in enumerate(bodies.items()):  # half honour validators, half always resend
            news.route(path, conditional(news, body, etag=f'"v{n}"', honour=n % 2 == 0))
        urls = [news.url(path) for path in bodies] + [papers.route("/report.pdf", respond(200, pdf, {"Content-Type": "application/pdf"}))]

        def run() -> tuple[list[str], list[str], dict[str, Snapshot]]:
            """One refresh: the probe paths each host was asked for in it, and the snapshots."""
            before = len(news.requests), len(papers.requests)
            snaps, _ = refresh(tmp_path, urls, concurrency=8, per_host_concurrency=4)
            return probes(news, before[0]), probes(papers, before[1]), snaps

        first_news, first_papers, first = run()
        again_news, again_papers, again = run()
        news.route("/story/1", html(bodies["/story/1"].replace("Paragraph 1", "Corrected paragraph 1")))
        changed_news, _, changed = run()
    assert all(snap.outcome == "ok" for snap in first.values())
    assert len(first_news) == 1 and first_papers == []  # six new pages share one probe; a PDF needs none
    assert {snap.http_status for snap in again.values()} == {200, 304} and not any(s.changed for s in again.values())
    assert again_news == [] and again_papers == []  # 304s and unchanged bodies: nothing to check
    assert [url for url, snap in changed.items() if snap.changed] == [news.url("/story/1")]
    assert len(changed_news) == 1 and changed_news != first_news  # a new run asks again, with a new random path


def probes(origin: Origin, since: int) -> list[str]:
    return [seen.path for seen in origin.requests[since:] if SOFT_404_PROBE.fullmatch(seen.path)]


def test_a_pipeline_kept_for_days_asks_each_host_its_made_up_path_again_after_24_hours(tmp_path):
    """`fetcher worker` keeps one engine for as long as it serves: what a host
    answered for a made-up path is used for a day at most (sites change their
    error pages too), not for the worker's whole life."""
    story = "<html><head><title>Story</title></head><body><article><h1>Story</h1><p>{0}</p></article></body></html>"
    clock = FakeClock()
    with Origin("127.0.0.43") as news:
        url = news.route("/story", html(story.format("First telling of the story. " * 40)))
        config = load_config(write_config(tmp_path, [url]))
        store = Store(config.storage_dir)

        async def days() -> list[bool]:
            changed = []
            async with clock.pipeline(config, store) as pipeline:
                for n, hours in enumerate((0, 1, 22, 2)):  # fetched now, 1 h later, 23 h later, 25 h later
                    clock.advance(hours=hours)
                    news.route("/story", html(story.format(f"Telling number {n} of the story. " * 40)))
                    changed.append((await pipeline.fetch(make_source(url))).changed)
            return changed

        try:
            changed = asyncio.run(days())
        finally:
            store.close()
    asked = probes(news, 0)
    assert changed == [True, True, True, True]  # each text new: each checked against the probe
    assert len(asked) == 2 and asked[0] != asked[1]  # the first day's probe, then a new one
