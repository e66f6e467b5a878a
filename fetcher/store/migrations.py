"""Bringing a store's schema to this code's version (fetcher.store.schema.STEPS).

A new, empty store is created at the current version when first opened for
writing. An existing store older than the code is refused, by reading and by
writing commands alike, with one line naming `fetcher store migrate`, which
applies the missing steps in one transaction (all or none)."""

from __future__ import annotations

from fetcher.core.errors import StoreError
from fetcher.store.dialect import Database, write_transaction
from fetcher.store.schema import ENSURE, SCHEMA_VERSION, STEPS

MIGRATE = "fetcher store migrate"


def check_version(db: Database) -> int:
    """The store's version, when this code can use it as it is (0: a new, empty
    store); StoreError for a store older (not migrated) or newer than the code."""
    version = db.version()
    if version > SCHEMA_VERSION:
        raise StoreError(f"{db.where}: written by a newer fetcher (schema {version}, this one knows {SCHEMA_VERSION})")
    if 0 < version < SCHEMA_VERSION:
        raise StoreError(f"{db.where}: the store is at schema {version}, this fetcher needs schema {SCHEMA_VERSION}:"
                         f" run `{MIGRATE}` (back up the store first)")
    return version


def prepare_for_writing(db: Database) -> None:
    """Create a new store at the current version, refuse one at another version,
    and run the idempotent ENSURE statements; writing the version again there
    finds out now, at opening, a store we may only read."""
    if check_version(db) == 0:
        migrate(db)
    with write_transaction(db):
        db.run_script(db.ddl(ENSURE))
        db.run_script(db.set_version(SCHEMA_VERSION))


def migrate(db: Database) -> tuple[int, int]:
    """Apply the steps the store lacks, in one transaction. Returns (from, to)."""
    with write_transaction(db):
        db.lock_source("fetcher: schema")  # two processes creating one new PostgreSQL store: one waits
        before = db.version()
        if before > SCHEMA_VERSION:
            raise StoreError(f"{db.where}: written by a newer fetcher (schema {before}), nothing to migrate")
        for step in STEPS:
            if step.version > before:
                sql = step.postgresql if db.name == "postgresql" and step.postgresql is not None else step.sql
                db.run_script(db.ddl(sql))
        if before < SCHEMA_VERSION:
            db.run_script(db.set_version(SCHEMA_VERSION))
    return before, SCHEMA_VERSION
