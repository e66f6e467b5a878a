"""Every way an origin misbehaves ends in the right outcome kind, without hanging,
with bounded memory, and the store holds what it should."""

from __future__ import annotations

import asyncio
import gzip
import socket
import time
import tracemalloc
import zlib

import httpx
import pytest

from fetcher.net.client import HostPools
from fetcher.net.inflate import Incomplete as _Incomplete, Inflater
from tests.conftest import corpus_pdfs, normalised, stored_body
from tests.origin import Origin, gzip_bomb, gzipped, html, redirect, respond, sequence, trickle, truncated

ARTICLE = "<html><head><title>T</title></head><body><article><h1>Report</h1><p>{}</p></article></body></html>"
PARAGRAPH = "The committee published its findings on open models after a year of hearings and study. " * 5


def page(text: str = PARAGRAPH) -> str:
    return ARTICLE.format(text)


def test_404_is_stored_as_a_failure_without_retry(origin, run):
    url = origin.route("/gone", html("<h1>Not here</h1>", status=404))
    r = run()
    snap = r.fetch(url)
    assert (snap.outcome, snap.http_status, snap.attempts) == ("http-404", 404, 1)
    assert not snap.has_content
    assert origin.hits("/gone") == 1
    assert r.store.history(snap.resource_id)[0].outcome == "http-404"


def test_410_is_not_retried(origin, run):
    url = origin.route("/removed", html("bye", status=410))
    snap = run().fetch(url)
    assert (snap.outcome, snap.attempts, origin.hits("/removed")) == ("http-410", 1, 1)


def test_500_then_200_is_retried_and_recovers(origin, run):
    url = origin.route("/flaky", sequence(html("oops", status=500), html(page())))
    r = run(retries=2)
    snap = r.fetch(url)
    assert (snap.outcome, snap.http_status, snap.attempts) == ("ok", 200, 2)
    assert "committee published its findings" in snap.text
    assert origin.hits("/flaky") == 2
    assert len(r.sleep.calls) == 1 and 0 < r.sleep.calls[0] <= 3  # one backoff with jitter


def test_5xx_gives_up_after_the_configured_retries_with_growing_backoff(origin, run):
    url = origin.route("/down", html("down", status=503))
    r = run(retries=3)
    snap = r.fetch(url)
    assert (snap.outcome, snap.http_status, snap.attempts) == ("http-5xx", 503, 4)
    assert origin.hits("/down") == 4
    assert len(r.sleep.calls) == 3
    assert r.sleep.calls[2] >= 4  # 1, 2, 4 seconds plus jitter


def test_429_waits_for_retry_after(origin, run):
    url = origin.route("/busy", sequence(html("slow down", status=429, Retry_After="7"), html(page())))
    r = run(retries=2)
    snap = r.fetch(url)
    assert (snap.outcome, snap.attempts) == ("ok", 2)
    assert r.sleep.calls == [7.0]


def test_429_asking_longer_than_the_cap_is_not_retried(origin, run):
    url = origin.route("/busy", html("slow down", status=429, Retry_After="3600"))
    r = run(retries=2, max_retry_after=60)
    snap = r.fetch(url)
    assert (snap.outcome, snap.attempts, r.sleep.calls) == ("http-429", 1, [])


def test_redirect_chain_is_followed_and_recorded(origin, run):
    origin.route("/a", redirect("/b", 301))
    origin.route("/b", redirect(origin.url("/c"), 302))
    origin.route("/c", html(page()))
    snap = run().fetch(origin.url("/a"))
    assert snap.outcome == "ok"
    assert snap.final_url == origin.url("/c")
    assert [(h.url, h.status) for h in snap.redirects] == [(origin.url("/a"), 301), (origin.url("/b"), 302)]


def test_a_cookie_set_by_a_redirect_is_sent_back_on_the_next_hop(origin, run):
    """A site that sets a cookie and redirects to itself (a cookie check) gets it
    back, as httpx's client does: the downloader's short way to send keeps its jar."""
    origin.route("/check", respond(302, b"", {"Location": "/article", "Set-Cookie": "seen=yes; Path=/"}))
    origin.route("/article", html(page()))
    snap = run().fetch(origin.url("/check"))
    assert snap.outcome == "ok" and snap.final_url == origin.url("/article")
    [article] = [seen for seen in origin.requests if seen.path == "/article"]
    assert article.headers.get("Cookie") == "seen=yes"
    assert "Cookie" not in next(seen for seen in origin.requests if seen.path == "/check").headers


