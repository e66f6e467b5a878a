"""The snapshot store under snapshots/: an SQLite index (WAL) plus raw bodies,
gzip-compressed and content-addressed, so text can be re-extracted later.

Every fetch is one row in `fetches` (the dated history, never overwritten).
Content is stored once per distinct body (`contents`, keyed by SHA-256): a fetch
that finds the same body again records a check that points at it, no copy.
A body file is written (atomically, by rename) before the transaction that
references it commits, so a kill at any moment leaves the store consistent.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.request import pathname2url

from fetcher.store.files import remove_stale_temporaries, write_atomically
from fetcher.core.health import Health
from fetcher.core.models import Capture, FetchResult, Hop, Snapshot, Source
from fetcher.core.processes import alive
from fetcher.store.schema import SCHEMA, SCHEMA_VERSION
from fetcher.core.sources import moved_permanently
from fetcher.core.outcomes import Outcome
from fetcher.core.errors import StoreError, StoreWriteFailed

DB_NAME = "fetcher.sqlite3"

_SELECT = """
SELECT f.id, f.resource_id, f.url, f.final_url, f.fetched_at, f.origin, f.http_status,
       f.outcome, f.detail, f.attempts, f.elapsed_ms, f.changed, f.redirects, f.content_type,
       c.size_bytes, c.text_chars, c.sha256, c.title, {text}, c.language, c.published, c.first_seen,
       f.live_status, f.live_outcome, f.archive_outcome, f.archive_name, f.archive_url, f.captured_at,
       f.transition
