"""The kinds of value a config key takes, each a check that returns the value
(normalised) or raises TypeError/ValueError saying what it must be; the config
(fetcher.core.config) turns that into one ConfigError line naming the key."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fetcher.core.cron import BadCron, parse_cron
from fetcher.core.sources import BadURL, check_url

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_duration(value: Any) -> float:
    """'90s', '30m', '12h', '1d', '2w' (or a number of seconds) to seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    match = _DURATION.match(value) if isinstance(value, str) else None
    if not match or float(match.group(1)) <= 0:
        raise ValueError("a duration like \"12h\", \"1d\" or \"7d\"")
    return float(match.group(1)) * _UNITS[match.group(2)]


def check_str(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TypeError("a non-empty string")
    return value


def check_int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("a whole number")
    return value


def check_float(value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError("a number")
    return float(value)


def check_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError("true or false")
    return value


def check_http_url(value: Any) -> str:
    try:
        return check_url(check_str(value)).rstrip("/")
    except (TypeError, BadURL) as error:
        raise ValueError(f"an http(s) URL ({error})") from None


def check_durations(value: Any) -> tuple[float, ...]:
    if not isinstance(value, list) or not value:
        raise TypeError("a list of durations like [\"1d\", \"3d\", \"7d\"]")
    return tuple(parse_duration(item) for item in value)


def check_hosts(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
        raise TypeError("a list of host names like [\"app.example.org\"]")
    return tuple(item.strip().lower() for item in value)


def check_cron(value: Any) -> str:
    try:
        parse_cron(check_str(value))
    except (TypeError, BadCron) as error:
        raise ValueError(f"a five-field cron expression like \"0 3 * * *\" ({error})") from None
    return value


def check_timezone(value: Any) -> str:
    try:
        ZoneInfo(check_str(value))
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError("an IANA time zone like \"UTC\" or \"Europe/Paris\"") from error
    return value


def check_choice(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"one of {', '.join(choices)}")
        return value

    return check
