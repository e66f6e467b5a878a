"""The fault matrix: hostile servers on loopback, each behaviour asserting the
outcome a user would see, a time bound, and a sound store afterwards; then one
refresh over all of them with ordinary pages among them.

Servers: tests/hostile.py (raw sockets, for what no HTTP library would send) and
tests/origin.py (an HTTP origin that misbehaves on demand).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest

from fetcher.core.config import load_config
from fetcher.run.pipeline import Pipeline
from fetcher.core.sources import make_source, resource_id
from fetcher.store.sqlite import Store
from tests import hostile
from tests.conftest import FakeSleep, assert_sound_store, run_fetcher, write_config
from tests.hostile import PAGE, RawServer
from tests.origin import Origin, gzip_bomb, html, respond, sequence, trickle, truncated

PDF = (Path(__file__).parent / "fixtures" / "pdf" / "002-trivial-libre-office-writer.pdf").read_bytes()
# A source limit well above two attempts, so whether a retry fits never depends on the backoff's jitter.
SETTINGS = {"deadline": 1, "read_timeout": 1, "connect_timeout": 1, "retries": 1, "max_bytes": 16 << 20,
            "source_deadline": 10}


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[RawServer, Origin], str]  # sets the behaviour up, returns the source URL
    outcome: str
    seconds: float  # the most it may take, retries included
    attempts: int | None = None


def _raw(path: str, behaviour: hostile.Behaviour) -> Callable[[RawServer, Origin], str]:
    return lambda server, _: server.route(path, behaviour)


def _http(path: str, route) -> Callable[[RawServer, Origin], str]:
    return lambda _, origin: origin.route(path, route)


def _loop(server: RawServer, _: Origin) -> str:
    server.route("/loop-b", hostile.redirect_to(server.url("/loop-a")))
    return server.route("/loop-a", hostile.redirect_to(server.url("/loop-b")))


def _chain(server: RawServer, _: Origin) -> str:
    for n in range(12):
        server.route(f"/chain/{n}", hostile.redirect_to(server.url(f"/chain/{n + 1}")))
    return server.url("/chain/0")


def _to_refused(server: RawServer, _: Origin) -> str:
    with closing(__import__("socket").create_server(("127.0.0.1", 0))) as spare:
        port = spare.getsockname()[1]  # closed again: nothing listens there now
    return server.route("/to-refused", hostile.redirect_to(f"http://127.0.0.1:{port}/gone"))


CASES = [
    # redirects that lead nowhere usable
    Case("redirect-to-javascript", _raw("/js", hostile.redirect_to("javascript:alert(1)")), "bad-content", 1, 1),
    Case("redirect-to-data-url", _raw("/data", hostile.redirect_to("data:text/html,<p>hi</p>")), "bad-content", 1, 1),
    Case("redirect-to-unparsable", _raw("/v6", hostile.redirect_to("http://[::1")), "bad-content", 1, 1),
    Case("redirect-70kb-location", _raw("/long", hostile.redirect_to("http://x.test/" + "a" * 70_000)), "bad-content", 1, 1),
    Case("redirect-to-ftp", _raw("/ftp", hostile.redirect_to("ftp://127.0.0.1/file")), "bad-content", 1, 1),
    Case("redirect-without-location", _raw("/nowhere", hostile.answer(302)), "bad-content", 1, 1),
    Case("redirect-loop", _loop, "redirect-loop", 1, 1),
    Case("redirect-chain-of-12", _chain, "redirect-loop", 1, 1),
    Case("redirect-to-closed-port", _to_refused, "connect-refused", 1, 1),
    # statuses
    Case("not-found", _raw("/404", hostile.answer(404, b"gone")), "http-404", 1, 1),
    Case("gone", _raw("/410", hostile.answer(410)), "http-410", 1, 1),
    Case("forbidden", _raw("/403", hostile.answer(403)), "http-403", 1, 1),
    Case("teapot", _raw("/418", hostile.answer(418)), "http-4xx", 1, 1),
    Case("server-error-always", _raw("/500", hostile.answer(500)), "http-5xx", 1, 2),
    Case("server-error-then-ok", lambda _, origin: origin.route("/flaky", sequence(respond(503), html(PAGE))), "ok", 1, 2),
    Case("rate-limited-for-a-day", _raw("/429", hostile.answer(429, Retry_After="86400")), "http-429", 1, 1),
    Case("status-999", _raw("/999", hostile.answer(999)), "http-5xx", 1, 2),
    # the connection and the framing
    Case("close-without-answer", _raw("/close", hostile.close_at_once), "network-error", 1, 2),
    Case("reset-at-once", _raw("/rst", hostile.reset), "network-error", 1, 2),
    Case("reset-mid-body", _raw("/rst-body", hostile.reset_mid_body), "network-error", 1.5, 2),
    Case("garbage-status-line", _raw("/garbage", hostile.raw(b"HELLO THERE\r\n\r\n")), "network-error", 1, 2),
    Case("binary-garbage", _raw("/noise", hostile.raw(bytes(range(256)) * 8)), "network-error", 1, 2),
    Case("silent-server", _raw("/silent", hostile.silent(5)), "timeout", 3, 2),
    Case("headers-never-end", _raw("/slow-head", hostile.trickle_headers(5)), "timeout", 3, 2),
    Case("body-trickled-past-deadline", _http("/trickle", trickle(PAGE * 4, 64, 0.05)), "timeout", 3, 2),
    Case("truncated-body", _http("/cut", truncated(PAGE[:300], 5000)), "truncated", 1, 2),
    Case("chunk-size-not-hex", _raw("/bad-chunk", hostile.chunked(hostile.chunk(PAGE[:100]), b"zz\r\nxx\r\n")),
         "network-error", 1, 2),
    Case("chunked-without-last-chunk", _raw("/no-last", hostile.chunked(hostile.chunk(PAGE))), "truncated", 1, 2),
    Case("header-of-70kb", _raw("/fat-header", hostile.answer(200, PAGE, X_Fat="a" * 70_000)), "ok", 1, 1),
    Case("header-of-200kb", _raw("/fatter-header", hostile.answer(200, PAGE, X_Fat="a" * 200_000)), "bad-content", 1, 1),
    Case("header-with-nul", _raw("/nul-header", hostile.raw(b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\n\r\n")),
         "network-error", 1, 2),
    # sizes and encodings
    Case("gzip-bomb", _http("/bomb", gzip_bomb(256 << 20)), "too-large", 2, 1),
    Case("content-length-over-cap", _http("/huge", respond(200, b"x" * 10, {"Content-Length": str(50 << 20)})),
         "too-large", 1, 1),
    Case("body-over-cap-unannounced", _raw("/stream", hostile.close_delimited(b"<p>" + b"x" * (17 << 20))), "too-large", 2, 1),
    Case("gzip-garbage", _raw("/gz-garbage", hostile.gzip_garbage), "decode-error", 1, 1),
    Case("gzip-cut-short", _raw("/gz-cut", hostile.gzip_cut), "truncated", 1, 2),
    Case("unknown-content-encoding", _raw("/br", hostile.answer(200, b"\x8b\x00", Content_Encoding="zstd-x")),
         "decode-error", 1, 1),
    # what the body is
    Case("an-image", _raw("/png", hostile.answer(200, b"\x89PNG\r\n\x1a\n" + bytes(64), "image/png")),
         "unsupported-type", 1, 1),
    Case("empty-200", _raw("/empty", hostile.answer(200, b"")), "empty", 1, 1),
    Case("markup-without-text", _raw("/bare", hostile.answer(200, b"<html><body><div></div></body></html>")),
         "empty", 1, 1),
    Case("broken-pdf", _raw("/broken.pdf", hostile.answer(200, b"%PDF-1.7\n" + bytes(range(256)) * 40, "application/pdf")),
         "extract-failed", 2, 1),
    Case("pdf-labelled-html", _raw("/pdf-as-html", hostile.answer(200, PDF, "text/html")), "ok", 2, 1),
    Case("pdf-as-octet-stream", _raw("/pdf-bin", hostile.answer(200, PDF, "application/octet-stream")), "ok", 2, 1),
    Case("html-labelled-pdf", _raw("/html-as-pdf", hostile.answer(200, PAGE, "application/pdf")), "ok", 1, 1),
    Case("400000-paragraphs", _raw("/paragraphs", hostile.answer(200, b"<html><body>" + b"<p>a</p>" * 400_000 + b"</body></html>")),
         "ok", 8, 1),  # 3.2 MB: 61 s and 724 MB in trafilatura before; now read as plain text
    Case("attribute-of-10mb", _raw("/attribute", hostile.answer(200, PAGE.replace(b"<article>", b'<article data-x="' + b"x" * 10_000_000 + b'">'))),
         "ok", 6, 1),
    Case("http-1.0-close-delimited", _raw("/old", hostile.close_delimited(PAGE)), "ok", 1, 1),
    Case("latin-1-labelled-utf-8", _raw("/latin1", hostile.answer(200, PAGE.replace(b"report", "r\xe9port".encode("latin-1")))),
         "ok", 1, 1),
    Case("url-70000-characters", lambda server, _: server.url("/" + "p" * 70_000), "bad-content", 1, 1),
]


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[RawServer, Origin]]:
    with RawServer("127.0.0.1") as server, Origin("127.0.0.2") as origin:
        yield server, origin


def fetch(tmp_path: Path, url: str, **settings):
    config = load_config(write_config(tmp_path, **{**SETTINGS, **settings}))
    store = Store(config.storage_dir)

    async def go():
        async with Pipeline(config, store, processes=False, sleep=FakeSleep()) as pipeline:
            return await pipeline.fetch(make_source(url))

    try:
        started = time.monotonic()
        snapshot = asyncio.run(go())
        return snapshot, time.monotonic() - started, config.storage_dir
    finally:
        store.close()


def test_the_matrix_has_at_least_forty_behaviours():
    assert len({case.name for case in CASES}) == len(CASES) >= 40


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_a_hostile_source_ends_in_its_outcome_in_bounded_time_with_a_sound_store(tmp_path, servers, case):
    url = case.make(*servers)
    snapshot, took, storage = fetch(tmp_path, url)
    assert snapshot.outcome == case.outcome, snapshot.detail
    assert took < case.seconds, took
    if case.attempts is not None:
        assert snapshot.attempts == case.attempts, snapshot.detail
    assert assert_sound_store(storage) == [(resource_id(url), case.outcome)]
    assert snapshot.has_content == (case.outcome == "ok")


def test_a_trickling_source_is_held_no_longer_than_its_source_deadline(tmp_path, servers):
    """deadline 0.6 s a request, 3 retries: without the source limit, 4 × 0.6 s and
    the backoff between; with a 1 s limit, one attempt (no room left for a retry)."""
    _, origin = servers
    url = origin.route("/trickle-long", trickle(PAGE * 8, 32, 0.05))
    snapshot, took, storage = fetch(tmp_path, url, deadline=0.6, retries=3, source_deadline=1.0)
    assert (snapshot.outcome, snapshot.attempts) == ("timeout", 1)
    assert took < 1.0 + 0.3, took
    assert_sound_store(storage)


def test_the_source_deadline_cuts_an_attempt_in_flight(tmp_path, servers):
    """A request deadline longer than the source's own limit: the limit wins."""
    _, origin = servers
    url = origin.route("/trickle-longer", trickle(PAGE * 8, 32, 0.05))
    snapshot, took, storage = fetch(tmp_path, url, deadline=5, read_timeout=5, retries=3, source_deadline=1.0)
    assert snapshot.outcome == "timeout" and "source_deadline" in snapshot.detail, snapshot.detail
    assert 1.0 <= took < 1.5, took
    assert_sound_store(storage)


def test_a_url_with_a_control_character_is_refused_by_the_config_with_one_line(tmp_path):
    config = write_config(tmp_path, ["http://127.0.0.1:9/a\x7fb"])
    done = run_fetcher(tmp_path, "--config", str(config), "refresh")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ") and "control character" in done.stderr
    assert not (tmp_path / "snapshots").exists()


def test_the_downloader_calls_a_control_character_in_a_url_bad_content(tmp_path, servers):
    """A URL that reaches the downloader some other way (a document's links) is
    still a classified failure, never a traceback."""
    server, _ = servers
    from fetcher.core.models import Source

    config = load_config(write_config(tmp_path, **SETTINGS))
    store = Store(config.storage_dir)

    async def go():
        async with Pipeline(config, store, processes=False, sleep=FakeSleep()) as pipeline:
            return await pipeline.fetch(Source(server.url("/a\x7fb"), "0123456789abcdef"))

    try:
        snapshot = asyncio.run(go())
    finally:
        store.close()
    assert (snapshot.outcome, snapshot.attempts) == ("bad-content", 1)
    assert "non-printable" in snapshot.detail
