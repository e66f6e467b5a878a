"""The store's writes, within one transaction (`Store.transaction()`): a fetch with
its content and the source's new health row, an archive lookup, a run's record.

The store decides nothing here: the engine hands it the health row to write
(fetcher.core.health.next_health) and this module writes what it is given."""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import Any

from fetcher.core.health import Health
from fetcher.core.models import Capture, FetchResult, Source
from fetcher.core.states import Transition
from fetcher.store.dialect import Database, RowSelector, upsert
from fetcher.store.rows import HEALTH_COLUMNS, capture_row, health_from, health_row, text

_HEALTH_UPSERT = upsert(("resource_id",), list(HEALTH_COLUMNS))
_CAPTURE_COLUMNS = ["resource_id", "archive", "looked_up_at", "timestamp", "original", "raw_url", "captured_at",
                    "mime", "sha256"]
_CAPTURE_UPSERT = upsert(("resource_id", "archive"), _CAPTURE_COLUMNS)


class Writer:
    """Writes (and the reads a write depends on) inside one open transaction."""

    def __init__(self, db: Database):
        self._db = db
        self._locked: set[str] = set()
        self._previous: dict[str, str | None] = {}  # the last content hash, read with the health
        self._titles: dict[str, str | None] = {}  # the title of a source the store knows, read with the health

    def _lock(self, resource_id: str) -> None:
        """The source's write lock (fetcher.store.dialect), once per transaction."""
        if resource_id not in self._locked:
            self._db.lock_source(resource_id)
            self._locked.add(resource_id)

    def health(self, resource_id: str) -> Health:
        """The source's health as this transaction sees it (fresh: none yet). From
        here to the commit no other writer reads or writes this source's health."""
        self._lock(resource_id)
        return self._health_from(tuple(self._db.execute(_HEALTH_AND_LAST_SHA, (resource_id,) * 3).fetchone()),
                                 resource_id)

    def healths(self, resource_ids: list[str]) -> dict[str, Health]:
        """health() of several sources, each locked, read in one statement."""
        self._db.lock_sources([resource_id for resource_id in resource_ids if resource_id not in self._locked])
        self._locked.update(resource_ids)
        ids, param = self._db.id_table(resource_ids)
        rows = self._db.execute(_HEALTHS_AND_LAST_SHAS.format(ids=ids), (param,)).fetchall()
        return {row[0]: self._health_from(tuple(row)[1:], row[0]) for row in rows}

    def _health_from(self, row: tuple[Any, ...], resource_id: str) -> Health:
        """The columns of _known_columns: the health, and what record() needs."""
        self._previous[resource_id] = row[0]
        if row[1]:
            self._titles[resource_id] = row[2]
        return health_from(row[3:]) if row[3] is not None else Health(resource_id)

    def record(self, result: FetchResult, health: Health | None,
               transition: Transition | None) -> RowSelector:
        """Store one fetch, its content if new (its body file already written) and,
        after a live check, the source's new health. Returns the condition on
        `id` that selects the fetch (Store.read_back reads it back)."""
        changed = self._before_fetch(result)
        if health is not None:
            self._db.insert("health", health_row(health), _HEALTH_UPSERT)
        fetch = self._db.inserted("fetches", _fetch_row(result, changed, transition))
        self._after_fetch(result)
        return fetch

    def record_many(self, records: list[tuple[FetchResult, Health | None, Transition | None]]) -> dict[str, int]:
        """record() of several fetches, each of a different source and none with
        new content: their health rows in one statement, their fetch rows in
        another. Returns each fetch's id by its source."""
        assert not any(result.new_content for result, _, _ in records), "a new content goes through record()"
        fetches = [_fetch_row(result, self._before_fetch(result), transition) for result, _, transition in records]
        self._db.insert_rows("health", [health_row(health) for _, health, _ in records if health], _HEALTH_UPSERT)
        ids = self._db.inserted_ids("fetches", fetches, "resource_id")
        for result, _, _ in records:
            self._after_fetch(result)
        return ids

    def _before_fetch(self, result: FetchResult) -> bool:
        """What goes before a fetch's row: its source (new, or retitled) and its
        content if new. Returns whether its content differs from the last one."""
        resource_id = result.source.resource_id
        self._lock(resource_id)  # what `changed` is computed from stays as read
        source = result.source
        if resource_id not in self._titles or source.title not in (None, self._titles.pop(resource_id)):
            self._remember(source, result.fetched_at)  # (known, and no new title: nothing to write)
        sha = result.content_sha256
        if resource_id in self._previous:
            previous = self._previous.pop(resource_id)
        else:
            previous = _sha(self._db.execute(_LAST_SHA, (resource_id,)).fetchone())
        if result.new_content:
            self._keep_content(result)
        return sha is not None and sha != previous

    def _after_fetch(self, result: FetchResult) -> None:
        """An archived copy's capture, now that its content is known."""
        capture, sha = result.capture, result.content_sha256
        if capture is not None and sha is not None:
            self._db.execute(
                "UPDATE captures SET sha256 = ?, timestamp = ?, raw_url = ?, captured_at = ?"
                " WHERE resource_id = ? AND archive = ?",
                (sha, capture.timestamp, capture.raw_url, capture.captured_at.isoformat(),
                 result.source.resource_id, capture.archive),
            )

    def remember_lookup(self, source: Source, archive: str, when: datetime, capture: Capture | None) -> None:
        """What an archive lookup found (a capture, or none), for later runs."""
        self._remember(source, when)
        row = {"resource_id": source.resource_id, "archive": archive, "looked_up_at": when.isoformat(),
               **capture_row(capture), "sha256": None}
        self._db.insert("captures", row, _CAPTURE_UPSERT)

    def start_run(self, started_at: datetime, trigger: str) -> int:
        """A run record, `running` under this process's id until finish_run."""
        row = {"started_at": started_at.isoformat(), "status": "running", "trigger": trigger, "pid": os.getpid()}
        return self._db.insert("runs", row, returning=True)

    def finish_run(self, run_id: int, finished_at: datetime, status: str, summary: dict[str, Any] | None) -> None:
        self._db.execute(
            "UPDATE runs SET finished_at = ?, status = ?, summary = ? WHERE id = ?",
            (finished_at.isoformat(), status, json.dumps(summary) if summary else None, run_id),
        )

    def _remember(self, source: Source, when: datetime) -> None:
        self._db.execute(
            "INSERT INTO resources (resource_id, url, title, first_seen) VALUES (?,?,?,?)"
            " ON CONFLICT(resource_id) DO UPDATE SET title = COALESCE(excluded.title, resources.title)",
            (source.resource_id, source.url, source.title, when.isoformat()),
        )

    def _keep_content(self, result: FetchResult) -> None:
        extracted, download = result.extracted, result.download
        assert extracted is not None  # new_content says so
        self._db.insert("contents", {
            "sha256": download.sha256, "kind": extracted.kind, "size_bytes": len(download.body),
            "text_chars": len(extracted.text), "title": extracted.title, "language": extracted.language,
            "published": extracted.published, "text": extracted.text, "first_seen": result.fetched_at.isoformat(),
        }, "ON CONFLICT (sha256) DO NOTHING")


