"""The one way every command opens the store the config names: the SQLite store
in [storage] dir, or the PostgreSQL database of [storage] database
($FETCHER_DATABASE; libpq's PG* variables and ~/.pgpass fill in what the URL
leaves out), with bodies as [storage] bodies says. Commands call these, never a
backend's constructor."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from fetcher.core.config import Config
from fetcher.core.errors import StoreError
from fetcher.core.locations import redact_url
from fetcher.store.bodies import Bodies, BodyFiles, BodyTable
from fetcher.store.dialect import Database, PostgresDatabase, SqliteDatabase
from fetcher.store.migrations import check_version, prepare_for_writing
from fetcher.store.sqlite import DB_NAME, Store


def open_store(config: Config) -> Store:
    """The store, for reading and writing; a new one is created at the current schema."""
    if config.database:
        db = connect(config.database)
        with _closed_on_error(db):
            prepare_for_writing(db)
        return Store.on(db, bodies_for(config, db))
    store = Store(config.storage_dir)
    return Store.on(store.database, bodies_for(config, store.database), config.storage_dir) if config.bodies else store


def open_existing(config: Config) -> Store | None:
    """The store, read-only, for a reading command; None when nothing has been stored yet."""
    if not config.database:
        store = Store.existing(config.storage_dir)
        if store is None or not config.bodies:
            return store
        return Store.on(store.database, bodies_for(config, store.database), config.storage_dir)
    db = connect(config.database, read_only=True)
    with _closed_on_error(db):
        if check_version(db) == 0:
            db.close()
            return None
    return Store.on(db, bodies_for(config, db))


def open_unchecked(config: Config) -> Database:
    """The store's database, whatever its schema version (for `fetcher store
    migrate`); an SQLite store not there yet is an empty database (version 0)."""
    if config.database:
        return connect(config.database)
    path = config.storage_dir / DB_NAME
    try:
        new = not path.exists()
        if new:
            (config.storage_dir / "bodies").mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(path, timeout=30, check_same_thread=False)
        if new:
            connection.execute("PRAGMA journal_mode=WAL")
        return SqliteDatabase(connection, str(path))
    except sqlite3.DatabaseError as error:
        raise StoreError(f"{path}: cannot open the store: {error}") from error
    except OSError as error:
        raise StoreError(f"{config.storage_dir}: cannot use the store directory: {error}") from error


def connect(url: str, read_only: bool = False) -> Database:
    """A PostgreSQL connection; StoreError (one line, no password) when it fails."""
    where = redact_url(url)
    try:
        import psycopg
    except ImportError as error:
        raise StoreError(f"{where}: the PostgreSQL store needs psycopg: pip install 'fetcher[postgresql]'") from error
    try:
        return PostgresDatabase(url, where, read_only=read_only)
    except psycopg.Error as error:
        message = " ".join(str(error).split()).replace(url, where)
        raise StoreError(f"{where}: cannot connect to the database: {message}") from error


def bodies_for(config: Config, db: Database) -> Bodies:
    """Where this store's bodies are: the bucket of [storage] bodies, else the
    database's `bodies` table (PostgreSQL) or files beside the index (SQLite)."""
    if config.bodies:
        from fetcher.store.s3 import BodyBucket  # boto3, only when configured

        return BodyBucket(config.bodies, config.s3_endpoint)
    if db.name == "postgresql":
        return BodyTable(db)
    return BodyFiles(config.storage_dir / "bodies")


@contextmanager
def _closed_on_error(db: Database) -> Iterator[None]:
    try:
        yield
    except BaseException:
        db.close()
        raise