FROM fetches f LEFT JOIN contents c ON c.sha256 = f.sha256
"""


F = TypeVar("F", bound=Callable[..., Any])


def _machine_trouble(method: F) -> F:
    """Writes that fail for reasons of our machine — disk full, I/O error, a
    corrupt or locked database — become StoreWriteFailed, which stops a run loudly.
    Other exceptions (a value SQLite refuses, a bug) stay as they are: they
    concern one source, and the pipeline stores them as that source's failure."""

    @functools.wraps(method)
    def guarded(self: Store, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except (sqlite3.IntegrityError, sqlite3.ProgrammingError):
            raise
        except (OSError, sqlite3.DatabaseError) as error:
            raise StoreWriteFailed(f"{self.directory}: cannot write to the store: {error}") from error

    return guarded  # type: ignore[return-value]


class Store:
    def __init__(self, directory: Path):
        """Open the store in `directory`, creating it if needed."""
        self.directory = directory
        self.bodies = directory / "bodies"
        try:
            self.bodies.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(directory / DB_NAME, timeout=30, check_same_thread=False)
            self._db.row_factory = sqlite3.Row
            self._setup()
        except sqlite3.DatabaseError as error:
            raise StoreError(f"{directory / DB_NAME}: cannot open the store: {error}") from error
        except OSError as error:
            raise StoreError(f"{directory}: cannot use the store directory: {error}") from error

    @classmethod
    def existing(cls, directory: Path) -> Store | None:
        """Open the store read-only, if one is there: reading commands create and
        change nothing, and work where the user may only read (another user's
        store, a read-only mount). None when nothing has been stored yet."""
        path = directory / DB_NAME
        try:
            if not path.is_file():
                return None
            db = _connect_read_only(path)
            version = db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as error:
            raise StoreError(f"{path}: cannot read the store: {error}") from error
        except OSError as error:
            raise StoreError(f"{directory}: cannot read the store directory: {error.strerror or error}") from error
        if version > SCHEMA_VERSION:
            db.close()
            raise StoreError(f"{directory}: written by a newer fetcher (schema {version})")
        if version == 0:  # an empty database file: nothing stored yet
            db.close()
            return None
        store = cls.__new__(cls)
        store.directory, store.bodies, store._db = directory, directory / "bodies", db
        return store

    def _setup(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.directory}: written by a newer fetcher (schema {version})")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        with self._db:
            self._db.executescript(SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    def remove_stale_temporaries(self, now: float | None = None) -> int:
        """Delete body files half-written by a process that is gone (a killed run);
        a live writer's temporary file is left alone. Returns how many went."""
        return remove_stale_temporaries(self.bodies.glob("*"), time.time() if now is None else now)

    # -- writing -------------------------------------------------------------

    @_machine_trouble
    def record(self, result: FetchResult) -> Snapshot:
        """Store one fetch (and its content, if new); return it as read back."""
        sha = result.reused_sha256
        extracted = result.extracted
        download = result.download
        if sha is None and extracted is not None and result.outcome.is_success:
            sha = download.sha256
            self._write_body(sha, download.body, download.gzipped)
        capture = result.capture
        with self._db:
            self._remember(result.source, result.fetched_at)
            previous = self._last_sha(result.source.resource_id)
            if sha is not None and result.reused_sha256 is None:
                self._db.execute(
                    "INSERT OR IGNORE INTO contents VALUES (?,?,?,?,?,?,?,?,?)",
                    (sha, extracted.kind, len(download.body), len(extracted.text), extracted.title,
                     extracted.language, extracted.published, extracted.text, result.fetched_at.isoformat()),
                )
            transition = self._update_health(result, sha)
            cursor = self._db.execute(
                "INSERT INTO fetches (resource_id, url, final_url, fetched_at, origin, http_status, outcome,"
                " detail, attempts, elapsed_ms, redirects, content_type, sha256, changed, etag, last_modified,"
                " live_status, live_outcome, archive_outcome, archive_name, archive_url, captured_at, transition)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (result.source.resource_id, result.source.url, download.final_url, result.fetched_at.isoformat(),
                 result.origin, download.http_status, result.outcome.value, _detail(result),
                 result.attempts, result.elapsed_ms,
                 json.dumps([[h.url, h.status] for h in download.redirects]), download.content_type, sha,
                 int(sha is not None and sha != previous), download.etag, download.last_modified,
                 result.live_status, _value(result.live_outcome), _value(result.archive_outcome),
                 capture.archive if capture else None, capture.raw_url if capture else None,
                 capture.captured_at.isoformat() if capture else None, transition),
            )
            if capture is not None and sha is not None:
                self._db.execute(
                    "UPDATE captures SET sha256 = ?, timestamp = ?, raw_url = ?, captured_at = ?"
                    " WHERE resource_id = ? AND archive = ?",
                    (sha, capture.timestamp, capture.raw_url, capture.captured_at.isoformat(),
                     result.source.resource_id, capture.archive),
                )
        return self._one("WHERE f.id = ?", (cursor.lastrowid,))

    def _update_health(self, result: FetchResult, sha: str | None) -> str | None:
        """Fold a live check into the source's health; return 'newly-failing',
        'recovered' or None."""
        if result.live_outcome is None:
            return None
        before = self.health(result.source.resource_id)
        when = result.fetched_at
        download = result.download
        checked = replace(
            before, last_checked=when, last_outcome=result.live_outcome.value, last_status=result.live_status,
            last_detail=_live_detail(result) if not result.live_outcome.is_success else "",
        )
        if result.live_outcome.is_success:
            live_content = result.origin == "live" and sha is not None
            after = replace(
                checked, last_ok=when, failures_in_a_row=0, failing_since=None,
                etag=(download.etag or before.etag) if live_content else before.etag,
                last_modified=(download.last_modified or before.last_modified) if live_content else before.last_modified,
                content_sha256=sha if live_content else before.content_sha256,
                moved_to=moved_permanently(result.source.url, download.redirects, download.final_url),
            )
        else:
            after = replace(
                checked, failures_in_a_row=before.failures_in_a_row + 1, failing_since=before.failing_since or when,
            )
        self._db.execute(
            "INSERT OR REPLACE INTO health VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (after.resource_id, _iso(after.last_checked), _iso(after.last_ok), after.last_outcome,
             after.failures_in_a_row, _iso(after.failing_since), after.etag, after.last_modified,
             after.content_sha256, after.last_status, after.last_detail, after.moved_to),
        )
        if before.failures_in_a_row == 0 and after.failures_in_a_row:  # was fine, or new and broken at once
            return "newly-failing"
        if before.failures_in_a_row and not after.failures_in_a_row:
            return "recovered"
        return None

    # -- runs ------------------------------------------------------------------

    @_machine_trouble
    def start_run(self, started_at: datetime, trigger: str) -> int:
        with self._db:
            cursor = self._db.execute(
                "INSERT INTO runs (started_at, status, trigger, pid) VALUES (?, 'running', ?, ?)",
                (started_at.isoformat(), trigger, os.getpid()),
            )
        return cursor.lastrowid

    @_machine_trouble
    def finish_run(self, run_id: int, finished_at: datetime, status: str, summary: dict[str, Any] | None) -> None:
        with self._db:
            self._db.execute(
                "UPDATE runs SET finished_at = ?, status = ?, summary = ? WHERE id = ?",
                (finished_at.isoformat(), status, json.dumps(summary) if summary else None, run_id),
            )

    def runs(self, limit: int = 20) -> list[RunRecord]:
        rows = self._db.execute(
            "SELECT id, started_at, finished_at, status, trigger, pid, summary FROM runs ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [
            RunRecord(row[0], datetime.fromisoformat(row[1]), _datetime(row[2]),
                      _run_status(row[3], row[5]), row[4], row[5], json.loads(row[6]) if row[6] else None)
            for row in rows
        ]

    def _remember(self, source: Source, when: datetime) -> None:
        self._db.execute(
            "INSERT INTO resources VALUES (?,?,?,?) ON CONFLICT(resource_id) DO UPDATE SET"
            " title = COALESCE(excluded.title, resources.title)",
            (source.resource_id, source.url, source.title, when.isoformat()),
        )

    def _last_sha(self, resource_id: str) -> str | None:
        row = self._db.execute(
            "SELECT sha256 FROM fetches WHERE resource_id = ? AND sha256 IS NOT NULL ORDER BY id DESC LIMIT 1",
            (resource_id,),
        ).fetchone()
        return row[0] if row else None

    def _write_body(self, sha: str, body: bytes, gzipped: bytes | None) -> None:
        """Bodies are kept gzip-compressed: as the server compressed them when it
        did (no CPU spent), else at level 3 (half the CPU of level 6 for 9% more
        bytes; corpus: 1.16 against 2.32 ms a document)."""
        path = self.body_path(sha)
        if path.exists():
            return
        path.parent.mkdir(exist_ok=True)
        write_atomically(path, lambda out: out.write(gzipped or gzip.compress(body, compresslevel=3)))

    def body_path(self, sha: str) -> Path:
        return self.bodies / sha[:2] / f"{sha}.gz"

    def read_body(self, sha: str) -> bytes:
        return gzip.decompress(self.body_path(sha).read_bytes())

    @_machine_trouble
    def remember_lookup(self, source: Source, archive: str, when: datetime, capture: Capture | None) -> None:
        """Cache what an archive lookup found (a capture, or none) for later runs."""
        with self._db:
            self._remember(source, when)
            self._db.execute(
                "INSERT OR REPLACE INTO captures VALUES (?,?,?,?,?,?,?,?,NULL)",
                (source.resource_id, archive, when.isoformat(),
                 *((capture.timestamp, capture.original, capture.raw_url, capture.captured_at.isoformat(),
                    capture.mime) if capture else (None,) * 5)),
            )

    # -- reading -------------------------------------------------------------

    def cached_lookup(self, resource_id: str, archive: str) -> CachedLookup | None:
        row = self._db.execute(
            "SELECT looked_up_at, timestamp, original, raw_url, captured_at, mime, sha256 FROM captures"
            " WHERE resource_id = ? AND archive = ?",
            (resource_id, archive),
        ).fetchone()
        if row is None:
            return None
        capture = _capture(archive, *row[1:6]) if row[1] is not None else None
        return CachedLookup(datetime.fromisoformat(row[0]), capture, row[6])

    def health(self, resource_id: str) -> Health:
        row = self._db.execute("SELECT * FROM health WHERE resource_id = ?", (resource_id,)).fetchone()
        return _health(row) if row else Health(resource_id)

    def all_health(self) -> dict[str, Health]:
        return {row[0]: _health(row) for row in self._db.execute("SELECT * FROM health")}

    def stand_ins(self) -> dict[str, Capture]:
        """Per source, the best archived copy known: one already replayed and
        stored, else the newest capture found."""
        best: dict[str, tuple[bool, str, Capture]] = {}
        rows = self._db.execute(
            "SELECT resource_id, archive, timestamp, original, raw_url, captured_at, mime, sha256 FROM captures"
            " WHERE timestamp IS NOT NULL"
        )
        for rid, archive, stamp, original, raw_url, captured_at, mime, sha in rows:
            rank = (sha is not None, stamp)
            if rid not in best or rank > best[rid][:2]:
                best[rid] = (*rank, _capture(archive, stamp, original, raw_url, captured_at, mime))
        return {rid: entry[2] for rid, entry in best.items()}

    def last_run_transitions(self) -> dict[str, str]:
        """What the last completed run changed: resource id -> 'newly-failing' or 'recovered'."""
        run = self._db.execute(
            "SELECT started_at, finished_at FROM runs WHERE status = 'completed' ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if run is None:
            return {}
        rows = self._db.execute(
            "SELECT resource_id, transition FROM fetches WHERE transition IS NOT NULL"
            " AND fetched_at >= ? AND fetched_at <= ? ORDER BY id",
            run,
        )
        return dict(rows.fetchall())

    def last_alive(self, resource_id: str) -> datetime | None:
        """When the source last gave content live."""
        row = self._db.execute(
            "SELECT MAX(fetched_at) FROM fetches WHERE resource_id = ? AND origin = 'live' AND sha256 IS NOT NULL",
            (resource_id,),
        ).fetchone()
        return _datetime(row[0]) if row else None

    def latest(self, resource_id: str) -> Snapshot | None:
        return self._one("WHERE f.resource_id = ? ORDER BY f.id DESC LIMIT 1", (resource_id,))

    def latest_with_content(self, resource_id: str) -> Snapshot | None:
        return self._one(
            "WHERE f.resource_id = ? AND f.sha256 IS NOT NULL ORDER BY f.id DESC LIMIT 1", (resource_id,)
        )

    def history(self, resource_id: str) -> list[Snapshot]:
        query = _SELECT.format(text="NULL") + "WHERE f.resource_id = ? ORDER BY f.id DESC"
        return [_snapshot(row) for row in self._db.execute(query, (resource_id,))]

    def url_of(self, resource_id: str) -> str | None:
        row = self._db.execute("SELECT url FROM resources WHERE resource_id = ?", (resource_id,)).fetchone()
        return row[0] if row else None

    def iter_latest(self) -> Iterator[Snapshot]:
        """The latest fetch of every resource, streamed."""
        query = _SELECT.format(text="c.text") + (
            "WHERE f.id IN (SELECT MAX(id) FROM fetches GROUP BY resource_id) ORDER BY f.resource_id"
        )
        for row in self._db.execute(query):
            yield _snapshot(row)

    def count_fetches(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM fetches").fetchone()[0]

    def _one(self, where: str, params: tuple) -> Snapshot | None:
        row = self._db.execute(_SELECT.format(text="c.text") + where, params).fetchone()
        return _snapshot(row) if row else None


@dataclass(frozen=True)
class CachedLookup:
    looked_up_at: datetime
    capture: Capture | None  # None: the archive had no capture
    sha256: str | None  # the capture's content, once replayed and stored


@dataclass(frozen=True)
class RunRecord:
    id: int
    started_at: datetime
    finished_at: datetime | None
    status: str  # running, completed, interrupted, failed, did not finish (killed)
    trigger: str  # refresh, schedule
    pid: int
    summary: dict[str, Any] | None


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection that writes nothing, not even WAL index files.

    Measured (SQLite 3.40): `mode=ro` reads a WAL database, including a running
    writer's uncheckpointed commits, when its -wal and -shm files exist or the
    directory is writable; in a directory the reader cannot write, with no -wal
    file (no writer since the last clean close) it fails with "attempt to write
    a readonly database", and only `immutable=1` opens it. So: `mode=ro` first;
    `immutable=1` only when there is no -wal file, i.e. nothing newer than the
    main file to miss (a writer that starts meanwhile could make such a reader
    see a torn page, reported as an error, not stored data changed)."""
    uri = f"file:{pathname2url(str(path.absolute()))}?mode=ro"
    db = sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=False)
    try:
        db.execute("PRAGMA user_version").fetchone()
    except sqlite3.OperationalError:
        db.close()
        if Path(f"{path}-wal").exists():
            raise
        db = sqlite3.connect(uri + "&immutable=1", uri=True, check_same_thread=False)
    db.row_factory = sqlite3.Row
    return db


def _run_status(status: str, pid: int) -> str:
    """A run recorded as running whose process is gone was killed: it did not finish."""
    return "did not finish" if status == "running" and not alive(pid) else status


def _capture(archive: str, stamp: str, original: str, raw_url: str, captured_at: str, mime: str | None) -> Capture:
    return Capture(archive, stamp, original, raw_url, datetime.fromisoformat(captured_at), mime)


def _health(row: sqlite3.Row) -> Health:
    return Health(
        resource_id=row[0], last_checked=_datetime(row[1]), last_ok=_datetime(row[2]), last_outcome=row[3],
        failures_in_a_row=row[4], failing_since=_datetime(row[5]), etag=row[6], last_modified=row[7],
        content_sha256=row[8], last_status=row[9], last_detail=row[10], moved_to=row[11],
    )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _datetime(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _value(outcome: Outcome | None) -> str | None:
    return outcome.value if outcome is not None else None


def _live_detail(result: FetchResult) -> str:
    """What the live attempt said: its own detail, or for an archived copy, the one carried over."""
    return result.own_detail if result.origin == "live" else result.live_detail


def _detail(result: FetchResult) -> str:
    """The fetch row's detail; an archived copy's row also says what the live attempt got."""
    own = result.own_detail
    if result.origin == "archive" and result.live_detail:
        return f"live: {result.live_detail}" + (f"; {own}" if own else "")
    return own


def _snapshot(row: sqlite3.Row) -> Snapshot:
    return Snapshot(
        fetch_id=row[0],
        resource_id=row[1],
        url=row[2],
        final_url=row[3],
        fetched_at=datetime.fromisoformat(row[4]),
        origin=row[5],
        http_status=row[6],
        outcome=row[7],
        detail=row[8],
        attempts=row[9],
        elapsed_ms=row[10],
        changed=bool(row[11]),
        redirects=tuple(Hop(url, status) for url, status in json.loads(row[12])),
        content_type=row[13],
        size_bytes=row[14],
        text_chars=row[15],
        sha256=row[16],
        title=row[17],
        text=row[18],
        language=row[19],
        published=row[20],
        content_first_seen=_datetime(row[21]),
        live_status=row[22],
        live_outcome=row[23],
        archive_outcome=row[24],
        archive_name=row[25],
        archive_url=row[26],
        captured_at=_datetime(row[27]),
        transition=row[28],
    )
