"""Read and validate config.toml once, at the edge. Any problem is one ConfigError line."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from fetcher.core.checks import (
    check_bool, check_choice, check_cron, check_durations, check_float, check_hosts, check_int, check_str,
    check_http_url, check_timezone, parse_duration,
)
from fetcher.core.models import Source
from fetcher.core.sources import BadURL, make_source
from fetcher.core.errors import ConfigError
from fetcher.core.locations import check_endpoint, check_s3, database_from, redact_url

DEFAULT_CONFIG = "config.toml"
ENV_VAR = "FETCHER_CONFIG"
DEFAULT_USER_AGENT = "fetcher/0.1 (cached content previews of cited sources)"
S = TypeVar("S")


def _setting(default: Any, kind: str, minimum: float | None = None) -> Any:
    """A setting, declared once: its default, the kind of value it takes (a key of
    _CHECKS) and its least value. parse_config reads the keys a table may have,
    and how to check each, from the settings class's fields."""
    return field(default=default, metadata={"kind": kind, "min": minimum})


@dataclass(frozen=True)
class FetchSettings:
    user_agent: str = _setting(DEFAULT_USER_AGENT, "str")
    connect_timeout: float = _setting(10.0, "float", 0.001)
    read_timeout: float = _setting(30.0, "float", 0.001)
    deadline: float = _setting(60.0, "float", 0.001)
    max_bytes: int = _setting(25 * 1024 * 1024, "int", 1)
    concurrency: int = _setting(16, "int", 1)
    per_host_concurrency: int = _setting(2, "int", 1)
    per_host_delay: float = _setting(1.0, "float", 0)
    retries: int = _setting(2, "int", 0)
    max_retry_after: float = _setting(120.0, "float", 0)
    # seconds for a source across attempts; None: twice `deadline`
    source_deadline: float | None = _setting(None, "float", 0.001)
    # True: loopback, RFC 1918, link-local … may be fetched
    allow_private_networks: bool = _setting(False, "bool")
    # PEM file of the CAs trusted for HTTPS instead of the default ones; relative to the config file
    ca_bundle: str | None = _setting(None, "str")
    robots: str = _setting("obey", "robots")  # "obey" or "ignore"
    max_crawl_delay: float = _setting(30.0, "float", 0)  # the longest robots.txt Crawl-delay honoured
    extract_timeout: float = _setting(60.0, "float", 0.001)  # seconds one document may take in an extraction worker
    # bytes of address space an extraction worker may use
    extract_memory: int = _setting(1024 * 1024 * 1024, "int", 64 * 1024 * 1024)

    @property
    def source_time_limit(self) -> float:
        return self.source_deadline if self.source_deadline is not None else 2 * self.deadline


@dataclass(frozen=True)
class ArchiveSettings:
    """One Wayback-compatible archive: where to look captures up and replay them."""

    name: str = _setting("Wayback Machine", "str")
    cdx_url: str = _setting("https://web.archive.org/cdx/search/cdx", "url")
    replay_url: str = _setting("https://web.archive.org/web", "url")
    requests_per_minute: float = _setting(15.0, "float", 0.01)
    save_url: str = _setting("https://web.archive.org/save", "url")


@dataclass(frozen=True)
class ArchivePolicy:
    """When and how archived copies stand in for the live page."""

    enabled: bool = _setting(True, "bool")
    fallback_on_blocked: bool = _setting(True, "bool")
    fallback_on_rate_limited: bool = _setting(False, "bool")
    recheck_misses_after_days: float = _setting(7.0, "float", 0)
    save: bool = _setting(False, "bool")
    saves_per_minute: float = _setting(3.0, "float", 0.01)
    max_saves_per_run: int = _setting(20, "int", 0)


@dataclass(frozen=True)
class RefreshPolicy:
    """When a source is due, and when a failing one counts as dead."""

    every: float = _setting(86400.0, "duration")  # seconds between refreshes of a healthy source
    failure_backoff: tuple[float, ...] = _setting((86400.0, 3 * 86400.0, 7 * 86400.0), "durations")
    dead_after_failures: int = _setting(3, "int", 1)
    dead_after_days: float = _setting(3.0, "float", 0)


@dataclass(frozen=True)
class ScheduleSettings:
    cron: str = _setting("0 3 * * *", "cron")
    timezone: str = _setting("UTC", "timezone")
    shutdown_grace: float = _setting(30.0, "float", 0)  # seconds in-flight requests get after SIGTERM


