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


def resolve(target: str, config: Config, store: Store | None) -> Source:
    """A configured or stored source by resource id, or any http(s) URL."""
    if looks_like_resource_id(target):
        source = config.source_by_id(target)
        url = store.url_of(target) if store and source is None else None
        if source is not None:
            return source
        if url is None:
            raise BadInput(f"no source with resource id {target} in {config.path} or the store")
        return make_source(url)
    try:
        source = make_source(target)
    except BadURL as error:
        raise BadInput(f"{error}; TARGET is a resource id (16 hex digits) or an http(s) URL") from error
    return config.source_by_id(source.resource_id) or source


def pick(config: Config, only: tuple[str, ...]) -> list[Source]:
    """The configured sources, or those named by --only (each must be configured)."""
    if not only:
        return list(config.sources)
    picked = []
    for wanted in only:
        source = config.source_by_id(wanted)
        if source is None:
            raise BadInput(f"--only {wanted}: no source with that resource id in {config.path}")
        picked.append(source)
    return picked
