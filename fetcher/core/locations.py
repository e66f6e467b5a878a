"""Where the store lives, as the config says: [storage] database (a PostgreSQL
URL, overridden by $FETCHER_DATABASE), bodies (an S3 location) and s3_endpoint.
A database URL may hold a password: it is shown only through redact_url."""

from __future__ import annotations

import os
import re
from typing import Any

from fetcher.core.errors import ConfigError

DATABASE_ENV_VAR = "FETCHER_DATABASE"  # overrides [storage] database


def database_from(storage: dict[str, Any], where: str) -> str | None:
    """[storage] database, or $FETCHER_DATABASE when set (an empty value: SQLite)."""
    if DATABASE_ENV_VAR in os.environ:
        value = os.environ[DATABASE_ENV_VAR].strip()
        if not value:
            return None
        try:
            return _check_database(value)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"${DATABASE_ENV_VAR} must be {error}, got {redact_url(value)!r}") from None
    if "database" in storage:
        try:
            return _check_database(storage["database"])
        except (TypeError, ValueError) as error:
            shown = redact_url(storage["database"]) if isinstance(storage["database"], str) else storage["database"]
            raise ConfigError(f"{where}: [storage] database must be {error}, got {shown!r}") from None
    return None


_SECRET = re.compile(r"^(?P<head>[a-z][a-z0-9+.-]*://[^/@:]*:)[^/@]*@", re.IGNORECASE)
_SECRET_PARAMETER = re.compile(r"(?P<head>[?&]password=)[^&]*", re.IGNORECASE)


def redact_url(url: str) -> str:
    """The URL with any password (user:PASSWORD@, ?password=) shown as ***."""
    return _SECRET_PARAMETER.sub(r"\g<head>***", _SECRET.sub(r"\g<head>***@", url))


def _check_database(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith(("postgresql://", "postgres://")):
        raise ValueError("a postgresql:// URL")
    return value


def check_s3(value: Any) -> str:
    if not isinstance(value, str) or not re.match(r"^s3://[^/\s]+(/\S*)?$", value):
        raise ValueError('an S3 location like "s3://bucket/prefix"')
    return value.rstrip("/")


def check_endpoint(value: Any) -> str:
    if not isinstance(value, str) or not re.match(r"^https?://\S+$", value):
        raise ValueError("an http(s) URL")
    return value.rstrip("/")
