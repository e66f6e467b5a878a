"""Which certificate authorities HTTPS trusts: the default bundle, SSL_CERT_FILE
from the environment, or `[fetch] ca_bundle` (a PEM file, relative to the config
file). Checked through the `fetcher fetch` command against a loopback HTTPS server
whose certificate only a CA made for the test signs."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import run_fetcher, server_tls_context, write_config

PAGE = ("<html><head><title>Over TLS</title></head><body>"
        + "".join(f"<p>Paragraph {i} of a page served over HTTPS by a loopback server.</p>" for i in range(8))
        + "</body></html>").encode()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        status, body = (200, PAGE) if self.path == "/page" else (404, b"no")
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def https_url(tmp_path: Path) -> Iterator[str]:
    """https://127.0.0.1:PORT/page, its certificate (for IP 127.0.0.1) in tmp_path/ca.pem."""
    context, cert = server_tls_context(tmp_path, "fetcher test CA", "IP:127.0.0.1")
    cert.replace(tmp_path / "ca.pem")  # the name the tests trust it under
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/page"
    finally:
        server.shutdown()
        server.server_close()


def fetch_json(directory: Path, url: str) -> tuple[int, dict]:
    done = run_fetcher(directory, "--config", str(directory / "config.toml"), "fetch", "--no-archive", "--json", url)
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else {"stderr": done.stderr}


def test_a_ca_bundle_in_the_config_is_trusted(tmp_path, https_url, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    write_config(tmp_path, robots="ignore", ca_bundle="ca.pem")  # relative to the config file
    code, snapshot = fetch_json(tmp_path, https_url)
    assert (code, snapshot["outcome"], snapshot["title"]) == (0, "ok", "Over TLS")


def test_ssl_cert_file_from_the_environment_is_trusted(tmp_path, https_url, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    write_config(tmp_path, robots="ignore")
    code, snapshot = fetch_json(tmp_path, https_url)
    assert (code, snapshot["outcome"], snapshot["title"]) == (0, "ok", "Over TLS")


def test_an_unknown_ca_is_a_tls_error(tmp_path, https_url, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    write_config(tmp_path, robots="ignore")
    code, snapshot = fetch_json(tmp_path, https_url)
    assert (code, snapshot["outcome"]) == (1, "tls-error")


def test_a_missing_ca_bundle_is_one_error_line(tmp_path):
    write_config(tmp_path, ca_bundle="nowhere.pem")
    done = run_fetcher(tmp_path, "--config", str(tmp_path / "config.toml"), "refresh", "--all")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'config.toml'}: [fetch] ca_bundle: no such file: {tmp_path / 'nowhere.pem'}"
    ]
