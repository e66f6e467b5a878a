"""A queued run's board in PostgreSQL: which sources the run holds, each one's
state (queued, running on a worker, done) and, once done, what its fetch was;
and which workers are alive and what they are doing.

The board is where the guarantees live: a source is marked done in the same
transaction as its fetch is stored, on the condition that it was not done
already (`mark_done`), so however many workers take it (a stalled job retried
while its first worker still runs, say) one fetch is stored. Progress and the
run's summary are counts over the board.
"""

from __future__ import annotations

import json
import os
import socket
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from fetcher.core.health import Health
from fetcher.core.models import RunSummary, Source
from fetcher.core.outcomes import Outcome
from fetcher.core.states import Transition
from fetcher.store.dialect import CONDITION_FAILED, RowSelector
from fetcher.store.rows import HEALTH_COLUMNS, health_from

SCHEMA = """
CREATE TABLE IF NOT EXISTS fetcher_queue_runs (
    run_id bigint PRIMARY KEY,
    started_at timestamptz NOT NULL,
    trigger text NOT NULL,
    options jsonb NOT NULL,
    total integer NOT NULL,
    not_due integer NOT NULL,
    finished_at timestamptz
);
CREATE TABLE IF NOT EXISTS fetcher_run_sources (
    run_id bigint NOT NULL REFERENCES fetcher_queue_runs ON DELETE CASCADE,
    resource_id text NOT NULL,
    position integer NOT NULL,
    url text NOT NULL,
    title text,
    state text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'done')),
    worker text,
    outcome text,
    has_content boolean,
    changed boolean,
    archived boolean,
    transition text,
    PRIMARY KEY (run_id, resource_id),
    UNIQUE (run_id, position)
);
CREATE INDEX IF NOT EXISTS fetcher_run_sources_open ON fetcher_run_sources (run_id) WHERE state <> 'done';
-- Raised by the mark when another worker stored the source first: the store
-- rolls the fetch's transaction back (fetcher.store.dialect.CONDITION_FAILED).
CREATE OR REPLACE FUNCTION fetcher_marked_once(resource text, run bigint, marked bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    IF marked = 0 THEN
        RAISE EXCEPTION '% was stored for run % by another worker', resource, run USING ERRCODE = '{condition_failed}';
    END IF;
    RETURN marked;
END $$;
CREATE TABLE IF NOT EXISTS fetcher_workers (
    name text PRIMARY KEY,
    started_at timestamptz NOT NULL DEFAULT now(),
    seen_at timestamptz NOT NULL DEFAULT now(),
    concurrency integer NOT NULL
);
"""

# A source done, with what its fetch `f` was (read from its row, written just
# before in the same transaction).
_DONE_AS_FETCHED = """
    UPDATE fetcher_run_sources s SET state = 'done', worker = %(worker)s,
        outcome = COALESCE(f.live_outcome, f.outcome), has_content = f.sha256 IS NOT NULL,
        changed = f.changed <> 0, archived = f.origin = 'archive', transition = f.transition
    FROM fetches f"""

# The source done, unless it is done already, when it raises (and the
# transaction rolls back). Sent with the commit: no round trip of its own.
MARK_DONE = """
WITH marked AS (""" + _DONE_AS_FETCHED + """
    WHERE f.{fetch} AND s.run_id = %(run_id)s AND s.resource_id = %(resource_id)s AND s.state <> 'done'
    RETURNING 1)
SELECT fetcher_marked_once(%(resource_id)s, %(run_id)s, (SELECT count(*) FROM marked))
"""


# The same for several fetches of a run at once: all marked, or (one of them done
# already) the whole transaction rolls back.
MARK_MANY = """
WITH marked AS (""" + _DONE_AS_FETCHED + """
    WHERE f.id = ANY(%(ids)s::bigint[]) AND s.run_id = %(run_id)s AND s.resource_id = f.resource_id
        AND s.state <> 'done'
    RETURNING 1)
SELECT fetcher_marked_once(%(sources)s, %(run_id)s, ((SELECT count(*) FROM marked) = %(expected)s)::int)
"""


FINISHED = "fetcher_run_finished"  # the channel a run's end is notified on (its id the payload)


