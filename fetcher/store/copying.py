"""Copying one store into another (`fetcher store copy`), across engines and
body locations: every body first, then each table's rows in batches, each
batch one transaction, ids kept. Safe to run again after an interruption: a
row already there is left as it is (the history is never overwritten) or, for
the rows that hold a current state (health, runs, captures), brought up to
date; a body already there is not written again. At the end each table's row
count in the target must equal the source's."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fetcher.core.errors import StoreError
from fetcher.store.dialect import upsert, write_transaction
from fetcher.store.sqlite import Store

# In an order that satisfies the foreign keys: (table, key, rows that only grow)
TABLES: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("resources", ("resource_id",), False),
    ("contents", ("sha256",), True),
    ("fetches", ("id",), True),
    ("health", ("resource_id",), False),
    ("runs", ("id",), False),
    ("captures", ("resource_id", "archive"), False),
)
BATCH = 500


@dataclass(frozen=True)
class Copied:
    """What a copy left in the target: rows per table (equal to the source's), and bodies."""

    counts: dict[str, int]
    bodies: int
    bodies_written: int


def copy_store(source: Store, target: Store, progress: Callable[[str, int], None] = lambda _t, _n: None) -> Copied:
    """Copy `source` into `target` (see the module docstring); StoreError when
    the counts differ at the end (the target held rows of another store)."""
    shas = [row[0] for row in source.database.execute("SELECT sha256 FROM contents ORDER BY sha256").fetchall()]
    written = 0
    for sha in shas:
        if not target.body_store.has(sha):
            target.body_store.put(sha, source.body(sha))
            written += 1
    progress("bodies", len(shas))
    counts = {}
    for table, keys, grows in TABLES:
        counts[table] = _copy_table(source, target, table, keys, grows)
        progress(table, counts[table])
    for table, _keys, _grows in TABLES:
        held = _count(target, table)
        if held != counts[table]:
            raise StoreError(f"{target.where}: after the copy, {table} has {held} rows, the source {counts[table]}:"
                             " the target held another store's rows (copy into an empty store)")
    return Copied(counts, len(shas), written)


def _copy_table(source: Store, target: Store, table: str, keys: tuple[str, ...], grows: bool) -> int:
    cursor = source.database.stream(f"SELECT * FROM {table} ORDER BY {', '.join(keys)}")
    copied = 0
    while batch := cursor.fetchmany(BATCH):
        rows = [dict(zip(row.keys(), row)) for row in batch]
        conflict = (f"ON CONFLICT ({', '.join(keys)}) DO NOTHING" if grows
                    else upsert(keys, list(rows[0])))
        with write_transaction(target.database):
            target.database.insert_many(table, rows, conflict)
        copied += len(rows)
    cursor.close()
    if "id" in keys:
        target.database.after_explicit_ids(table)
    return copied


def _count(store: Store, table: str) -> int:
    return int(store.database.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