def test_redirect_loop_is_caught(origin, run):
    origin.route("/a", redirect("/b"))
    origin.route("/b", redirect("/a"))
    snap = run().fetch(origin.url("/a"))
    assert snap.outcome == "redirect-loop"
    assert origin.hits("/a") == 1 and origin.hits("/b") == 1


def test_slow_body_past_the_deadline_times_out_without_hanging(origin, run):
    url = origin.route("/slow", trickle(page().encode() * 20, chunk=100, interval=0.05))
    started = time.monotonic()
    snap = run(deadline=0.5, read_timeout=2, retries=1, source_deadline=10).fetch(url)
    elapsed = time.monotonic() - started
    assert snap.outcome == "timeout" and snap.attempts == 2
    assert "deadline" in snap.detail
    assert elapsed < 3, elapsed


def test_truncated_body_is_classified_and_retried(origin, run):
    url = origin.route("/cut", truncated(page().encode()[:200], claimed=5000))
    snap = run(retries=1).fetch(url)
    assert (snap.outcome, snap.attempts) == ("truncated", 2)
    assert not snap.has_content


def test_gzip_bomb_is_stopped_at_the_byte_cap_with_bounded_memory(origin, run):
    url = origin.route("/bomb", gzip_bomb(256 << 20))  # ~250 KB on the wire, 256 MB inflated
    r = run(max_bytes=2 << 20)
    tracemalloc.start()
    try:
        snap = r.fetch(url)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert snap.outcome == "too-large"
    assert peak < 12 << 20, f"peak {peak / 1e6:.1f} MB"


def test_body_over_the_cap_is_too_large_declared_or_not(origin, run):
    big = b"x" * 300_000
    declared = origin.route("/declared", respond(200, big, {"Content-Type": "text/plain"}))

    def undeclared(handler):  # no Content-Length: the cap must hold while streaming
        handler.send_response(200)
        handler.send_header("Content-Type", "text/plain")
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(big)
        handler.close_connection = True

    streamed = origin.route("/streamed", undeclared)
    r = run(max_bytes=100_000)
    first, second = r.fetch(declared), r.fetch(streamed)
    assert first.outcome == "too-large" and "Content-Length" in first.detail
    assert second.outcome == "too-large"


def test_utf8_page_mislabelled_as_latin1_reads_right(origin, run):
    body = page("Le café de la gare, naïve déjà-vu. " * 10).encode("utf-8")
    url = origin.route("/utf8", respond(200, body, {"Content-Type": "text/html; charset=iso-8859-1"}))
    snap = run().fetch(url)
    assert "café de la gare, naïve déjà-vu" in snap.text
    assert "Ã" not in snap.text


def test_cp1252_page_mislabelled_as_utf8_has_no_replacement_characters(origin, run):
    text = "Les “guillemets” du café — naïve façade, où l’on dîne. " * 10
    body = page(text).encode("cp1252")
    url = origin.route("/cp1252", respond(200, body, {"Content-Type": "text/html; charset=utf-8"}))
    snap = run().fetch(url)
    assert "\ufffd" not in snap.text
    assert "naïve façade" in snap.text


def test_pdf_served_as_octet_stream_is_extracted_as_pdf(origin, run):
    data, sentences = corpus_pdfs()["google-doc-document.pdf"]
    url = origin.route("/download?id=7", respond(200, data, {"Content-Type": "application/octet-stream"}))
    snap = run().fetch(url)
    assert snap.outcome == "ok" and snap.size_bytes == len(data)
    for sentence in sentences:
        assert normalised(sentence) in normalised(snap.text)


def test_gzip_encoded_page_is_inflated(origin, run):
    url = origin.route("/gz", gzipped(page().encode()))
    snap = run().fetch(url)
    assert snap.outcome == "ok" and "committee published" in snap.text
    assert snap.size_bytes == len(page().encode())


def test_dns_failure_is_permanent(no_dns, run):
    snap = run(retries=3).fetch("http://no-such-host.invalid/report.pdf")
    assert (snap.outcome, snap.http_status, snap.attempts) == ("dns-error", None, 1)


def test_refused_connection(run):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    snap = run(retries=3).fetch(f"http://127.0.0.1:{port}/")
    assert (snap.outcome, snap.attempts) == ("connect-refused", 1)


