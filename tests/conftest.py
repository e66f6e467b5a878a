"""Shared fixtures: loopback origins, configs written to disk, a pipeline run with
controlled sleep, and the fixture corpus (real pages with gold text, real PDFs)."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import socket
import subprocess
import sys
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from fetcher.core.config import Config, load_config
from fetcher.core.models import Snapshot
from fetcher.run.pipeline import Pipeline
from fetcher.core.sources import make_source
from fetcher.store.sqlite import Store
from tests.origin import Origin

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def origin() -> Iterator[Origin]:
    with Origin("127.0.0.1") as server:
        yield server


def write_config(
    directory: Path, urls: list[str] = (), text: str = "", archive: dict[str, Any] | None = None,
    database: str | None = None, **fetch: Any
) -> Path:
    """A config.toml in `directory` with the given sources, [fetch] settings and
    [archive] settings (the archive is off unless a test gives its endpoints).
    Private networks are allowed: every test origin is on loopback, which the
    default refuses (tests/test_private_networks.py checks that default).
    `database`: a PostgreSQL URL for [storage] database (None: SQLite)."""
    settings = {
        "per_host_delay": 0, "connect_timeout": 2, "read_timeout": 2, "deadline": 5,
        "allow_private_networks": True, **fetch,
    }
    lines = ["[storage]", 'dir = "snapshots"', *([f"database = {json.dumps(database)}"] if database else []), "",
             "[fetch]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    lines += ["", "[archive]"]
    lines += [f"{key} = {toml_value(value)}" for key, value in (archive or {"enabled": False}).items()]
    for url in urls:
        lines += ["", "[[sources]]", f"url = {json.dumps(url)}"]
    path = directory / "config.toml"
    path.write_text("\n".join(lines) + "\n" + text, encoding="utf-8")
    return path


def toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)


@dataclass
class FakeSleep:
    """Records what the code asked to sleep for, and yields without waiting."""

    calls: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        await asyncio.sleep(0)


@dataclass
class Run:
    config: Config
    store: Store
    sleep: FakeSleep

    def fetch(self, url: str) -> Snapshot:
        async def go() -> Snapshot:
            async with Pipeline(self.config, self.store, processes=False, sleep=self.sleep) as pipeline:
                return await pipeline.fetch(make_source(url))

        return asyncio.run(go())

    def refresh(self, processes: bool = False) -> dict[str, Snapshot]:
        """One run over every configured source: the snapshot of each, by URL, as
        stored (a run's own snapshots come without their text: read back here)."""
        done: dict[str, Snapshot] = {}

        async def go() -> None:
            async with Pipeline(self.config, self.store, processes=processes, sleep=self.sleep) as pipeline:
                await pipeline.refresh(self.config.sources, on_done=lambda snap: done.__setitem__(snap.url, snap))

        asyncio.run(go())
        stored = {url: self.store.latest(snap.resource_id) for url, snap in done.items()}
        for url, snap in done.items():
            assert stored[url] is not None and stored[url].fetch_id == snap.fetch_id, (snap, stored[url])
        return {url: snapshot for url, snapshot in stored.items() if snapshot is not None}


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Any]:
    """run(**fetch_settings) -> Run: a pipeline over a fresh store, sleep faked."""
    stores = []

    def make(**fetch: Any) -> Run:
        config = load_config(write_config(tmp_path, **fetch))
        store = Store(config.storage_dir)
        stores.append(store)
        return Run(config, store, FakeSleep())

    yield make
    for store in stores:
        store.close()


_LOOPBACK_NAMES = ("localhost", "127.", "::1")


@pytest.fixture(autouse=True)
def fetcher_logger_restored() -> Iterator[None]:
    """The CLI configures the "fetcher" logger (handlers, level); put it back after each test."""
    logger = logging.getLogger("fetcher")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    for handler in list(logger.handlers):
        if handler not in saved[0]:
            logger.removeHandler(handler)
            handler.close()
    for handler in saved[0]:
        if handler not in logger.handlers:
            logger.addHandler(handler)
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A safety net: in-process name lookups of anything but loopback fail at once,
    so no test can send a packet (not even a DNS query) off this machine."""
    real = socket.getaddrinfo

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if not name.startswith(_LOOPBACK_NAMES):
            raise socket.gaierror(socket.EAI_NONAME, f"tests resolve loopback names only, not {name!r}")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)


@pytest.fixture
def no_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Names under .invalid fail to resolve here, without asking any DNS server."""
    real = socket.getaddrinfo

    def fake(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name.endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)


@dataclass(frozen=True)
class Page:
    key: str
    html: bytes
    gold: str
    url: str


def corpus_pages() -> list[Page]:
    truth = json.loads((FIXTURES / "pages" / "ground-truth.json").read_text(encoding="utf-8"))
    return [
        Page(key, gzip.decompress((FIXTURES / "pages" / f"{key}.html.gz").read_bytes()), item["articleBody"], item["url"])
        for key, item in sorted(truth.items())
    ]