@dataclass(frozen=True)
class RenderSettings:
    """Rendering client-side pages in a headless browser (fetcher.net.browser)."""

    enabled: bool | None = _setting(None, "bool")  # None: on when the browser is found, else off (said once)
    browser: str = _setting("/usr/bin/chromium", "str")  # the Chromium executable
    concurrency: int = _setting(2, "int", 1)  # pages rendered at a time
    deadline: float = _setting(20.0, "float", 0.1)  # seconds a page may take to load and settle
    max_dom_bytes: int = _setting(5 * 1024 * 1024, "int", 1024)  # a larger rendered DOM is too-large
    # bytes of resident memory the browser's processes may use together: over it, killed and restarted
    max_memory: int = _setting(2 * 1024 * 1024 * 1024, "int", 64 * 1024 * 1024)
    min_text_chars: int = _setting(200, "int", 0)  # static text shorter than this counts as "very short"
    hosts: tuple[str, ...] = _setting((), "hosts")  # hosts whose pages are always rendered


@dataclass(frozen=True)
class WorkerSettings:
    """`fetcher worker` on a PostgreSQL store: a worker whose heartbeat is older
    than `lease` seconds is taken for dead and its sources go to the others."""

    lease: float = _setting(60.0, "float", 1)
    queue: str = _setting("fetcher", "str")


@dataclass(frozen=True)
class LogSettings:
    level: str = _setting("info", "level")
    format: str = _setting("text", "log_format")
    file: str | None = _setting(None, "str")


@dataclass(frozen=True)
class Config:
    path: Path | None
    storage_dir: Path
    fetch: FetchSettings
    preview_chars: int
    sources: tuple[Source, ...]
    archive: ArchivePolicy = ArchivePolicy()
    archives: tuple[ArchiveSettings, ...] = (ArchiveSettings(),)
    refresh: RefreshPolicy = RefreshPolicy()
    schedule: ScheduleSettings = ScheduleSettings()
    log: LogSettings = LogSettings()
    render: RenderSettings = RenderSettings()
    workers: WorkerSettings = WorkerSettings()
    # [storage] database: a postgresql:// URL (None: the SQLite store in storage_dir);
    # $FETCHER_DATABASE overrides it. Never print it: print database_display.
    database: str | None = None
    bodies: str | None = None  # [storage] bodies: "s3://bucket/prefix" (None: beside the index)
    s3_endpoint: str | None = None  # [storage] s3_endpoint: the S3-compatible server's URL (None: AWS)

    @property
    def database_display(self) -> str:
        """Where the store is, for messages: the database URL without its password,
        or the store directory."""
        return redact_url(self.database) if self.database else str(self.storage_dir)

    def source_by_id(self, resource_id: str) -> Source | None:
        return next((s for s in self.sources if s.resource_id == resource_id), None)


LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
ROBOTS_MODES = ("obey", "ignore")
RENDER_MODES = ("auto", "always", "never")
_TABLES = {"storage", "fetch", "preview", "archive", "refresh", "schedule", "log", "render", "sources", "workers"}


def config_path(explicit: str | None) -> Path:
    """The config file to use: --config, then $FETCHER_CONFIG, then ./config.toml."""
    return Path(explicit or os.environ.get(ENV_VAR) or DEFAULT_CONFIG)


def load_config(path: Path) -> Config:
    try:
        if not path.is_file():  # raises PermissionError for a file in a directory we may not search
            raise ConfigError(f"{path}: config file not found")
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
    storage = _table(raw, "storage", {"dir", "database", "bodies", "s3_endpoint"}, where)
    fetch = _table(raw, "fetch", _names(FetchSettings), where)
    preview = _table(raw, "preview", {"chars"}, where)
    storage_dir = Path(_value(storage, "dir", "str", None, "[storage]", where, "snapshots"))
    archive = _table(raw, "archive", _names(ArchiveSettings) | _names(ArchivePolicy) | {"more"}, where)
    return Config(
        path=path,
        storage_dir=storage_dir if storage_dir.is_absolute() else base / storage_dir,
        fetch=_fetch_settings(fetch, base, where),
        preview_chars=_value(preview, "chars", "int", 1, "[preview]", where, 3000),
        sources=_sources(raw.get("sources", []), where),
        archive=_settings(ArchivePolicy, archive, "[archive]", where),
        archives=_archives(archive, where),
        refresh=_settings(RefreshPolicy, _table(raw, "refresh", _names(RefreshPolicy), where), "[refresh]", where),
        schedule=_settings(ScheduleSettings, _table(raw, "schedule", _names(ScheduleSettings), where), "[schedule]",
                           where),
        log=_log_settings(_table(raw, "log", _names(LogSettings), where), base, where),
        render=_settings(RenderSettings, _table(raw, "render", _names(RenderSettings), where), "[render]", where),
        workers=_settings(WorkerSettings, _table(raw, "workers", _names(WorkerSettings), where), "[workers]", where),
        database=database_from(storage, where),
        bodies=_value(storage, "bodies", "s3", None, "[storage]", where, None),
        s3_endpoint=_value(storage, "s3_endpoint", "endpoint", None, "[storage]", where, None),
    )