def worker_name() -> str:
    """This worker's name: its machine and process id (what `status` shows)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def create_schema(db: psycopg.Connection[Any]) -> None:
    """The board's tables, if missing (the caller holds the lock that keeps two
    workers starting at once from racing to create them)."""
    with db.transaction():
        db.execute(SCHEMA.replace("{condition_failed}", CONDITION_FAILED))


def add_run(db: psycopg.Connection[Any], run_id: int, started_at: datetime, trigger: str,
            options: dict[str, bool], sources: list[Source], not_due: int) -> None:
    """Put the run and its sources on the board, in the order given (COPY: a
    million sources take seconds). Within the caller's transaction."""
    db.execute(
        "INSERT INTO fetcher_queue_runs (run_id, started_at, trigger, options, total, not_due)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (run_id, started_at, trigger, json.dumps(options), len(sources), not_due),
    )
    columns = "run_id, resource_id, position, url, title"
    with db.cursor().copy(f"COPY fetcher_run_sources ({columns}) FROM STDIN") as copy:
        for position, source in enumerate(sources):
            copy.write_row((run_id, source.resource_id, position, source.url, source.title))


def mark_done(db: psycopg.Connection[Any], run_id: int, worker: str, resource_id: str, fetch: RowSelector) -> None:
    """Within the fetch's write transaction: the source is done with what its fetch
    (the row `fetch` selects, as Writer.record returned it) was, unless it is done
    already, when the store's transaction rolls back whole and raises
    AlreadyFetched (fetcher.store.dialect.CONDITION_FAILED)."""
    condition, params = fetch
    assert not params, "the fetch is selected by its id's sequence (PostgresDatabase.inserted)"
    db.execute(MARK_DONE.format(fetch=condition), {"run_id": run_id, "worker": worker, "resource_id": resource_id})


def mark_many(db: psycopg.Connection[Any], run_id: int, worker: str, fetches: dict[str, int]) -> None:
    """mark_done for several fetches of the run (each one's id by its source), in
    one statement: unless every one of them is marked, the transaction rolls back."""
    db.execute(MARK_MANY, {"run_id": run_id, "worker": worker, "ids": list(fetches.values()),
                           "sources": f"one of {len(fetches)} sources", "expected": len(fetches)})


async def give_up(db: psycopg.AsyncConnection[Any], run_id: int, first: int, last: int, worker: str) -> None:
    """Sources whose fetch could not be stored, however often tried: done for the
    run (an internal error, with no fetch stored: they stay due)."""
    await db.execute(
        "UPDATE fetcher_run_sources SET state = 'done', worker = %s, outcome = %s, has_content = false"
        " WHERE run_id = %s AND position BETWEEN %s AND %s AND state <> 'done'",
        (worker, Outcome.INTERNAL_ERROR.value, run_id, first, last),
    )


@dataclass(frozen=True)
class Claim:
    """A source a worker has taken for a run, how the run fetches, and the
    source's health as the store held it (its validators)."""

    run_id: int
    source: Source
    options: dict[str, bool]
    health: Health


_CLAIM = f"""
WITH taken AS (
    UPDATE fetcher_run_sources SET state = 'running', worker = %(worker)s
    WHERE run_id = %(run_id)s AND position BETWEEN %(first)s AND %(last)s AND state <> 'done'
    RETURNING resource_id, position, url, title)
SELECT t.resource_id, t.url, t.title, r.options, {', '.join('h.' + name for name in HEALTH_COLUMNS)}
FROM taken t JOIN fetcher_queue_runs r ON r.run_id = %(run_id)s LEFT JOIN health h ON h.resource_id = t.resource_id
ORDER BY t.position
"""


async def claim(db: psycopg.AsyncConnection[Any], run_id: int, first: int, last: int, worker: str) -> list[Claim]:
    """Take the run's sources at positions first…last that are not done (they show
    as running on this worker), in order, each with its health: one statement a job."""
    cursor = await db.execute(_CLAIM, {"run_id": run_id, "first": first, "last": last, "worker": worker})
    claims = []
    for row in await cursor.fetchall():
        resource_id, url, title, options = row[:4]
        health = health_from(row[4:]) if row[4] is not None else Health(resource_id)
        claims.append(Claim(run_id, Source(url, resource_id, title), options, health))
    return claims


@dataclass(frozen=True)
class Progress:
    total: int
    done: int
    finished: bool
    started_at: datetime


def progress(db: psycopg.Connection[Any], run_id: int) -> Progress:
    row = db.execute(
        "SELECT r.total, r.finished_at IS NOT NULL, r.started_at,"
        " (SELECT count(*) FROM fetcher_run_sources s WHERE s.run_id = r.run_id AND s.state = 'done')"
        " FROM fetcher_queue_runs r WHERE r.run_id = %s", (run_id,),
    ).fetchone()
    assert row is not None, run_id
    total, finished, started_at, done = row
    return Progress(total, done, finished, started_at)


def has_schema(db: psycopg.Connection[Any]) -> bool:
    row = db.execute("SELECT to_regclass('fetcher_queue_runs') IS NOT NULL").fetchone()
    return bool(row and row[0])


