"""The snapshot store: an index in SQLite (snapshots/fetcher.sqlite3, WAL) or
PostgreSQL ([storage] database), plus raw bodies, gzip-compressed and
content-addressed (fetcher.store.bodies), so text can be re-extracted later.
The same Store, queries and guarantees on both engines: their differences are
in fetcher.store.dialect.

Every fetch is one row in `fetches` (the dated history, never overwritten).
Content is stored once per distinct body (`contents`, keyed by SHA-256): a fetch
that finds the same body again records a check that points at it, no copy.
A body is written (a file atomically, by rename; a row or an object at once)
before the transaction that references it commits, so a kill at any moment leaves the store consistent.

The store stores and reads; it decides nothing. The engine (fetcher.run.pipeline)
says what to write and in which order; rows come back as frozen values
(fetcher.store.rows), writes go through a Writer (fetcher.store.writing).
"""

from __future__ import annotations

import gzip
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote as pathname2url  # urllib.request's on POSIX, without its 20 ms of imports

from fetcher.core.errors import StoreError, StoreWriteFailed
from fetcher.core.health import Health
from fetcher.core.models import Capture, Download, Snapshot, Source
from fetcher.core.states import Transition
from fetcher.store.bodies import Bodies, BodyFiles
from fetcher.store.dialect import Database, RowSelector, SqliteDatabase, write_transaction
from fetcher.store.files import remove_stale_temporaries
from fetcher.store.lock import DatabaseRunLock, RunLock
from fetcher.store.migrations import check_version, prepare_for_writing
from fetcher.store.rows import (
    CAPTURE_COLUMNS, HEALTH_QUERY, TRANSITIONS, CachedLookup, RunRecord, capture_from, health_from, moment, run_from,
    snapshot_from, snapshot_query,
)
from fetcher.store.writing import Writer

DB_NAME = "fetcher.sqlite3"

__all__ = ["DB_NAME", "CachedLookup", "RunRecord", "Store", "StoreError"]


@contextmanager
def _machine_trouble(db: Database) -> Iterator[None]:
    """Writes that fail for reasons of our machine — disk full, I/O error, a
    corrupt or locked database, a lost connection — become StoreWriteFailed,
    which stops a run loudly. Other exceptions (a value the database refuses, a
    bug) stay as they are: they concern one source, and the pipeline stores
    them as that source's failure."""
    try:
        yield
    except db.value_errors:
        raise
    except db.machine_errors as error:
        raise StoreWriteFailed(f"{db.where}: cannot write to the store: {error}") from error