def _fetch_settings(table: dict[str, Any], base: Path, where: str) -> FetchSettings:
    """[fetch], with `ca_bundle` taken relative to the config file; it must be a file."""
    settings = _settings(FetchSettings, table, "[fetch]", where)
    if settings.ca_bundle is None:
        return settings
    bundle = Path(settings.ca_bundle).expanduser()
    bundle = bundle if bundle.is_absolute() else base / bundle
    if not bundle.is_file():
        raise ConfigError(f"{where}: [fetch] ca_bundle: no such file: {bundle}")
    return replace(settings, ca_bundle=str(bundle))


def _log_settings(table: dict[str, Any], base: Path, where: str) -> LogSettings:
    """[log], with a relative file taken relative to the config file, like [storage] dir."""
    settings = _settings(LogSettings, table, "[log]", where)
    if settings.file and not Path(settings.file).is_absolute():
        return LogSettings(settings.level, settings.format, str(base / settings.file))
    return settings


def _names(cls: type) -> set[str]:
    """The keys a settings class's table may have: its fields."""
    return {setting.name for setting in fields(cls)}


def _settings(cls: type[S], table: dict[str, Any], label: str, where: str) -> S:
    """A settings dataclass from a table: each key checked as its field's metadata
    says, in the order the fields are declared; defaults from the fields."""
    return cls(
        **{
            setting.name: _value(
                table, setting.name, setting.metadata["kind"], setting.metadata["min"], label, where, setting.default
            )
            for setting in fields(cls)  # type: ignore[arg-type]
        }
    )


def _archives(table: dict[str, Any], where: str) -> tuple[ArchiveSettings, ...]:
    """The [archive] endpoints, then each [[archive.more]], tried in that order."""
    known = _names(ArchiveSettings)
    first = {key: table[key] for key in known if key in table}
    more = table.get("more", [])
    if not isinstance(more, list) or not all(isinstance(entry, dict) for entry in more):
        raise ConfigError(f"{where}: archive.more must be an array of tables ([[archive.more]])")
    archives = [_settings(ArchiveSettings, first, "[archive]", where)]
    for number, entry in enumerate(more, start=1):
        label = f"[[archive.more]] #{number}"
        unknown = sorted(set(entry) - known)
        if unknown:
            raise ConfigError(f"{where}: {label} unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
        for key in ("cdx_url", "replay_url"):
            if key not in entry:
                raise ConfigError(f"{where}: {label} has no {key}")
        entry = {"name": f"archive {number + 1}", **entry}
        archives.append(_settings(ArchiveSettings, entry, label, where))
    names = [archive.name for archive in archives]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: archive names must differ, got {names!r}")
    return tuple(archives)


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
    try:
        value = _CHECKS[kind](value)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where}: {label} {key} must be {error}, got {table[key]!r}") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{where}: {label} {key} must be at least {minimum:g}, got {value!r}")
    return value


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "str": check_str,
    "url": check_http_url,
    "int": check_int,
    "float": check_float,
    "bool": check_bool,
    "duration": parse_duration,
    "durations": check_durations,
    "cron": check_cron,
    "timezone": check_timezone,
    "level": check_choice(LOG_LEVELS),
    "log_format": check_choice(LOG_FORMATS),
    "robots": check_choice(ROBOTS_MODES),
    "render": check_choice(RENDER_MODES),
    "hosts": check_hosts,
    "s3": check_s3,
    "endpoint": check_endpoint,
}


def _sources(entries: Any, where: str) -> tuple[Source, ...]:
    if not isinstance(entries, list):
        raise ConfigError(f"{where}: sources must be an array of tables ([[sources]])")
    sources = []
    for number, entry in enumerate(entries, start=1):
        label = f"[[sources]] #{number}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: {label} must be a table")
        unknown = sorted(set(entry) - {"url", "title", "tags", "refresh_every", "render"})
        if unknown:
            raise ConfigError(
                f"{where}: {label} unknown key {unknown[0]!r} (known: refresh_every, render, tags, title, url)"
            )
        if "url" not in entry:
            raise ConfigError(f"{where}: {label} has no url")
        url = _value(entry, "url", "str", None, label, where, None)
        title = _value(entry, "title", "str", None, label, where, None)
        tags = entry.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ConfigError(f"{where}: {label} tags must be a list of strings, got {tags!r}")
        every = _value(entry, "refresh_every", "duration", None, label, where, None)
        render = _value(entry, "render", "render", None, label, where, "auto")
        try:
            sources.append(make_source(url, title, tags, every, render))
        except BadURL as error:
            raise ConfigError(f"{where}: {label} url: {error}") from error
    return tuple(sources)
