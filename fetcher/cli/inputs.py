"""What a command takes from the user: the global options, the config (with
logging set up from it and the command line), and a target resolved to a
source. Problems are BadInput (or ConfigError): one line, exit 2."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click

from fetcher.cli import logs
from fetcher.core.config import Config, load_config
from fetcher.core.errors import BadInput, BadURL
from fetcher.core.models import Source
from fetcher.core.sources import looks_like_resource_id, make_source
from fetcher.store.opening import open_existing
from fetcher.store.sqlite import Store


@dataclass(frozen=True)
class Globals:
    """The options given before the command name."""

    config_path: Path
    log_level: str | None
    log_format: str | None
    log_file: str | None


def load(context: click.Context) -> Config:
    """The validated config; logging set up from it and the command line."""
    options: Globals = context.obj
    config = load_config(options.config_path)
    try:
        logs.configure(
            options.log_level or config.log.level, options.log_format or config.log.format,
            options.log_file or config.log.file,
        )
    except OSError as error:
        raise BadInput(f"cannot open the log file: {error}") from error
    return config


def existing_store(config: Config, store: Store | None = None, source: Source | None = None) -> Store:
    """The store, opened read-only for a reading command (or `store`, already
    opened); BadInput (exit 2) when nothing has been stored there yet, so that no
    command reads "nothing" silently. `source`: the one the command asked about."""
    store = store or open_existing(config)
    if store is None:
        about = f"{source.resource_id} ({source.url}) has not been fetched yet: " if source else ""
        raise BadInput(about + no_store(config))
    return store


def stored_source(config: Config, target: str) -> tuple[Source, Store]:
    """The source TARGET names (configured or stored) and the store that holds
    its fetches, for the commands that read one source's record."""
    opened = open_existing(config)
    source = resolve(target, config, opened)
    return source, existing_store(config, opened, source)


def no_store(config: Config) -> str:
    return (f"there is no store yet in {config.database_display}, nothing has been fetched"
            " (run `fetcher refresh`, or `fetcher fetch TARGET` for one source)")


def unknown_source(target: str, config: Config) -> BadInput:
    """The one error for a target that names no source, the same in every command."""
    return BadInput(
        f"unknown source {target!r}: neither {config.path} nor the store has it"
        " (TARGET is a resource id, 16 hex digits, or an http(s) URL)"
    )


def resolve(target: str, config: Config, store: Store | None, *, any_url: bool = False) -> Source:
    """A configured or stored source, named by its resource id or its URL.

    With `any_url` (a one-off `fetch`), any http(s) URL is a source, stored under
    its own id; otherwise a URL neither configured nor stored is unknown. A target
    that is neither a resource id nor like a URL (no `://`) is unknown too; a
    malformed URL (`ftp://…`, no host) says what is wrong with it."""
    if looks_like_resource_id(target):
        source = config.source_by_id(target)
        url = store.url_of(target) if store and source is None else None
        if source is not None:
            return source
        if url is None:
            raise unknown_source(target, config)
        return make_source(url)
    if "://" not in target:
        raise unknown_source(target, config)
    try:
        source = make_source(target)
    except BadURL as error:
        raise BadInput(f"{error}; TARGET is a resource id (16 hex digits) or an http(s) URL") from error
    configured = config.source_by_id(source.resource_id)
    if configured is not None or any_url or (store and store.url_of(source.resource_id) is not None):
        return configured or source
    raise unknown_source(target, config)


def pick(config: Config, only: tuple[str, ...], store: Store | None) -> list[Source]:
    """The configured sources, or those named by --only (a resource id or a URL,
    each configured or stored; the same names `show` and `fetch` take)."""
    if not only:
        return list(config.sources)
    picked: dict[str, Source] = {}
    for wanted in only:
        source = resolve(wanted, config, store)
        picked.setdefault(source.resource_id, source)
    return list(picked.values())