_LAST_SHA = "SELECT sha256 FROM fetches WHERE resource_id = ? AND sha256 IS NOT NULL ORDER BY id DESC LIMIT 1"


def _known_columns(source: str) -> str:
    """What a write reads of the source whose id is `source` (a parameter, or a
    column), in one statement: its last content hash; whether the store knows the
    source, and its title; then its health row's columns (all NULL: no health yet)."""
    return (f"({_LAST_SHA.replace('?', source)}) AS last_sha256, r.resource_id IS NOT NULL AS known,"
            f" r.title AS known_title, {', '.join('h.' + name for name in HEALTH_COLUMNS)}")


_HEALTH_AND_LAST_SHA = (
    f"SELECT {_known_columns('?')} FROM (SELECT 1) AS one LEFT JOIN resources AS r ON r.resource_id = ?"
    " LEFT JOIN health AS h ON h.resource_id = ?"
)
# The same for several sources, each row led by its id: {ids} is Database.id_table's.
_HEALTHS_AND_LAST_SHAS = (
    f"SELECT ids.id, {_known_columns('ids.id')} FROM {{ids}}"
    " LEFT JOIN resources AS r ON r.resource_id = ids.id LEFT JOIN health AS h ON h.resource_id = ids.id"
)


def _sha(row: Any) -> str | None:
    return row["sha256"] if row else None


def _fetch_row(result: FetchResult, changed: bool, transition: Transition | None) -> dict[str, Any]:
    """The `fetches` row of a result."""
    download, capture = result.download, result.capture
    return {
        "resource_id": result.source.resource_id, "url": result.source.url, "final_url": download.final_url,
        "fetched_at": result.fetched_at.isoformat(), "origin": result.origin, "http_status": download.http_status,
        "outcome": result.outcome.value, "detail": _detail(result), "attempts": result.attempts,
        "elapsed_ms": result.elapsed_ms, "redirects": json.dumps([[h.url, h.status] for h in download.redirects]),
        "content_type": download.content_type, "sha256": result.content_sha256, "changed": int(changed),
        "etag": download.etag, "last_modified": download.last_modified, "live_status": result.live_status,
        "live_outcome": text(result.live_outcome), "archive_outcome": text(result.archive_outcome),
        "archive_name": capture.archive if capture else None, "archive_url": capture.raw_url if capture else None,
        "captured_at": capture.captured_at.isoformat() if capture else None, "transition": text(transition),
        **_render_columns(result),
    }


def _render_columns(result: FetchResult) -> dict[str, Any]:
    """The rendering decision and, beside a rendered DOM (or a failed rendering), the static body's hash."""
    note = result.render
    static = note.static.sha256 if note is not None and note.static is not None else None
    return {"render": text(note.rendering) if note else None, "render_reason": note.reason if note else None,
            "static_sha256": static}


def _detail(result: FetchResult) -> str:
    """The fetch row's detail; an archived copy's row also says what the live attempt got."""
    own = result.own_detail
    if result.origin == "archive" and result.live_detail:
        return f"live: {result.live_detail}" + (f"; {own}" if own else "")
    return own
