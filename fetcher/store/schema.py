"""The store's schema, as one ordered list of versioned steps (STEPS), for both
engines. A change once a version has shipped is one more Step at the end:
its SQL (written for SQLite; fetcher.store.dialect turns its DDL words into
PostgreSQL's) and, where the engines need different SQL, a `postgresql` text.
SCHEMA_VERSION, what `fetcher store migrate` brings a store to, follows.

A new store is made by running every step (see fetcher.store.migrations); an
existing one older than the code is refused until `fetcher store migrate`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    version: int
    sql: str  # SQLite's, and PostgreSQL's unless `postgresql` is given
    postgresql: str | None = None
    about: str = ""


SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
    resource_id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    title TEXT,
    first_seen TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS contents (
    sha256 TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    text_chars INTEGER NOT NULL,
    title TEXT,
    language TEXT,
    published TEXT,
    text TEXT NOT NULL,
    first_seen TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS fetches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    resource_id TEXT NOT NULL REFERENCES resources(resource_id),
    url TEXT NOT NULL,
    final_url TEXT NOT NULL,
    fetched_at TEXT NOT NULL,
    origin TEXT NOT NULL,
    http_status INTEGER,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL,
    elapsed_ms INTEGER NOT NULL,
    redirects TEXT NOT NULL DEFAULT '[]',
    content_type TEXT,
    sha256 TEXT REFERENCES contents(sha256),
    changed INTEGER NOT NULL DEFAULT 0,
    etag TEXT,
    last_modified TEXT,
    live_status INTEGER,
    live_outcome TEXT,
    archive_outcome TEXT,
    archive_name TEXT,
    archive_url TEXT,
    captured_at TEXT,
    transition TEXT
);
CREATE INDEX IF NOT EXISTS fetches_by_resource ON fetches(resource_id, id);
-- The fetches that received a body (not a 304, not an archived copy already held):
-- what a preview asks for the response that delivered the content a check confirmed.
-- An index only (no data changes, no version bump): a store opened for writing gets it.
CREATE INDEX IF NOT EXISTS fetches_delivering ON fetches(resource_id, sha256, id)
    WHERE http_status IS NOT NULL AND outcome != 'not-modified';
CREATE TABLE IF NOT EXISTS health (
    resource_id TEXT PRIMARY KEY REFERENCES resources(resource_id),
    last_checked TEXT NOT NULL,
    last_ok TEXT,
    last_outcome TEXT NOT NULL,
    failures_in_a_row INTEGER NOT NULL,
    failing_since TEXT,
    etag TEXT,
    last_modified TEXT,
    content_sha256 TEXT,
    last_status INTEGER,
    last_detail TEXT NOT NULL DEFAULT '',
    moved_to TEXT
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL,
    trigger TEXT NOT NULL,
    pid INTEGER NOT NULL,
    summary TEXT
);
CREATE TABLE IF NOT EXISTS captures (
    resource_id TEXT NOT NULL REFERENCES resources(resource_id),
    archive TEXT NOT NULL,
    looked_up_at TEXT NOT NULL,
    timestamp TEXT,
    original TEXT,
    raw_url TEXT,
    captured_at TEXT,
    mime TEXT,
    sha256 TEXT REFERENCES contents(sha256),
    PRIMARY KEY (resource_id, archive)
);
"""

# Bodies in the database (PostgreSQL's default; SQLite keeps them as files):
# content-addressed, gzip-compressed as in files.
BODIES_TABLE = """
CREATE TABLE IF NOT EXISTS bodies (
    sha256 TEXT PRIMARY KEY,
    gzipped BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS fetcher_schema (version INTEGER NOT NULL);
"""

# Statements a store opened for writing runs every time: what was added to a
# version without a bump (idempotent, no data changes).
ENSURE = """
CREATE INDEX IF NOT EXISTS fetches_delivering ON fetches(resource_id, sha256, id)
    WHERE http_status IS NOT NULL AND outcome != 'not-modified';
"""

STEPS: tuple[Step, ...] = (
    Step(1, SCHEMA, SCHEMA + BODIES_TABLE, "resources, contents, fetches, health, runs, captures"),
)

SCHEMA_VERSION = STEPS[-1].version