def corpus_pdfs() -> dict[str, tuple[bytes, list[str]]]:
    expected = json.loads((FIXTURES / "pdf" / "expected-text.json").read_text(encoding="utf-8"))
    return {
        name: ((FIXTURES / "pdf" / name).read_bytes(), sentences)
        for name, sentences in expected.items()
        if (FIXTURES / "pdf" / name).exists()
    }


def normalised(text: str) -> str:
    """NFKC and collapsed white space, as the PDF corpus's known sentences were checked."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def fetcher_command() -> list[str]:
    return [sys.executable, "-m", "fetcher"]


def run_fetcher(cwd: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """The real `fetcher` command in a subprocess, its output captured as text."""
    return subprocess.run(fetcher_command() + list(args), cwd=cwd, capture_output=True, text=True, timeout=timeout)


class FakeClock:
    """Monotonic time, wall time and sleep that move only when the code sleeps
    (or a test says so): rate limits and day-long gaps are checked without waiting."""

    def __init__(self, start: datetime | None = None):
        self.start = start or datetime(2026, 11, 23, 3, 0, tzinfo=timezone.utc)
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return self.start + timedelta(seconds=self.now - 1000.0)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta).total_seconds()

    def pipeline(self, config: Config, store: Store, processes: bool = False) -> Pipeline:
        return Pipeline(config, store, processes=processes, wall_clock=self.wall, clock=self.monotonic, sleep=self.sleep)


class ScaledClock(FakeClock):
    """Real time running `speed` times faster: sleeps really wait (scaled down), so
    a server thread stamping requests with this clock sees the order they were sent."""

    def __init__(self, speed: float = 50.0):
        super().__init__()
        self.speed = speed
        self._real_start = time.monotonic()

    def monotonic(self) -> float:
        return 1000.0 + (time.monotonic() - self._real_start) * self.speed

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.sleep(max(0.0, seconds) / self.speed)

    def wall(self) -> datetime:
        return self.start + timedelta(seconds=self.monotonic() - 1000.0)


def assert_sound_store(storage: Path) -> list[tuple[str, str]]:
    """What a user would check after anything went wrong: the SQLite file passes its
    integrity and foreign key checks, and every body the store refers to exists and
    hashes to its name. Returns (resource_id, outcome) of each fetch, oldest first."""
    import hashlib
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(storage / "fetcher.sqlite3")) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        referenced = {row[0] for row in db.execute(
            "SELECT sha256 FROM contents UNION SELECT sha256 FROM fetches WHERE sha256 IS NOT NULL"
            " UNION SELECT content_sha256 FROM health WHERE content_sha256 IS NOT NULL"
            " UNION SELECT sha256 FROM captures WHERE sha256 IS NOT NULL")}
        fetches = db.execute("SELECT resource_id, outcome FROM fetches ORDER BY id").fetchall()
    for sha in referenced:
        body = storage / "bodies" / sha[:2] / f"{sha}.gz"
        assert body.is_file(), f"missing body {body}"
        assert hashlib.sha256(gzip.decompress(body.read_bytes())).hexdigest() == sha, f"{body} does not hash to its name"
    return fetches


def stored_body(store: Store, sha: str) -> bytes:
    """A stored body, as a user would read it: its gzip file under snapshots/bodies
    (or its row, or its object, where the store keeps bodies elsewhere)."""
    return gzip.decompress(store.body(sha))


def fetch_count(storage: Path) -> int:
    """How many fetches the store's database holds, read with sqlite3 itself."""
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(storage / "fetcher.sqlite3")) as db:
        return db.execute("SELECT COUNT(*) FROM fetches").fetchone()[0]


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Any]:
    """A throwaway PostgreSQL cluster for the session (tests/postgres.py)."""
    from tests.postgres import start_cluster

    yield from start_cluster()


@pytest.fixture
def pg_url(pg_cluster: Any) -> str:
    """The URL of a new, empty PostgreSQL database for one test."""
    return str(pg_cluster.database())


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> str | None:
    """Each store backend in turn: None (SQLite), then a fresh PostgreSQL database's URL."""
    return str(request.getfixturevalue("pg_url")) if request.param == "postgresql" else None


@pytest.fixture
def run_on(tmp_path: Path, database: str | None) -> Iterator[Any]:
    """Like `run`, over a fresh store of each backend in turn (`database`)."""
    from fetcher.store.opening import open_store

    stores = []

    def make(**fetch: Any) -> Run:
        config = load_config(write_config(tmp_path, database=database, **fetch))
        store = open_store(config)
        stores.append(store)
        return Run(config, store, FakeSleep())

    yield make
    for store in stores:
        store.close()


def server_tls_context(directory: Path, subject: str, alt_name: str) -> tuple[Any, Path]:
    """A self-signed certificate made with openssl (its own CA) for `alt_name`
    ("IP:127.0.0.1", "DNS:secure.example"), and a server-side SSL context holding
    it; returns (context, certificate file to trust). Skips where openssl cannot."""
    import ssl

    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={subject}",
             "-addext", f"subjectAltName={alt_name}", "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True, timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as error:
        pytest.skip(f"cannot make a test certificate with openssl: {error}")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context, cert
