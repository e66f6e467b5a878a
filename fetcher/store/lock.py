"""One refresh at a time per store: an exclusive, non-blocking flock on
`snapshots/refresh.lock` (SQLite), or a session-level advisory lock in the
database (PostgreSQL). The kernel (or the server, when the connection drops)
releases the lock when its process dies, so a killed run never leaves a stale
lock behind."""

from __future__ import annotations

import fcntl
import json
import os
from datetime import datetime
from pathlib import Path
from typing import TextIO

from fetcher.core.errors import Busy
from fetcher.core.timestamps import rfc3339
from fetcher.store.dialect import Database

LOCK_NAME = "refresh.lock"


class RunLock:
    def __init__(self, directory: Path):
        self.path = directory / LOCK_NAME
        self._handle: TextIO | None = None

    def acquire(self, started_at: datetime, trigger: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            raise Busy(f"another run holds {self.path}: {_describe(holder)}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "started_at": rfc3339(started_at), "trigger": trigger}))
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.truncate(0)
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


_RUN_LOCK = "SELECT pg_try_advisory_lock(hashtextextended('fetcher: refresh', 0))"
_RUN_UNLOCK = "SELECT pg_advisory_unlock(hashtextextended('fetcher: refresh', 0))"


class DatabaseRunLock:
    """RunLock's counterpart in a PostgreSQL store, held by the store's connection."""

    def __init__(self, db: Database):
        self._db, self._held = db, False

    def acquire(self, started_at: datetime, trigger: str) -> None:
        if not self._db.execute(_RUN_LOCK).fetchone()[0]:
            row = self._db.execute(
                "SELECT pid, trigger, started_at FROM runs WHERE status = 'running' ORDER BY id DESC LIMIT 1"
            ).fetchone()
            holder = f"pid {row['pid']} ({row['trigger']}), started {row['started_at']}" if row else "another process"
            raise Busy(f"another run holds {self._db.where}: {holder}")
        self._held = True

    def release(self) -> None:
        if self._held:
            self._db.execute(_RUN_UNLOCK)
            self._held = False

    def __enter__(self) -> DatabaseRunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _describe(holder: str) -> str:
    try:
        data = json.loads(holder)
        return f"pid {data['pid']} ({data['trigger']}), started {data['started_at']}"
    except (ValueError, KeyError, TypeError):
        return "a process that has not written its details yet"