def test_tls_failure_is_not_retried(origin, run):
    origin.route("/", html(page()))
    snap = run(retries=3).fetch(f"https://127.0.0.1:{origin.port}/")
    assert (snap.outcome, snap.attempts) == ("tls-error", 1)


def test_empty_page_and_binary_are_classified(origin, run):
    empty = origin.route("/empty", html("<html><body></body></html>"))
    image = origin.route("/logo.png", respond(200, b"\x89PNG\r\n\x1a\n\x00\x00" * 50, {"Content-Type": "image/png"}))
    r = run()
    assert r.fetch(empty).outcome == "empty"
    assert r.fetch(image).outcome == "unsupported-type"


def test_a_gzip_body_of_several_members_is_inflated_whole(origin, run):
    first, second = page("First half of the findings on open models. " * 8), "<p>" + "Second member text. " * 30 + "</p>"
    body = gzip.compress(first.encode()) + gzip.compress(second.encode()) + bytes(8)  # trailing zeros, as some servers send
    url = origin.route("/two", respond(200, body, {"Content-Type": "text/html", "Content-Encoding": "gzip"}))
    r = run()
    snap = r.fetch(url)
    assert snap.outcome == "ok" and snap.size_bytes == len(first) + len(second)
    assert stored_body(r.store, snap.sha256) == (first + second).encode()


def test_inflater_takes_members_split_anywhere_and_keeps_a_single_member_as_sent():
    one = gzip.compress(b"alpha " * 500)
    two = one + gzip.compress(b"beta " * 500)
    for raw, expected, kept in ((one, b"alpha " * 500, one), (two, b"alpha " * 500 + b"beta " * 500, None)):
        inflater = Inflater("gzip", 1 << 20)
        out = b"".join(inflater.feed(raw[i : i + 1]) for i in range(len(raw))) + inflater.finish()
        assert out == expected and inflater.gzip_file() == kept
    inflater = Inflater("deflate", 1 << 20)
    packer = zlib.compressobj(wbits=zlib.MAX_WBITS)
    assert inflater.feed(packer.compress(b"x" * 100) + packer.flush()) + inflater.finish() == b"x" * 100
    assert inflater.gzip_file() is None
    inflater = Inflater("gzip", 1 << 20)
    inflater.feed(two[: len(one) + 5])
    with pytest.raises(_Incomplete):  # a second member cut short is a truncated body
        inflater.finish()


class CountedPools:
    """Real httpx pools, counted as they are made and closed."""

    def __init__(self):
        self.made, self.closed = 0, 0

    def __call__(self) -> httpx.AsyncBaseTransport:
        self.made += 1
        pool, counter = httpx.AsyncHTTPTransport(), self

        class Counted(httpx.AsyncBaseTransport):
            async def handle_async_request(self, request):
                return await pool.handle_async_request(request)

            async def aclose(self):
                counter.closed += 1
                await pool.aclose()

        return Counted()


def test_each_host_keeps_its_connections_and_idle_hosts_are_let_go():
    origins = [Origin(f"127.0.0.{i}") for i in range(2, 7)]
    for server in origins:
        server.__enter__()
        server.route("/p", respond(200, b"x" * 20000))
    try:
        pools = CountedPools()

        async def main():
            async with httpx.AsyncClient(transport=HostPools(pools, keep=2)) as client:
                for _ in range(3):  # the same host again and again: one pool, one connection
                    assert (await client.get(origins[0].url("/p"))).status_code == 200
                async with client.stream("GET", origins[0].url("/p")) as held:  # a response left open ...
                    for server in origins[1:]:
                        await client.get(server.url("/p"))
                    assert pools.closed == 3  # ... keeps its pool: hosts 2, 3 and 4 went instead, oldest first
                    assert len(b"".join([chunk async for chunk in held.aiter_bytes()])) == 20000
                await client.get(origins[1].url("/p"))  # let go earlier: a new pool, and host 1's goes
                assert (pools.made, pools.closed) == (6, 4)

        asyncio.run(main())
        assert (pools.made, pools.closed) == (6, 6)  # the client closed the last two
        assert len({seen.peer for seen in origins[0].requests}) == 1  # 4 requests on one connection
        assert [len({seen.peer for seen in server.requests}) for server in origins[1:]] == [2, 1, 1, 1]
    finally:
        for server in origins:
            server.__exit__(None, None, None)