def open_run(db: psycopg.Connection[Any]) -> tuple[int, Progress] | None:
    """The queued run not yet finished (there is at most one), and its progress."""
    row = db.execute("SELECT run_id FROM fetcher_queue_runs WHERE finished_at IS NULL ORDER BY run_id LIMIT 1"
                     ).fetchone()
    return (row[0], progress(db, row[0])) if row else None


def unfinished_runs(db: psycopg.Connection[Any]) -> list[int]:
    """Runs whose every source is done but that no one has recorded as finished."""
    rows = db.execute(
        "SELECT run_id FROM fetcher_queue_runs r WHERE finished_at IS NULL AND NOT EXISTS"
        " (SELECT 1 FROM fetcher_run_sources s WHERE s.run_id = r.run_id AND s.state <> 'done')"
    ).fetchall()
    return [row[0] for row in rows]


def summary(db: psycopg.Connection[Any], run_id: int, finished_at: datetime) -> RunSummary:
    """The run's summary, over every worker's work (health and interruption aside)."""
    head = db.execute("SELECT started_at, not_due FROM fetcher_queue_runs WHERE run_id = %s", (run_id,)).fetchone()
    assert head is not None, run_id
    rows = db.execute(
        "SELECT outcome, has_content, changed, archived, transition, count(*) FROM fetcher_run_sources"
        " WHERE run_id = %s AND state = 'done' GROUP BY 1, 2, 3, 4, 5", (run_id,),
    ).fetchall()
    return _summed(head[0], finished_at, head[1], rows)


def _summed(started_at: datetime, finished_at: datetime, not_due: int, rows: Iterable[tuple[Any, ...]]) -> RunSummary:
    counts: Counter[Outcome] = Counter()
    marks: Counter[str] = Counter()
    for outcome, has_content, changed, archived, transition, n in rows:
        counts[Outcome(outcome)] += n
        if has_content:
            marks["changed" if changed else "unchanged"] += n
            marks["archived"] += n if archived else 0
        marks[transition or ""] += n
    failed = sum(n for kind, n in counts.items() if not kind.is_success)
    return RunSummary(
        started_at, finished_at, dict(counts), marks["changed"], marks["unchanged"], failed, marks["archived"],
        marks[Transition.NEWLY_FAILING.value], marks[Transition.RECOVERED.value], not_due,
    )


def record_finish(db: psycopg.Connection[Any], run_id: int, finished_at: datetime) -> None:
    """The run's end, and a notification of it (FINISHED) to whoever follows it
    (sent at commit: `db` is in autocommit mode, or the caller commits)."""
    db.execute("UPDATE fetcher_queue_runs SET finished_at = %s WHERE run_id = %s AND finished_at IS NULL",
               (finished_at, run_id))
    db.execute("SELECT pg_notify(%s, %s)", (FINISHED, str(run_id)))


def heartbeat(db: psycopg.Connection[Any], worker: str, concurrency: int) -> None:
    """This worker is alive; workers not seen for a day (killed long ago) are forgotten."""
    db.execute(
        "INSERT INTO fetcher_workers (name, concurrency) VALUES (%s, %s)"
        " ON CONFLICT (name) DO UPDATE SET seen_at = now()", (worker, concurrency),
    )
    db.execute("DELETE FROM fetcher_workers WHERE seen_at < now() - interval '1 day'")


def leave(db: psycopg.Connection[Any], worker: str) -> None:
    db.execute("DELETE FROM fetcher_workers WHERE name = %s", (worker,))


@dataclass(frozen=True)
class LiveWorker:
    name: str
    started_at: datetime
    seen_at: datetime
    concurrency: int
    doing: tuple[str, ...]  # the URLs it is fetching now


def live_workers(db: psycopg.Connection[Any], lease: float) -> Iterator[LiveWorker]:
    """The workers seen within the lease, each with the sources it is running."""
    rows = db.execute(
        "SELECT w.name, w.started_at, w.seen_at, w.concurrency, coalesce(array_agg(s.url ORDER BY s.url)"
        " FILTER (WHERE s.url IS NOT NULL), '{}') FROM fetcher_workers w"
        " LEFT JOIN fetcher_run_sources s ON s.worker = w.name AND s.state = 'running'"
        " WHERE w.seen_at > now() - make_interval(secs => %s) GROUP BY w.name ORDER BY w.name", (lease,),
    ).fetchall()
    for name, started_at, seen_at, concurrency, doing in rows:
        yield LiveWorker(name, started_at, seen_at, concurrency, tuple(doing))
