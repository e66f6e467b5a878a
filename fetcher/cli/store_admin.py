"""`fetcher store`: the commands that look after the store itself —
`store migrate` (bring its schema to this fetcher's version) and `store copy`
(into another store, SQLite or PostgreSQL, e.g. to move to PostgreSQL and back)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click

from fetcher.cli.inputs import existing_store, load
from fetcher.core.config import Config
from fetcher.core.errors import BadInput, StoreError, StoreWriteFailed
from fetcher.core.locations import check_endpoint, check_s3
from fetcher.store.copying import copy_store
from fetcher.store.migrations import migrate as migrate_schema
from fetcher.store.opening import open_store, open_unchecked
from fetcher.store.sqlite import DB_NAME


@click.group()
def store() -> None:
    """Look after the store: migrate its schema, copy it to another database."""


@store.command()
@click.pass_context
def migrate(context: click.Context) -> None:
    """Bring the store's schema to this fetcher's version (all steps or none).

    A store older than the code is refused by every other command until this has
    run; a store not there yet is created. On PostgreSQL it also creates the run
    queue's tables (procrastinate's, the board's, the host pace table), which a
    worker or a queued refresh otherwise creates on first use. Back the store up first."""
    config = load(context)
    db = open_unchecked(config)
    try:
        before, after = migrate_schema(db)
        if config.database:
            _queue_tables(config.database, config.workers.queue)
    except db.machine_errors as error:  # not a database, no rights, the server went away: nothing was changed
        raise StoreError(f"{db.where}: cannot migrate the store: {' '.join(str(error).split())}") from error
    finally:
        db.close()
    if before == after:
        click.echo(f"{config.database_display}: already at schema {after}, nothing to do")
    elif before == 0:
        click.echo(f"{config.database_display}: created at schema {after}")
    else:
        click.echo(f"{config.database_display}: migrated from schema {before} to {after}")


def _queue_tables(url: str, queue_name: str) -> None:
    """The run queue's tables, if missing (fetcher.run.queue.create_schema)."""
    import asyncio

    from fetcher.run import queue

    asyncio.run(queue.create_schema(queue.make_app(url, queue_name), url))


@store.command()
@click.option("--to", "target", required=True, metavar="TARGET",
              help="A postgresql:// URL, or the directory of an SQLite store (made if missing).")
@click.option("--bodies", "bodies", metavar="S3", default=None,
              help='Put the bodies in this bucket ("s3://bucket/prefix"), as [storage] bodies does.')
@click.option("--s3-endpoint", "endpoint", metavar="URL", default=None,
              help="The S3-compatible server of --bodies (default: AWS), as [storage] s3_endpoint.")
@click.pass_context
def copy(context: click.Context, target: str, bodies: str | None, endpoint: str | None) -> None:
    """Copy every row and body of the configured store into TARGET.

    TARGET is a PostgreSQL database (postgresql://…, bodies into its `bodies`
    table) or a directory for an SQLite store (bodies as files); with --bodies,
    the bodies go to that S3 bucket instead (credentials as for [storage]
    bodies). Run it into an empty store; after an interruption, run it again:
    what is there is skipped or brought up to date. At the end every table's
    row count is checked against the source's."""
    config = load(context)
    destination = _with_bodies(_target_config(config, target), bodies, endpoint)
    if destination.database_display == config.database_display:
        raise BadInput(f"--to {destination.database_display}: that is the configured store itself")
    source = existing_store(config)
    into = open_store(destination)
    try:
        copied = copy_store(source, into, lambda table, rows: click.echo(f"  {table}: {rows}", err=True))
    except (*source.database.machine_errors, *into.database.machine_errors) as error:
        raise StoreWriteFailed(f"the copy stopped (run it again to go on): {' '.join(str(error).split())}") from error
    finally:
        into.close()
        source.close()
    counts = ", ".join(f"{table} {rows}" for table, rows in copied.counts.items())
    click.echo(f"copied {config.database_display} to {destination.database_display}: {counts},"
               f" bodies {copied.bodies} ({copied.bodies_written} written); counts checked")


def _with_bodies(config: Config, bodies: str | None, endpoint: str | None) -> Config:
    """The target's config with its bodies in the bucket --bodies names, checked as the config file's."""
    if endpoint is not None and bodies is None:
        raise BadInput("--s3-endpoint: it goes with --bodies s3://bucket/prefix")
    if bodies is None:
        return config
    try:
        return replace(config, bodies=check_s3(bodies), s3_endpoint=None if endpoint is None else check_endpoint(endpoint))
    except ValueError as error:
        raise BadInput(f"--bodies/--s3-endpoint: expected {error}") from error


def _target_config(config: Config, target: str) -> Config:
    """The config of the store TARGET names (bodies where that engine keeps them)."""
    if target.startswith(("postgresql://", "postgres://")):
        return replace(config, database=target, bodies=None)
    if "://" in target:
        raise BadInput(f"--to {target!r}: a postgresql:// URL or a directory")
    path = Path(target)
    directory = path.parent if path.name == DB_NAME else path
    return replace(config, database=None, storage_dir=directory.absolute(), bodies=None)
