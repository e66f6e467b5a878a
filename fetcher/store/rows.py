"""The store's rows as frozen values and back, by column name.

Each value's field names are the column names it is read from (a query aliases
the few that differ), so no column order is written by hand: each query names
its columns from the value's fields (`snapshot_query`, `HEALTH_QUERY`), rows are
read back by those names, and writes go through named parameters built from a
dict (`insert`)."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from fetcher.core.health import Health
from fetcher.core.models import Capture, Hop, Snapshot
from fetcher.core.outcomes import Outcome, Rendering
from fetcher.core.states import Transition


@dataclass(frozen=True)
class CachedLookup:
    """What an earlier archive lookup found, from `captures`."""

    looked_up_at: datetime
    capture: Capture | None  # None: the archive had no capture
    sha256: str | None  # the capture's content, once replayed and stored


@dataclass(frozen=True)
class RunRecord:
    """One row of `runs`, as stored. A run still `running` whose process is gone
    was killed: the reader decides that (fetcher.views.runs), not the store."""

    id: int
    started_at: datetime
    finished_at: datetime | None
    status: str  # running, completed, interrupted, failed
    trigger: str  # refresh, schedule
    pid: int
    summary: dict[str, Any] | None


# Snapshot fields read from elsewhere than the `fetches` column of the same name.
_SNAPSHOT_COLUMNS = {
    "fetch_id": "f.id",
    "content_first_seen": "c.first_seen",
    **{name: f"c.{name}" for name in ("size_bytes", "text_chars", "sha256", "title", "text", "language", "published")},
    "content_http_status": "d.http_status",
    "content_fetched_at": "d.fetched_at",
}

# `d`: the fetch that delivered the body this fetch holds: itself when it received
# one, else (a 304; an archived copy already held, asked for nothing) the latest
# earlier fetch of the same source and body that did. None without content.
_RECEIVED = "{0}.http_status IS NOT NULL AND {0}.outcome != 'not-modified'"
_DELIVERED = (
    f"LEFT JOIN fetches d ON d.id = CASE WHEN f.sha256 IS NULL THEN NULL WHEN {_RECEIVED.format('f')} THEN f.id"
    " ELSE (SELECT e.id FROM fetches e WHERE e.resource_id = f.resource_id AND e.sha256 = f.sha256"
    f" AND e.id < f.id AND {_RECEIVED.format('e')} ORDER BY e.id DESC LIMIT 1) END "
)


@functools.cache  # built once: every stored fetch is read back with it
def snapshot_query(with_text: bool = True) -> str:
    """SELECT … FROM fetches joined with contents and with the fetch that delivered
    the body, one column per Snapshot field (text NULL without `with_text`);
    append a WHERE clause."""
    nulls = {"text"} if not with_text else set()
    columns = [
        f"{'NULL' if field.name in nulls else _SNAPSHOT_COLUMNS.get(field.name, f'f.{field.name}')} AS {field.name}"
        for field in fields(Snapshot)
    ]
    return f"SELECT {', '.join(columns)} FROM fetches f LEFT JOIN contents c ON c.sha256 = f.sha256 " + _DELIVERED


_SNAPSHOT_FIELDS = tuple(field.name for field in fields(Snapshot))


def snapshot_from(row: Any) -> Snapshot:
    """A row of `snapshot_query` (its columns named after Snapshot's fields) as a Snapshot."""
    values = dict(zip(_SNAPSHOT_FIELDS, row))
    return Snapshot(**{
        **values,
        "fetched_at": datetime.fromisoformat(values["fetched_at"]),
        "outcome": _OUTCOMES[values["outcome"]],
        "changed": bool(values["changed"]),
        "redirects": tuple(Hop(url, status) for url, status in json.loads(values["redirects"])),
        "content_first_seen": moment(values["content_first_seen"]),
        "live_outcome": outcome(values["live_outcome"]),
        "archive_outcome": outcome(values["archive_outcome"]),
        "captured_at": moment(values["captured_at"]),
        "content_fetched_at": moment(values["content_fetched_at"]),
        "transition": TRANSITIONS[values["transition"]] if values["transition"] else None,
        "render": RENDERINGS[values["render"]] if values["render"] else None,
    })


HEALTH_COLUMNS = tuple(field.name for field in fields(Health))
HEALTH_QUERY = f"SELECT {', '.join(HEALTH_COLUMNS)} FROM health "  # append a WHERE clause, or none
_HEALTH_MOMENTS = ("last_checked", "last_ok", "failing_since")


def health_from(row: Any) -> Health:
    """A row of HEALTH_QUERY (its columns named after Health's fields) as a Health."""
    values = dict(zip(HEALTH_COLUMNS, row))
    for name in _HEALTH_MOMENTS:
        values[name] = moment(values[name])
    values["last_outcome"] = outcome(values["last_outcome"])
    return Health(**values)


def health_row(health: Health) -> dict[str, Any]:
    """The `health` row of a Health: dates as ISO text, the outcome as its value."""
    values: dict[str, Any] = {name: getattr(health, name) for name in HEALTH_COLUMNS}
    for name in _HEALTH_MOMENTS:
        values[name] = iso(values[name])
    values["last_outcome"] = text(health.last_outcome)
    return values


CAPTURE_COLUMNS = "archive, timestamp, original, raw_url, captured_at, mime"


def capture_from(row: Any) -> Capture:
    return Capture(row["archive"], row["timestamp"], row["original"], row["raw_url"],
                   datetime.fromisoformat(row["captured_at"]), row["mime"])


def capture_row(capture: Capture | None) -> dict[str, Any]:
    """The capture's columns of a `captures` row; all NULL when there was none."""
    return {
        "timestamp": capture.timestamp if capture else None,
        "original": capture.original if capture else None,
        "raw_url": capture.raw_url if capture else None,
        "captured_at": capture.captured_at.isoformat() if capture else None,
        "mime": capture.mime if capture else None,
    }


def run_from(row: Any) -> RunRecord:
    return RunRecord(
        id=row["id"], started_at=datetime.fromisoformat(row["started_at"]), finished_at=moment(row["finished_at"]),
        status=row["status"], trigger=row["trigger"], pid=row["pid"],
        summary=json.loads(row["summary"]) if row["summary"] else None,
    )


def moment(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


_OUTCOMES = {kind.value: kind for kind in Outcome}  # a dict lookup: Outcome(value) costs ~10 times more
TRANSITIONS = {kind.value: kind for kind in Transition}
RENDERINGS = {kind.value: kind for kind in Rendering}


def outcome(value: str | None) -> Outcome | None:
    return _OUTCOMES[value] if value else None


def text(value: Outcome | Transition | Rendering | None) -> str | None:
    return value.value if value is not None else None
