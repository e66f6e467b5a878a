"""The one place where SQLite and PostgreSQL differ, behind one small interface
(`Database`): how to connect, placeholders (the store's SQL is written with `?`
and `:name`; PostgreSQL gets `%s` and `%(name)s`), the id of an inserted row,
the schema version's home, what a write transaction locks, DDL words, how many
rows go in one statement, and which errors are the machine's trouble (a run
stops) rather than one source's.

Everything else — INSERT … ON CONFLICT, partial indexes, the queries — is SQL both
engines take as written. Timestamps are ISO 8601 text in both, so that every
output is the same whichever engine holds the store.

psycopg (3) is imported only when a PostgreSQL store is opened."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from fetcher.core.errors import AlreadyFetched, StoreLost

# A row: read by column name (row["sha256"]) and in order (tuple(row)).
Row = Any

# The condition (and its parameters) that selects one row just written by
# `Database.inserted`, in the same transaction: "id = ?", or on PostgreSQL the
# id's sequence, so that a read of the row need not wait for its id.
RowSelector = tuple[str, tuple[Any, ...]]
# The SQLSTATE a statement in a write transaction raises when the condition its
# caller wrote it on does not hold (fetcher.run.board's mark): the transaction
# rolls back and PostgresDatabase.transaction raises AlreadyFetched.
CONDITION_FAILED = "FT001"


class Database:
    """A connection to one store's database, of either engine."""

    name = ""
    where = ""  # what messages call it: a file path, or the URL without its password
    # store calls that may run at once, each on its own thread (PostgreSQL: and its own
    # connection; a worker sets more, fetcher.run.worker); SQLite: one
    threads = 1
    # errors that are one value's or one query's (a run goes on), and those of the machine
    value_errors: tuple[type[BaseException], ...] = ()
    machine_errors: tuple[type[BaseException], ...] = ()

    def execute(self, sql: str, params: Any = ()) -> Any:
        raise NotImplementedError

    def insert(self, table: str, values: dict[str, Any], conflict: str = "", returning: bool = False) -> int:
        """Write one row by column name, `conflict` being an ON CONFLICT clause;
        with `returning`, the row's id."""
        raise NotImplementedError

    def insert_many(self, table: str, rows: list[dict[str, Any]], conflict: str = "") -> None:
        """Write rows (each with the same columns, by name) in one statement's batch."""
        raise NotImplementedError

    def inserted(self, table: str, values: dict[str, Any]) -> RowSelector:
        """Write one row of a table with an `id`; returns the condition on `id` (and
        its parameters) that selects it in this transaction, so that a read of it
        can follow without waiting for the id (PostgreSQL: one round trip fewer)."""
        return "id = ?", (self.insert(table, values, returning=True),)

    def insert_rows(self, table: str, rows: list[dict[str, Any]], conflict: str = "") -> None:
        """Write rows (each with the same columns, by name): on PostgreSQL in one
        statement, whatever their number."""
        self.insert_many(table, rows, conflict)

    def inserted_ids(self, table: str, rows: list[dict[str, Any]], key: str) -> dict[Any, int]:
        """Write rows of a table with an `id` (each with the same columns, and a
        different `key` column value); returns each row's id by its `key`."""
        return {row[key]: self.insert(table, row, returning=True) for row in rows}

    def id_table(self, ids: list[str]) -> tuple[str, Any]:
        """A FROM item `ids` with one text column `id`, the given values, and the
        one parameter it takes."""
        return "(SELECT value AS id FROM json_each(?)) AS ids", json.dumps(ids)

    def read_all_later(self, sql: str, params: Any = ()) -> Callable[[], list[Any]]:
        """As read_later, for every row of the answer."""
        rows = self.execute(sql, params).fetchall()
        return lambda: rows

    def after_explicit_ids(self, table: str) -> None:
        """After rows were written with their ids given: new rows get higher ones."""

    def stream(self, sql: str) -> Any:
        """A cursor over a large result, read with fetchmany without holding it all."""
        return self.execute(sql)

    def read_later(self, sql: str, params: Any = ()) -> Callable[[], Any]:
        """A read of one row (None if there is none) sent now, its answer taken by
        calling what this returns: PostgreSQL's, within a write transaction, comes
        with the commit (so call it after the transaction); SQLite's is read at once."""
        row = self.execute(sql, params).fetchone()
        return lambda: row

    def begin(self) -> None:
        """Start a write transaction."""
        raise NotImplementedError

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction: committed at the end, rolled back if it raises."""
        self.begin()
        try:
            yield
        except BaseException:
            self.rollback()
            raise
        self.commit()

    def commit(self) -> None:
        self.execute("COMMIT")

    def rollback(self) -> None:
        self.execute("ROLLBACK")

    def lock_source(self, resource_id: str) -> None:
        """Within a write transaction: no other writer reads-then-writes this
        source's health until this transaction ends."""

    def lock_sources(self, resource_ids: list[str]) -> None:
        """lock_source for each, in one order for every writer (no deadlock)."""
        for resource_id in sorted(resource_ids):
            self.lock_source(resource_id)

    def version(self) -> int:
        raise NotImplementedError

    def set_version(self, version: int) -> str:
        """The statement that records the schema version."""
        raise NotImplementedError

    def ddl(self, sql: str) -> str:
        """The store's DDL (written for SQLite) for this engine."""
        return sql

    def run_script(self, sql: str) -> None:
        """Run several statements, in the open transaction."""
        raise NotImplementedError

    def tables(self) -> set[str]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


