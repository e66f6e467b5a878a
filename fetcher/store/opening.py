"""The one way every command opens the store the config names: the SQLite store
in [storage] dir, or the PostgreSQL database of [storage] database
($FETCHER_DATABASE). Commands call these, never a backend's constructor."""

from __future__ import annotations

from fetcher.core.config import Config
from fetcher.core.errors import StoreError
from fetcher.store.sqlite import Store


def open_store(config: Config) -> Store:
    """The store, for reading and writing; a new one is created at the current schema."""
    if config.database:
        raise StoreError(f"{config.database_display}: the PostgreSQL store is not available yet")
    return Store(config.storage_dir)


def open_existing(config: Config) -> Store | None:
    """The store, read-only, for a reading command; None when nothing has been stored yet."""
    if config.database:
        raise StoreError(f"{config.database_display}: the PostgreSQL store is not available yet")
    return Store.existing(config.storage_dir)
