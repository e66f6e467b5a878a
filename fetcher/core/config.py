"""Read and validate config.toml once, at the edge. Any problem is one ConfigError line."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fetcher.core.cron import BadCron, parse_cron
from fetcher.core.models import Source
from fetcher.core.sources import BadURL, check_url, make_source
from fetcher.core.errors import ConfigError

DEFAULT_CONFIG = "config.toml"
ENV_VAR = "FETCHER_CONFIG"
DEFAULT_USER_AGENT = "fetcher/0.1 (cached content previews of cited sources)"


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
    source_deadline: float | None = None  # seconds for a source across attempts; None: twice `deadline`
    allow_private_networks: bool = False  # True: loopback, RFC 1918, link-local … may be fetched
    robots: str = "obey"  # "obey" or "ignore"
    max_crawl_delay: float = 30.0  # the longest robots.txt Crawl-delay honoured
    extract_timeout: float = 60.0  # seconds one document may take in an extraction worker
    extract_memory: int = 1024 * 1024 * 1024  # bytes of address space an extraction worker may use

    @property
    def source_time_limit(self) -> float:
        return self.source_deadline if self.source_deadline is not None else 2 * self.deadline


@dataclass(frozen=True)
class ArchiveSettings:
    """One Wayback-compatible archive: where to look captures up and replay them."""

    name: str = "Wayback Machine"
    cdx_url: str = "https://web.archive.org/cdx/search/cdx"
    replay_url: str = "https://web.archive.org/web"
    requests_per_minute: float = 15.0
    save_url: str = "https://web.archive.org/save"


@dataclass(frozen=True)
class ArchivePolicy:
    """When and how archived copies stand in for the live page."""

    enabled: bool = True
    fallback_on_blocked: bool = True
    fallback_on_rate_limited: bool = False
    recheck_misses_after_days: float = 7.0
    save: bool = False
    saves_per_minute: float = 3.0
    max_saves_per_run: int = 20


@dataclass(frozen=True)
class RefreshPolicy:
    """When a source is due, and when a failing one counts as dead."""

    every: float = 86400.0  # seconds between refreshes of a healthy source
    failure_backoff: tuple[float, ...] = (86400.0, 3 * 86400.0, 7 * 86400.0)
    dead_after_failures: int = 3
    dead_after_days: float = 3.0


@dataclass(frozen=True)
class ScheduleSettings:
    cron: str = "0 3 * * *"
    timezone: str = "UTC"
    shutdown_grace: float = 30.0  # seconds in-flight requests get after SIGTERM


@dataclass(frozen=True)
class LogSettings:
    level: str = "info"
    format: str = "text"
    file: str | None = None


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

    def source_by_id(self, resource_id: str) -> Source | None:
        return next((s for s in self.sources if s.resource_id == resource_id), None)


# key -> (kind, minimum): kinds are "str", "url", "int", "float", "bool"
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
    "source_deadline": ("float", 0.001),
    "allow_private_networks": ("bool", None),
    "robots": ("robots", None),
    "max_crawl_delay": ("float", 0),
    "extract_timeout": ("float", 0.001),
    "extract_memory": ("int", 64 * 1024 * 1024),
}
_ARCHIVE_KEYS: dict[str, tuple[str, float | None]] = {
    "name": ("str", None),
    "cdx_url": ("url", None),
    "replay_url": ("url", None),
    "requests_per_minute": ("float", 0.01),
    "save_url": ("url", None),
}
_POLICY_KEYS: dict[str, tuple[str, float | None]] = {
    "enabled": ("bool", None),
    "fallback_on_blocked": ("bool", None),
    "fallback_on_rate_limited": ("bool", None),
    "recheck_misses_after_days": ("float", 0),
    "save": ("bool", None),
    "saves_per_minute": ("float", 0.01),
    "max_saves_per_run": ("int", 0),
}
_REFRESH_KEYS: dict[str, tuple[str, float | None]] = {
    "every": ("duration", None),
    "failure_backoff": ("durations", None),
    "dead_after_failures": ("int", 1),
    "dead_after_days": ("float", 0),
}
_SCHEDULE_KEYS: dict[str, tuple[str, float | None]] = {
    "cron": ("cron", None),
    "timezone": ("timezone", None),
    "shutdown_grace": ("float", 0),
}
_LOG_KEYS: dict[str, tuple[str, float | None]] = {
    "level": ("level", None),
    "format": ("log_format", None),
    "file": ("str", None),
}
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
ROBOTS_MODES = ("obey", "ignore")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_TABLES = {"storage", "fetch", "preview", "archive", "refresh", "schedule", "log", "sources"}


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
    storage = _table(raw, "storage", {"dir"}, where)
    fetch = _table(raw, "fetch", set(_FETCH_KEYS), where)
    preview = _table(raw, "preview", {"chars"}, where)
    storage_dir = Path(_value(storage, "dir", "str", None, "[storage]", where, "snapshots"))
    archive = _table(raw, "archive", set(_ARCHIVE_KEYS) | set(_POLICY_KEYS) | {"more"}, where)
    return Config(
        path=path,
        storage_dir=storage_dir if storage_dir.is_absolute() else base / storage_dir,
        fetch=_settings(FetchSettings, fetch, _FETCH_KEYS, "[fetch]", where),
        preview_chars=_value(preview, "chars", "int", 1, "[preview]", where, 3000),
        sources=_sources(raw.get("sources", []), where),
        archive=_settings(ArchivePolicy, archive, _POLICY_KEYS, "[archive]", where),
        archives=_archives(archive, where),
        refresh=_settings(RefreshPolicy, _table(raw, "refresh", set(_REFRESH_KEYS), where), _REFRESH_KEYS,
                          "[refresh]", where),
        schedule=_settings(ScheduleSettings, _table(raw, "schedule", set(_SCHEDULE_KEYS), where), _SCHEDULE_KEYS,
                           "[schedule]", where),
        log=_log_settings(_table(raw, "log", set(_LOG_KEYS), where), base, where),
    )


def _log_settings(table: dict[str, Any], base: Path, where: str) -> LogSettings:
    """[log], with a relative file taken relative to the config file, like [storage] dir."""
    settings = _settings(LogSettings, table, _LOG_KEYS, "[log]", where)
    if settings.file and not Path(settings.file).is_absolute():
        return LogSettings(settings.level, settings.format, str(base / settings.file))
    return settings


def _settings(cls: type, table: dict[str, Any], keys: dict, label: str, where: str) -> Any:
    """A settings dataclass from a table: each key checked, defaults from the class."""
    return cls(
        **{
            key: _value(table, key, kind, minimum, label, where, getattr(cls, key))
            for key, (kind, minimum) in keys.items()
        }
    )


def _archives(table: dict[str, Any], where: str) -> tuple[ArchiveSettings, ...]:
    """The [archive] endpoints, then each [[archive.more]], tried in that order."""
    first = {key: table[key] for key in _ARCHIVE_KEYS if key in table}
    more = table.get("more", [])
    if not isinstance(more, list) or not all(isinstance(entry, dict) for entry in more):
        raise ConfigError(f"{where}: archive.more must be an array of tables ([[archive.more]])")
    archives = [_settings(ArchiveSettings, first, _ARCHIVE_KEYS, "[archive]", where)]
    for number, entry in enumerate(more, start=1):
        label = f"[[archive.more]] #{number}"
        unknown = sorted(set(entry) - set(_ARCHIVE_KEYS))
        if unknown:
            raise ConfigError(f"{where}: {label} unknown key {unknown[0]!r} (known: {', '.join(sorted(_ARCHIVE_KEYS))})")
        for key in ("cdx_url", "replay_url"):
            if key not in entry:
                raise ConfigError(f"{where}: {label} has no {key}")
        entry = {"name": f"archive {number + 1}", **entry}
        archives.append(_settings(ArchiveSettings, entry, _ARCHIVE_KEYS, label, where))
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


def parse_duration(value: Any) -> float:
    """'90s', '30m', '12h', '1d', '2w' (or a number of seconds) to seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    match = _DURATION.match(value) if isinstance(value, str) else None
    if not match or float(match.group(1)) <= 0:
        raise ValueError("a duration like \"12h\", \"1d\" or \"7d\"")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _check_str(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TypeError("a non-empty string")
    return value


def _check_int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("a whole number")
    return value


def _check_float(value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError("a number")
    return float(value)


def _check_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError("true or false")
    return value


def _check_url(value: Any) -> str:
    try:
        return check_url(_check_str(value)).rstrip("/")
    except (TypeError, BadURL) as error:
        raise ValueError(f"an http(s) URL ({error})") from None


def _check_durations(value: Any) -> tuple[float, ...]:
    if not isinstance(value, list) or not value:
        raise TypeError("a list of durations like [\"1d\", \"3d\", \"7d\"]")
    return tuple(parse_duration(item) for item in value)


def _check_cron(value: Any) -> str:
    try:
        parse_cron(_check_str(value))
    except (TypeError, BadCron) as error:
        raise ValueError(f"a five-field cron expression like \"0 3 * * *\" ({error})") from None
    return value


def _check_timezone(value: Any) -> str:
    try:
        ZoneInfo(_check_str(value))
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError("an IANA time zone like \"UTC\" or \"Europe/Paris\"") from error
    return value


def _check_choice(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"one of {', '.join(choices)}")
        return value

    return check


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "str": _check_str,
    "url": _check_url,
    "int": _check_int,
    "float": _check_float,
    "bool": _check_bool,
    "duration": parse_duration,
    "durations": _check_durations,
    "cron": _check_cron,
    "timezone": _check_timezone,
    "level": _check_choice(LOG_LEVELS),
    "log_format": _check_choice(LOG_FORMATS),
    "robots": _check_choice(ROBOTS_MODES),
}


def _sources(entries: Any, where: str) -> tuple[Source, ...]:
    if not isinstance(entries, list):
        raise ConfigError(f"{where}: sources must be an array of tables ([[sources]])")
    sources = []
    for number, entry in enumerate(entries, start=1):
        label = f"[[sources]] #{number}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: {label} must be a table")
        unknown = sorted(set(entry) - {"url", "title", "tags", "refresh_every"})
        if unknown:
            raise ConfigError(f"{where}: {label} unknown key {unknown[0]!r} (known: refresh_every, tags, title, url)")
        if "url" not in entry:
            raise ConfigError(f"{where}: {label} has no url")
        url = _value(entry, "url", "str", None, label, where, None)
        title = _value(entry, "title", "str", None, label, where, None)
        tags = entry.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ConfigError(f"{where}: {label} tags must be a list of strings, got {tags!r}")
        every = _value(entry, "refresh_every", "duration", None, label, where, None)
        try:
            sources.append(make_source(url, title, tags, every))
        except BadURL as error:
            raise ConfigError(f"{where}: {label} url: {error}") from error
    return tuple(sources)
