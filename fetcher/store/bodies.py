"""Where raw bodies are kept, gzip-compressed and content-addressed (by the
SHA-256 of the uncompressed body): files under the store directory (SQLite's
store), a `bodies` table (PostgreSQL's, by default) or an S3-compatible bucket
([storage] bodies = "s3://…", fetcher.store.s3). Every kind writes a body at
once and durably, before the transaction whose rows refer to it commits."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from fetcher.store.dialect import Database
from fetcher.store.files import remove_stale_temporaries, write_atomically


class Bodies:
    """A place for bodies. `put` is idempotent: a body already there is left."""

    where = ""

    def has(self, sha: str) -> bool:
        raise NotImplementedError

    def put(self, sha: str, gzipped: bytes) -> None:
        raise NotImplementedError

    def get(self, sha: str) -> bytes:
        """The gzipped body; FileNotFoundError when it is not there."""
        raise NotImplementedError

    def names(self) -> Iterator[str]:
        """The SHA-256 of every body kept."""
        raise NotImplementedError

    def remove_stale_temporaries(self) -> int:
        return 0


class BodyFiles(Bodies):
    """bodies/<first two hex digits>/<sha256>.gz, each written by rename."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.where = str(directory)

    def path(self, sha: str) -> Path:
        return self.directory / sha[:2] / f"{sha}.gz"

    def has(self, sha: str) -> bool:
        return self.path(sha).exists()

    def put(self, sha: str, gzipped: bytes) -> None:
        path = self.path(sha)
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda out: out.write(gzipped))

    def get(self, sha: str) -> bytes:
        return self.path(sha).read_bytes()

    def names(self) -> Iterator[str]:
        return (path.name[:-3] for path in sorted(self.directory.glob("??/*.gz")))

    def remove_stale_temporaries(self) -> int:
        """Delete body files half-written by a process that is gone (a killed run)."""
        return remove_stale_temporaries(self.directory.glob("*"), time.time())


class BodyTable(Bodies):
    """The `bodies` table of a PostgreSQL store; each put commits on its own."""

    def __init__(self, db: Database):
        self.db = db
        self.where = f"{db.where} (table bodies)"

    def has(self, sha: str) -> bool:
        return self.db.execute("SELECT 1 FROM bodies WHERE sha256 = ?", (sha,)).fetchone() is not None

    def put(self, sha: str, gzipped: bytes) -> None:
        self.db.insert("bodies", {"sha256": sha, "gzipped": gzipped}, "ON CONFLICT (sha256) DO NOTHING")

    def get(self, sha: str) -> bytes:
        row = self.db.execute("SELECT gzipped FROM bodies WHERE sha256 = ?", (sha,)).fetchone()
        if row is None:
            raise FileNotFoundError(f"{self.where}: no body {sha}")
        return bytes(row[0])

    def names(self) -> Iterator[str]:
        return (row[0] for row in self.db.execute("SELECT sha256 FROM bodies ORDER BY sha256").fetchall())