def upsert(keys: tuple[str, ...], columns: list[str]) -> str:
    """ON CONFLICT (keys) DO UPDATE SET each other column to the new row's value."""
    updates = ", ".join(f"{name} = excluded.{name}" for name in columns if name not in keys)
    return f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}"


class SqliteDatabase(Database):
    """An SQLite file: BEGIN IMMEDIATE takes the one write lock, so what a write
    transaction reads is not changed by another writer before it commits."""

    name = "sqlite"
    value_errors = (sqlite3.IntegrityError, sqlite3.ProgrammingError)
    machine_errors = (OSError, sqlite3.DatabaseError)

    def __init__(self, connection: sqlite3.Connection, where: str):
        connection.row_factory = sqlite3.Row
        self.connection, self.where = connection, where

    def execute(self, sql: str, params: Any = ()) -> Any:
        return self.connection.execute(sql, params)

    def insert(self, table: str, values: dict[str, Any], conflict: str = "", returning: bool = False) -> int:
        names = ", ".join(values)
        sql = f"INSERT INTO {table} ({names}) VALUES ({', '.join(':' + n for n in values)}) {conflict}"
        return self.connection.execute(sql, values).lastrowid or 0

    def insert_many(self, table: str, rows: list[dict[str, Any]], conflict: str = "") -> None:
        if rows:
            names = list(rows[0])
            self.connection.executemany(
                f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join(':' + n for n in names)}) {conflict}",
                rows)

    def begin(self) -> None:
        self.connection.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.connection.commit()

    def rollback(self) -> None:
        self.connection.rollback()

    def version(self) -> int:
        return int(self.connection.execute("PRAGMA user_version").fetchone()[0])

    def set_version(self, version: int) -> str:
        return f"PRAGMA user_version={int(version)}"

    def run_script(self, sql: str) -> None:
        for statement in statements(sql):
            self.connection.execute(statement)

    def tables(self) -> set[str]:
        return {row[0] for row in self.connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def close(self) -> None:
        self.connection.close()


_DDL = (("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),)
_QUESTION = re.compile(r"\?")
_NAMED = re.compile(r"(?<![:\w]):(\w+)")


class PostgresDatabase(Database):
    """A PostgreSQL database over psycopg 3, in autocommit mode outside explicit
    write transactions (a reading command holds no transaction open). A write
    transaction takes a transaction-scoped advisory lock per source it writes."""

    name = "postgresql"

    def __init__(self, url: str, where: str, read_only: bool = False):
        import psycopg

        self.value_errors = (psycopg.IntegrityError, psycopg.ProgrammingError, psycopg.DataError)
        self.machine_errors = (OSError, psycopg.Error)
        self._broken_errors = psycopg.OperationalError
        self.where = where
        self._url, self._read_only = url, read_only
        self._first = self._connect()
        self._others: list[Any] = []  # the other threads' connections (threads > 1)
        self._first_taken = False
        self._local = threading.local()
        self._guard = threading.Lock()
        self._translated: dict[str, str] = {}

    def _connect(self) -> Any:
        import psycopg

        connection = psycopg.connect(self._url, autocommit=True, row_factory=_rows)
        if self._read_only:
            connection.execute("SET default_transaction_read_only = on")
        return connection

    @property
    def connection(self) -> Any:
        """The connection: the one made at open, or with `threads` > 1, this thread's
        own (the first thread to ask gets the one made at open)."""
        if self.threads == 1:
            return self._first
        own = getattr(self._local, "connection", None)
        if own is None:
            with self._guard:
                own = self._connect() if self._first_taken else self._first
                self._first_taken = True
                if own is not self._first:
                    self._others.append(own)
            self._local.connection = own
        return own

    def execute(self, sql: str, params: Any = ()) -> Any:
        with self._lost():
            return self.connection.execute(self._sql(sql), params)

    @contextmanager
    def _lost(self) -> Iterator[None]:
        """A broken connection (the server stopped or went away) is StoreLost: one line,
        for reading commands too; other errors stay as they are (see _machine_trouble)."""
        try:
            yield
        except self._broken_errors as error:
            if not self.connection.broken and not self.connection.closed:
                raise
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise StoreLost(f"{self.where}: lost the connection to the database: {first}") from error

    def _sql(self, sql: str) -> str:
        translated = self._translated.get(sql)
        if translated is None:
            translated = _NAMED.sub(r"%(\1)s", _QUESTION.sub("%s", sql.replace("%", "%%")))
            self._translated[sql] = translated
        return translated

    def insert(self, table: str, values: dict[str, Any], conflict: str = "", returning: bool = False) -> int:
        values = _without_nul(values)
        names = ", ".join(values)
        sql = (f"INSERT INTO {table} ({names}) VALUES ({', '.join(f'%({n})s' for n in values)}) {conflict}"
               + (" RETURNING id" if returning else ""))
        cursor = self.connection.execute(sql, values)
        row: Any = cursor.fetchone() if returning else None
        return int(row[0]) if returning else 0

    def insert_many(self, table: str, rows: list[dict[str, Any]], conflict: str = "") -> None:
        if rows:
            names = list(rows[0])
            with self.connection.cursor() as cursor:
                cursor.executemany(
                    f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join(f'%({n})s' for n in names)})"
                    f" {conflict}", rows)

    def inserted(self, table: str, values: dict[str, Any]) -> RowSelector:
        self.insert(table, values)
        return f"id = (SELECT currval(pg_get_serial_sequence('{table}', 'id')))", ()

    def insert_rows(self, table: str, rows: list[dict[str, Any]], conflict: str = "") -> None:
        if rows:
            self.connection.execute(*self._from_json(table, rows, conflict))

    def inserted_ids(self, table: str, rows: list[dict[str, Any]], key: str) -> dict[Any, int]:
        """One statement: the rows go as one JSON parameter, read by the table's own
        row type (json_populate_recordset), so the server plans and runs one
        statement for them all."""
        if not rows:
            return {}
        sql, params = self._from_json(table, rows, "")
        return {row[1]: int(row[0]) for row in self.connection.execute(sql + f" RETURNING id, {key}", params)}

    @staticmethod
    def _from_json(table: str, rows: list[dict[str, Any]], conflict: str) -> tuple[str, tuple[str]]:
        names = ", ".join(rows[0])
        return (f"INSERT INTO {table} ({names}) SELECT {names} FROM json_populate_recordset(NULL::{table}, %s)"
                f" {conflict}", (json.dumps([_without_nul(row) for row in rows]),))

    def id_table(self, ids: list[str]) -> tuple[str, Any]:
        return "unnest(?::text[]) AS ids(id)", ids

    def read_all_later(self, sql: str, params: Any = ()) -> Callable[[], list[Any]]:
        return self.execute(sql, params).fetchall

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction in pipeline mode, BEGIN to COMMIT: statements are
        sent without waiting for their results, and the connection waits only where
        a result is read (the Writer reads what it needs first, in one go) and at the
        commit, whose answer brings every other still to come (read_later's). A
        stored fetch: two round trips. (psycopg's own transaction() inside a pipeline
        syncs as it starts and twice as it ends: six.)

        A statement that raises CONDITION_FAILED (its caller's condition for the
        transaction did not hold: a source another worker stored first) rolls it
        all back, as AlreadyFetched with the statement's message."""
        import psycopg
        from psycopg.pq import TransactionStatus

        connection = self.connection
        with self._lost():
            try:
                with connection.pipeline():
                    connection.execute("BEGIN")
                    yield
                    connection.execute("COMMIT")
            except BaseException as error:
                if connection.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
                    connection.execute("ROLLBACK")  # (a failed COMMIT has ended it already)
                if isinstance(error, psycopg.Error) and error.sqlstate == CONDITION_FAILED:
                    raise AlreadyFetched(error.diag.message_primary or "already stored") from None
                raise

    def read_later(self, sql: str, params: Any = ()) -> Callable[[], Any]:
        cursor = self.execute(sql, params)
        return cursor.fetchone

    def stream(self, sql: str) -> Any:
        """A server-side cursor (WITH HOLD: no transaction is left open while it is read)."""
        with self._lost():
            cursor = self.connection.cursor(name=f"fetcher_stream_{id(sql)}", withhold=True)
            cursor.execute(self._sql(sql))
        return cursor

    def after_explicit_ids(self, table: str) -> None:
        self.connection.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), GREATEST((SELECT MAX(id) FROM {table}), 1))")

    def begin(self) -> None:
        self.connection.execute("BEGIN")

    def lock_source(self, resource_id: str) -> None:
        self.connection.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (resource_id,))

    def lock_sources(self, resource_ids: list[str]) -> None:
        self.connection.execute("SELECT pg_advisory_xact_lock(hashtextextended(id, 0)) FROM unnest(%s::text[]) AS id",
                                (sorted(resource_ids),))

    def version(self) -> int:
        if "fetcher_schema" not in self.tables():
            return 0
        row: Any = self.connection.execute("SELECT max(version) FROM fetcher_schema").fetchone()
        return int(row[0] or 0)

    def set_version(self, version: int) -> str:
        return f"DELETE FROM fetcher_schema; INSERT INTO fetcher_schema (version) VALUES ({int(version)})"

    def ddl(self, sql: str) -> str:
        for sqlite_words, postgresql_words in _DDL:
            sql = sql.replace(sqlite_words, postgresql_words)
        return sql

    def run_script(self, sql: str) -> None:
        for statement in statements(sql):
            self.connection.execute(statement)

    def tables(self) -> set[str]:
        rows = self.connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
        return {row[0] for row in rows}

    def close(self) -> None:
        for connection in [self._first, *self._others]:
            connection.close()


