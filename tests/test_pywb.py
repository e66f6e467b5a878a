"""The archive fallback against a real pywb: a WARC built here with warcio from a
loopback origin, looked up through pywb's CDX endpoint and replayed in its raw
`id_` mode. pywb pins old dependencies, so it lives in its own virtual
environment (`.venv-pywb` beside the project, made on first use)."""

from __future__ import annotations

import asyncio
import http.client
import socket
import subprocess
import sys
import time
from io import BytesIO
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from fetcher.core.config import load_config
from fetcher.run.pipeline import FetchOptions
from fetcher.core.sources import make_source
from fetcher.store.sqlite import Store
from tests.conftest import FakeClock, corpus_pages, corpus_pdfs, normalised, stored_body, write_config
from tests.origin import Origin, html, respond

ROOT = Path(__file__).resolve().parent.parent
PYWB_VENV = ROOT / ".venv-pywb"
PYWB_VERSION = "pywb==2.10.*"


@pytest.fixture(scope="session")
def pywb_bin() -> Path:
    """The bin/ of a virtual environment with pywb, made if missing (skip if it can't be)."""
    bin_dir = PYWB_VENV / "bin"
    if not (bin_dir / "wayback").exists():
        try:
            subprocess.run([sys.executable, "-m", "venv", str(PYWB_VENV)], check=True, capture_output=True)
            subprocess.run(
                [str(bin_dir / "pip"), "install", "-q", PYWB_VERSION],
                check=True, capture_output=True, text=True, timeout=600,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
            output = getattr(error, "stderr", "") or ""
            pytest.skip(f"pywb could not be installed in {PYWB_VENV}: {output.strip()[-300:]}")
    return bin_dir


def raw_response(url: str) -> tuple[str, list[tuple[str, str]], bytes]:
    """The origin's answer as it came over the wire: status line, headers, body."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    connection.request("GET", parts.path)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    headers = [(k, v) for k, v in response.getheaders() if k.lower() not in ("transfer-encoding",)]
    return f"{response.status} {response.reason}", headers, body


def write_warc(path: Path, captures: list[tuple[str, str, str]]) -> None:
    """One response record per (url, WARC-Date), fetched from the loopback origin now."""
    with path.open("wb") as out:
        writer = WARCWriter(out, gzip=True)
        for url, warc_date in captures:
            status, headers, body = raw_response(url)
            http_headers = StatusAndHeaders(status, headers, protocol="HTTP/1.1")
            record = writer.create_warc_record(
                url, "response", payload=BytesIO(body), http_headers=http_headers,
                warc_headers_dict={"WARC-Date": warc_date},
            )
            writer.write_record(record)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_pywb(bin_dir: Path, directory: Path, warc: Path) -> tuple[subprocess.Popen, str]:
    for args in (["init", "coll"], ["add", "coll", str(warc)]):
        subprocess.run([str(bin_dir / "wb-manager"), *args], cwd=directory, check=True, capture_output=True)
    port = free_port()
    server = subprocess.Popen(
        [str(bin_dir / "wayback"), "-b", "127.0.0.1", "-p", str(port)],
        cwd=directory, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return server, f"http://127.0.0.1:{port}/coll"
        except OSError:
            if server.poll() is not None:
                break
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("pywb did not start")


def test_fallback_through_real_pywb_gives_the_origin_bytes(tmp_path, pywb_bin):
    page = corpus_pages()[0]
    pdf, sentences = corpus_pdfs()["multicolumn.pdf"]
    with Origin("127.0.0.4") as origin:
        page_url = origin.route("/article", respond(200, page.html))
        pdf_url = origin.route("/paper.pdf", respond(200, pdf, {"Content-Type": "application/pdf"}))
        warc = tmp_path / "captures.warc.gz"
        write_warc(warc, [(page_url, "2024-04-08T19:43:23Z"), (pdf_url, "2025-01-02T03:04:05Z")])
        origin.routes["/article"] = html("gone", status=404)
        origin.routes["/paper.pdf"] = html("gone", status=410)
        server, base = start_pywb(pywb_bin, tmp_path, warc)
        try:
            archive = {"name": "pywb", "cdx_url": f"{base}/cdx", "replay_url": base, "requests_per_minute": 6000}
            config = load_config(write_config(tmp_path, archive=archive))
            store = Store(config.storage_dir)
            article, paper = asyncio.run(fetch_both(config, store, page_url, pdf_url))
        finally:
            server.terminate()
            server.wait(timeout=10)

    assert (article.origin, article.live_status, article.archive_name) == ("archive", 404, "pywb")
    assert stored_body(store, article.sha256) == page.html  # the capture's bytes, exactly
    assert article.captured_at.isoformat() == "2024-04-08T19:43:23+00:00"
    assert article.archive_url == f"{base}/20240408194323id_/{page_url}"
    first_paragraph = next(p for p in page.gold.split("\n") if len(p) > 80)
    assert first_paragraph[:80] in article.text

    assert (paper.origin, paper.live_status) == ("archive", 410)
    assert stored_body(store, paper.sha256) == pdf
    assert paper.captured_at.isoformat() == "2025-01-02T03:04:05+00:00"
    for sentence in sentences:
        assert normalised(sentence) in normalised(paper.text)
    store.close()


async def fetch_both(config, store, *urls):
    clock = FakeClock()
    async with clock.pipeline(config, store) as pipeline:
        return [await pipeline.fetch(make_source(url), FetchOptions()) for url in urls]
