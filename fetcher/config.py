"""Read and validate config.toml once, at the edge. Any problem is one ConfigError line."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fetcher.models import Source
from fetcher.sources import BadURL, make_source

DEFAULT_CONFIG = "config.toml"
ENV_VAR = "FETCHER_CONFIG"
DEFAULT_USER_AGENT = "fetcher/0.1 (cached content previews of cited sources)"


class ConfigError(Exception):
    """The configuration cannot be used; the message is one line for the user."""


@dataclass(frozen=True)
class FetchSettings:
    user_agent: str = DEFAULT_USER_AGENT
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    deadline: float = 60.0
    max_bytes: int = 25 * 1024 * 1024
    concurrency: int = 16
    per_host_concurrency: int = 2
    per_host_delay: float = 1.0
    retries: int = 2
    max_retry_after: float = 120.0


@dataclass(frozen=True)
class Config:
    path: Path | None
    storage_dir: Path
    fetch: FetchSettings
    preview_chars: int
    sources: tuple[Source, ...]

    def source_by_id(self, resource_id: str) -> Source | None:
        return next((s for s in self.sources if s.resource_id == resource_id), None)


# key -> (kind, minimum): kinds are "str", "int", "float"
_FETCH_KEYS: dict[str, tuple[str, float | None]] = {
    "user_agent": ("str", None),
    "connect_timeout": ("float", 0.001),
    "read_timeout": ("float", 0.001),
    "deadline": ("float", 0.001),
    "max_bytes": ("int", 1),
    "concurrency": ("int", 1),
    "per_host_concurrency": ("int", 1),
    "per_host_delay": ("float", 0),
    "retries": ("int", 0),
    "max_retry_after": ("float", 0),
}
_TABLES = {"storage", "fetch", "preview", "sources"}


def config_path(explicit: str | None) -> Path:
    """The config file to use: --config, then $FETCHER_CONFIG, then ./config.toml."""
    return Path(explicit or os.environ.get(ENV_VAR) or DEFAULT_CONFIG)


def load_config(path: Path) -> Config:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from error
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the config file: {error.strerror or error}") from error
    return parse_config(raw, path)


def parse_config(raw: dict[str, Any], path: Path | None) -> Config:
    where = str(path) if path else "config"
    unknown = sorted(set(raw) - _TABLES)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_TABLES))})")
    base = path.parent if path else Path.cwd()
    storage = _table(raw, "storage", {"dir"}, where)
    fetch = _table(raw, "fetch", set(_FETCH_KEYS), where)
    preview = _table(raw, "preview", {"chars"}, where)
    storage_dir = Path(_value(storage, "dir", "str", None, "[storage]", where, "snapshots"))
    settings = FetchSettings(
        **{
            key: _value(fetch, key, kind, minimum, "[fetch]", where, getattr(FetchSettings, key))
            for key, (kind, minimum) in _FETCH_KEYS.items()
        }
    )
    return Config(
        path=path,
        storage_dir=storage_dir if storage_dir.is_absolute() else base / storage_dir,
        fetch=settings,
        preview_chars=_value(preview, "chars", "int", 1, "[preview]", where, 3000),
        sources=_sources(raw.get("sources", []), where),
    )


def _table(raw: dict[str, Any], name: str, known: set[str], where: str) -> dict[str, Any]:
    table = raw.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: [{name}] must be a table")
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"{where}: [{name}] unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    return table


def _value(table: dict, key: str, kind: str, minimum: float | None, label: str, where: str, default: Any) -> Any:
    if key not in table:
        return default
    value = table[key]
    ok = {
        "str": isinstance(value, str) and value.strip() != "",
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
    }[kind]
    names = {"str": "a non-empty string", "int": "a whole number", "float": "a number"}
    if not ok:
        raise ConfigError(f"{where}: {label} {key} must be {names[kind]}, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{where}: {label} {key} must be at least {minimum:g}, got {value!r}")
    return float(value) if kind == "float" else value


def _sources(entries: Any, where: str) -> tuple[Source, ...]:
    if not isinstance(entries, list):
        raise ConfigError(f"{where}: sources must be an array of tables ([[sources]])")
    sources = []
    for number, entry in enumerate(entries, start=1):
        label = f"[[sources]] #{number}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: {label} must be a table")
        unknown = sorted(set(entry) - {"url", "title", "tags"})
        if unknown:
            raise ConfigError(f"{where}: {label} unknown key {unknown[0]!r} (known: tags, title, url)")
        if "url" not in entry:
            raise ConfigError(f"{where}: {label} has no url")
        url = _value(entry, "url", "str", None, label, where, None)
        title = _value(entry, "title", "str", None, label, where, None)
        tags = entry.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ConfigError(f"{where}: {label} tags must be a list of strings, got {tags!r}")
        try:
            sources.append(make_source(url, title, tags))
        except BadURL as error:
            raise ConfigError(f"{where}: {label} url: {error}") from error
    return tuple(sources)
