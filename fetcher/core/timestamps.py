"""The one timestamp format of every JSON (and CSV) output: RFC 3339 in UTC,
ending in `Z` — `2026-11-23T03:00:00Z`, with a fraction of a second when the
moment has one. (The store's own columns keep their format: they are no output.)"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

WallClock = Callable[[], datetime]  # the wall clock, passed in so that tests control time


def utc_now() -> datetime:
    """Now, in UTC: the clock every stored and shown moment is read from."""
    return datetime.now(timezone.utc)


def rfc3339(moment: datetime | None) -> str | None:
    """`moment` in UTC as RFC 3339 with `Z`; None stays None. A naive datetime
    is taken to be UTC already (every moment we keep is UTC)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