def _without_nul(values: dict[str, Any]) -> dict[str, Any]:
    """PostgreSQL's text cannot hold U+0000 (SQLite's can): where a page's text or
    title has one, it is stored as U+FFFD, the replacement character, rather
    than the fetch failing. The only way a PostgreSQL store's output can differ."""
    if not any(isinstance(value, str) and "\x00" in value for value in values.values()):
        return values
    return {name: value.replace("\x00", "\ufffd") if isinstance(value, str) else value
            for name, value in values.items()}


def statements(sql: str) -> Iterator[str]:
    """The statements of a script: `--` comments dropped, split at `;` (the
    store's DDL has no `;` inside a statement)."""
    text = "\n".join(line.split("--", 1)[0] for line in sql.splitlines())
    yield from (part.strip() for part in text.split(";") if part.strip())


class _Row(tuple):
    """A psycopg row read as sqlite3.Row is: by position, or by column name."""

    _index: dict[str, int] = {}

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


_SHAPES: dict[tuple[bytes, ...], type[_Row]] = {}


def _rows(cursor: Any) -> Callable[[Any], _Row]:
    """psycopg's row factory: one _Row class per result shape (made once). The
    column names are read from the raw result, as psycopg's own row factories
    do: `cursor.description` makes a Column (with its type looked up) for every
    column of every result, 48 for a stored 304 check (whose CPU went from 0.54
    to 0.47 ms without them)."""
    result = cursor.pgresult
    names = tuple(map(result.fname, range(result.nfields))) if result is not None else ()
    shaped = _SHAPES.get(names)
    if shaped is None:
        index = {name.decode(): i for i, name in enumerate(names)}  # the store's own column names: ASCII
        shaped = _SHAPES[names] = type("Row", (_Row,), {"_index": index})
    return shaped


def write_transaction(db: Database) -> AbstractContextManager[None]:
    """One write transaction on `db`: committed at the end, rolled back if it raises."""
    return db.transaction()
