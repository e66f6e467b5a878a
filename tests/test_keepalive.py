"""A check that finds nothing new keeps its connection: the bodies of 304s,
redirects and error answers are read (up to 64 KiB) so the connection goes back
to the pool, counted by the server as the TCP connections it accepted; and a
night on which nothing changed starts no extraction process."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.conftest import run_fetcher, server_tls_context, write_config
from tests.origin import Origin, conditional, respond, trickle

SOURCES = 20
PER_HOST = 2  # per_host_concurrency's default, written into the config


def _refresh(directory: Path) -> dict:
    result = run_fetcher(directory, "refresh", "--all", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _sources(origin: Origin, route_for) -> list[str]:
    return [origin.route(f"/page/{n}", route_for(n)) for n in range(SOURCES)]


def test_twenty_unchanged_checks_of_one_host_open_at_most_per_host_concurrency_connections(tmp_path):
    with Origin("127.0.0.1") as origin:
        urls = _sources(origin, lambda n: conditional(origin, f"<p>Page {n} says something.</p>" * 20, etag=f'"v{n}"'))
        write_config(tmp_path, urls, per_host_concurrency=PER_HOST)
        _refresh(tmp_path)  # the first night: every page is new
        before, asked = origin.connections, len(origin.requests)
        summary = _refresh(tmp_path)
        second = origin.requests[asked:]
    assert summary["unchanged"] == SOURCES
    assert sum(seen.headers.get("If-None-Match") is not None for seen in second) == SOURCES  # 20 conditional checks
    assert 1 <= origin.connections - before <= PER_HOST


@pytest.mark.parametrize("status", [404, 500])
def test_twenty_error_answers_of_one_host_open_at_most_per_host_concurrency_connections(tmp_path, status):
    with Origin("127.0.0.1") as origin:
        page = b"<html><body><h1>Something went wrong</h1>" + b"<p>Sorry.</p>" * 200 + b"</body></html>"
        urls = _sources(origin, lambda n: respond(status, page))
        write_config(tmp_path, urls, per_host_concurrency=PER_HOST, retries=0)
        summary = _refresh(tmp_path)
    assert summary["failed"] == SOURCES
    assert len(origin.requests) == SOURCES + 1  # robots.txt (a 404 too) and every page, once
    assert 1 <= origin.connections <= PER_HOST


def test_an_error_body_over_64_kib_is_not_read_its_connection_closed(tmp_path):
    with Origin("127.0.0.1") as origin:
        urls = _sources(origin, lambda n: respond(404, b"x" * (65 * 1024)))[:4]
        write_config(tmp_path, urls, per_host_concurrency=1, retries=0)
        summary = _refresh(tmp_path)
    assert summary["failed"] == 4
    assert len(origin.requests) == 5  # robots.txt and 4 pages
    assert origin.connections == 4  # robots.txt's small 404 leaves its connection to the first page; then one a page


@pytest.mark.parametrize("deadline", [0.5, 30])
def test_an_error_body_trickled_forever_is_not_waited_for_and_the_answer_is_the_error(tmp_path, run, deadline):
    """The drain stops at the deadline, or after a second (DRAIN_SECONDS) if that comes first."""
    with Origin("127.0.0.1") as origin:
        url = origin.route("/slow-404", _trickled_error(404))
        started = time.monotonic()
        snapshot = run(deadline=deadline, read_timeout=5, retries=0).fetch(url)
        took = time.monotonic() - started
    assert snapshot.outcome == "http-404"
    assert took < 2.5


def _trickled_error(status: int):
    """An error answer whose 44 KB body comes 8 bytes every 0.05 s (about 5 minutes in all)."""
    body = b"<p>slow</p>" * 4000
    send = trickle(body, 8, 0.05)

    def route(handler) -> None:
        handler.send_response = lambda code, message=None, _send=handler.send_response: _send(status, message)
        send(handler)

    return route


SPY = """\
import os, sys
with open(os.environ["FETCHER_TEST_PROCESSES"], "a", encoding="utf-8") as spy:
    spy.write(" ".join(sys.argv) + "\\n")
"""


def test_a_night_on_which_nothing_changed_starts_no_extraction_process(tmp_path, monkeypatch):
    """Every Python process the refresh starts is written down by a sitecustomize
    module: the first night starts extraction processes, the second (all 304) none."""
    spy_dir, processes = tmp_path / "spy", tmp_path / "processes.txt"
    spy_dir.mkdir()
    (spy_dir / "sitecustomize.py").write_text(SPY, encoding="utf-8")
    root = Path(__file__).resolve().parent.parent
    monkeypatch.setenv("PYTHONPATH", f"{spy_dir}:{root}")
    monkeypatch.setenv("FETCHER_TEST_PROCESSES", str(processes))
    with Origin("127.0.0.1") as origin:
        urls = _sources(origin, lambda n: conditional(origin, f"<p>Page {n} says something.</p>" * 20, etag=f'"v{n}"'))
        write_config(tmp_path, urls)
        _refresh(tmp_path)
        first = processes.read_text(encoding="utf-8").splitlines()
        processes.unlink()
        summary = _refresh(tmp_path)
        second = processes.read_text(encoding="utf-8").splitlines()
    assert any("multiprocessing" in line for line in first)  # the spy sees extraction processes when they start
    assert summary["unchanged"] == SOURCES
    assert len(second) == 1 and "refresh" in second[0], second  # the refresh itself, nothing else


def _closes_after_answering(body: bytes):
    """A page, then the connection closed without a `Connection: close` to say so."""
    send = respond(200, body)

    def route(handler) -> None:
        send(handler)
        handler.close_connection = True

    return route


def test_a_connection_the_server_closed_while_idle_is_not_reused(tmp_path, run):
    with Origin("127.0.0.1") as origin:
        page = b"<html><body><article>" + b"<p>Words worth reading on this page.</p>" * 30 + b"</article></body></html>"
        urls = [origin.route(f"/closing/{n}", _closes_after_answering(page)) for n in range(3)]
        world = run(per_host_concurrency=1, retries=0)
        outcomes = [world.fetch(url).outcome for url in urls]
    assert outcomes == ["ok"] * 3
    assert origin.connections >= 3  # each page on a connection of its own: the closed ones were noticed


def _https(origin: Origin, directory: Path) -> Path:
    """Serve `origin` over TLS with a certificate for 127.0.0.1; returns the certificate (its own CA)."""
    context, cert = server_tls_context(directory, "127.0.0.1", "IP:127.0.0.1")
    origin._server.socket = context.wrap_socket(origin._server.socket, server_side=True)
    return cert


def test_over_https_twenty_unchanged_checks_of_one_host_open_at_most_per_host_concurrency_connections(tmp_path, monkeypatch):
    origin = Origin("127.0.0.1")
    monkeypatch.setenv("SSL_CERT_FILE", str(_https(origin, tmp_path)))  # the refresh trusts the test's own CA
    with origin:
        urls = _sources(origin, lambda n: conditional(origin, f"<p>Page {n} says something.</p>" * 20, etag=f'"v{n}"'))
        urls = [url.replace("http://", "https://") for url in urls]
        write_config(tmp_path, urls, per_host_concurrency=PER_HOST)
        first = _refresh(tmp_path)
        before = origin.connections
        summary = _refresh(tmp_path)
    assert first["changed"] == SOURCES
    assert summary["unchanged"] == SOURCES
    assert 1 <= origin.connections - before <= PER_HOST  # TLS handshakes too: one per connection