class Store:
    """One store: its database (SQLite or PostgreSQL, fetcher.store.dialect) and
    where its bodies are (fetcher.store.bodies). Commands open it through
    fetcher.store.opening; `Store(directory)` opens (creating) an SQLite store."""

    directory: Path | None
    bodies: Path  # SQLite's body files (their directory); see body_store for any kind
    body_store: Bodies
    _db: Database

    def __init__(self, directory: Path):
        """Open the SQLite store in `directory`, creating it if needed."""
        path = directory / DB_NAME
        try:
            (directory / "bodies").mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(path, timeout=30, check_same_thread=False)
            db = SqliteDatabase(connection, str(path))
            if db.version() > 0:
                check_version(db)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA foreign_keys=ON")
            prepare_for_writing(db)
        except sqlite3.DatabaseError as error:
            raise StoreError(f"{path}: cannot open the store: {error}") from error
        except OSError as error:
            raise StoreError(f"{directory}: cannot use the store directory: {error}") from error
        self._init(db, BodyFiles(directory / "bodies"), directory)

    def _init(self, db: Database, bodies: Bodies, directory: Path | None) -> None:
        self._db, self.body_store, self.directory = db, bodies, directory
        self.bodies = bodies.directory if isinstance(bodies, BodyFiles) else Path("/nonexistent")

    @classmethod
    def on(cls, db: Database, bodies: Bodies, directory: Path | None = None) -> Store:
        """A store over an open, checked database (fetcher.store.opening)."""
        store = cls.__new__(cls)
        store._init(db, bodies, directory)
        return store

    @classmethod
    def existing(cls, directory: Path) -> Store | None:
        """Open the SQLite store read-only, if one is there: reading commands create
        and change nothing, and work where the user may only read (another user's
        store, a read-only mount). None when nothing has been stored yet."""
        path = directory / DB_NAME
        try:
            if not path.is_file():
                return None
            db = SqliteDatabase(_connect_read_only(path), str(path))
            db.version()  # the first read: a file that is not a database fails here, in one line
        except sqlite3.DatabaseError as error:
            raise StoreError(f"{path}: cannot read the store: {error}") from error
        except OSError as error:
            raise StoreError(f"{directory}: cannot read the store directory: {error.strerror or error}") from error
        try:
            if check_version(db) == 0:  # an empty database file: nothing stored yet
                db.close()
                return None
        except StoreError:
            db.close()
            raise
        return cls.on(db, BodyFiles(directory / "bodies"), directory)

    @property
    def database(self) -> Database:
        return self._db

    @property
    def where(self) -> str:
        """The store, for messages (a database URL without its password)."""
        return self._db.where

    def close(self) -> None:
        self._db.close()

    def remove_stale_temporaries(self, now: float | None = None) -> int:
        """Delete body files half-written by a process that is gone (a killed run);
        a live writer's temporary file is left alone. Returns how many went."""
        if not isinstance(self.body_store, BodyFiles):
            return 0
        return remove_stale_temporaries(self.bodies.glob("*"), time.time() if now is None else now)

    def run_lock(self) -> RunLock | DatabaseRunLock:
        """The lock that lets one refresh at a time use this store."""
        if self.directory is not None and self._db.name == "sqlite":
            return RunLock(self.directory)
        return DatabaseRunLock(self._db)

    # -- writing -------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Writer]:
        """One write transaction, committed at the end of the block, rolled back
        if it raises. What is read in it about a source (its health) is not
        changed by another writer before it commits (fetcher.store.dialect)."""
        with _machine_trouble(self._db), write_transaction(self._db):
            yield Writer(self._db)

    def keep_body(self, download: Download) -> None:
        """Keep the body, unless it is there (see fetcher.store.bodies). Bodies are
        kept gzip-compressed: as the server compressed them when it did (no CPU
        spent), else at level 3 (half the CPU of level 6 for 9% more bytes;
        corpus: 1.16 against 2.32 ms a document)."""
        with _machine_trouble(self._db):
            if self.body_store.has(download.sha256):
                return
            self.body_store.put(download.sha256, download.gzipped or gzip.compress(download.body, compresslevel=3))

    def body_path(self, sha: str) -> Path:
        return self.bodies / sha[:2] / f"{sha}.gz"

    def body(self, sha: str) -> bytes:
        """A kept body, gzip-compressed, wherever bodies are kept."""
        return self.body_store.get(sha)

    def remember_lookup(self, source: Source, archive: str, when: datetime, capture: Capture | None) -> None:
        """Cache what an archive lookup found (a capture, or none) for later runs."""
        with self.transaction() as writer:
            writer.remember_lookup(source, archive, when, capture)

    def start_run(self, started_at: datetime, trigger: str) -> int:
        with self.transaction() as writer:
            return writer.start_run(started_at, trigger)

    def finish_run(self, run_id: int, finished_at: datetime, status: str, summary: dict[str, Any] | None) -> None:
        with self.transaction() as writer:
            writer.finish_run(run_id, finished_at, status, summary)

    # -- reading -------------------------------------------------------------

    def runs(self, limit: int = 20) -> list[RunRecord]:
        """The recorded runs, newest first, as stored (see fetcher.views.runs)."""
        rows = self._db.execute("SELECT * FROM runs ORDER BY id DESC LIMIT ?", (limit,))
        return [run_from(row) for row in rows]

    def cached_lookup(self, resource_id: str, archive: str) -> CachedLookup | None:
        row = self._db.execute(
            "SELECT * FROM captures WHERE resource_id = ? AND archive = ?", (resource_id, archive)
        ).fetchone()
        if row is None:
            return None
        capture = capture_from(row) if row["timestamp"] is not None else None
        return CachedLookup(datetime.fromisoformat(row["looked_up_at"]), capture, row["sha256"])

    def health(self, resource_id: str) -> Health:
        row = self._db.execute(HEALTH_QUERY + "WHERE resource_id = ?", (resource_id,)).fetchone()
        return health_from(row) if row else Health(resource_id)

    def all_health(self) -> dict[str, Health]:
        return {row["resource_id"]: health_from(row) for row in self._db.execute(HEALTH_QUERY)}

    def stand_ins(self) -> dict[str, Capture]:
        """Per source, the best archived copy known: one already replayed and
        stored, else the newest capture found."""
        best: dict[str, tuple[bool, str, Capture]] = {}
        rows = self._db.execute(
            f"SELECT resource_id, sha256, {CAPTURE_COLUMNS} FROM captures WHERE timestamp IS NOT NULL"
        )
        for row in rows:
            rid, rank = row["resource_id"], (row["sha256"] is not None, row["timestamp"])
            if rid not in best or rank > best[rid][:2]:
                best[rid] = (*rank, capture_from(row))
        return {rid: entry[2] for rid, entry in best.items()}

    def last_run_transitions(self) -> dict[str, Transition]:
        """What the last completed run changed: resource id -> its transition."""
        run = self._db.execute(
            "SELECT started_at, finished_at FROM runs WHERE status = 'completed' ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if run is None:
            return {}
        rows = self._db.execute(
            "SELECT resource_id, transition FROM fetches WHERE transition IS NOT NULL"
            " AND fetched_at >= ? AND fetched_at <= ? ORDER BY id",
            (run["started_at"], run["finished_at"]),
        )
        return {row["resource_id"]: TRANSITIONS[row["transition"]] for row in rows}

    def last_alive(self, resource_id: str) -> datetime | None:
        """When the source last gave content live."""
        row = self._db.execute(
            "SELECT MAX(fetched_at) AS last FROM fetches"
            " WHERE resource_id = ? AND origin = 'live' AND sha256 IS NOT NULL",
            (resource_id,),
        ).fetchone()
        return moment(row["last"]) if row else None

    def read_back(self, recorded: RowSelector, with_text: bool = True) -> Callable[[], Snapshot]:
        """Within the transaction that stored a fetch: its read, by the condition on
        its id Writer.record returned; call the result after the transaction for the
        fetch as stored (Database.read_later: on PostgreSQL it comes with the commit).
        Without `with_text`, its text is None (the rest is read as ever)."""
        row = self._db.read_later(snapshot_query(with_text) + "WHERE f." + recorded[0], recorded[1])

        def snapshot() -> Snapshot:
            found = row()
            assert found is not None, recorded
            return snapshot_from(found)

        return snapshot

    def read_back_many(self, ids: list[int], with_text: bool = True) -> Callable[[], dict[int, Snapshot]]:
        """read_back of several fetches, by their ids, in one read: each by its id."""
        rows = self._db.read_all_later(snapshot_query(with_text) + f"WHERE f.id IN ({', '.join(map(str, map(int, ids)))})")

        def snapshots() -> dict[int, Snapshot]:
            found = {snapshot.fetch_id: snapshot for snapshot in map(snapshot_from, rows())}
            assert len(found) == len(ids), (ids, list(found))
            return found

        return snapshots

    def latest(self, resource_id: str) -> Snapshot | None:
        """The fetch that says where the source stands: the latest, except that an
        archive-only attempt that found nothing (`--archive-only`: no live check, no
        content) is passed over for an earlier fetch; it is in `history`."""
        latest = self._one("WHERE f.resource_id = ? ORDER BY f.id DESC LIMIT 1", (resource_id,))
        if latest is None or not latest.is_archive_only_miss:
            return latest
        return self._one(f"WHERE f.resource_id = ? AND NOT {_ARCHIVE_MISS} ORDER BY f.id DESC LIMIT 1",
                         (resource_id,)) or latest

    def latest_with_content(self, resource_id: str) -> Snapshot | None:
        return self._one(
            "WHERE f.resource_id = ? AND f.sha256 IS NOT NULL ORDER BY f.id DESC LIMIT 1", (resource_id,)
        )

    def history(self, resource_id: str) -> list[Snapshot]:
        """Every fetch of a source, newest first, without the text."""
        query = snapshot_query(with_text=False) + "WHERE f.resource_id = ? ORDER BY f.id DESC"
        return [snapshot_from(row) for row in self._db.execute(query, (resource_id,))]

    def url_of(self, resource_id: str) -> str | None:
        row = self._db.execute("SELECT url FROM resources WHERE resource_id = ?", (resource_id,)).fetchone()
        return row["url"] if row else None

    def iter_latest(self) -> Iterator[Snapshot]:
        """The latest fetch of every resource (as `latest` picks it), streamed."""
        query = snapshot_query() + (
            "WHERE f.id IN (SELECT MAX(id) FROM fetches GROUP BY resource_id) ORDER BY f.resource_id"
        )
        for row in self._db.execute(query):
            snapshot = snapshot_from(row)
            if snapshot.is_archive_only_miss:  # rare: look again
                snapshot = self.latest(snapshot.resource_id) or snapshot
            yield snapshot

    def _one(self, where: str, params: tuple[Any, ...]) -> Snapshot | None:
        row = self._db.execute(snapshot_query() + where, params).fetchone()
        return snapshot_from(row) if row else None


# Snapshot.is_archive_only_miss, in SQL over `fetches f`.
_ARCHIVE_MISS = "(f.origin = 'archive' AND f.sha256 IS NULL AND f.live_outcome IS NULL)"


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
