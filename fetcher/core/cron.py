"""Five-field crontab expressions, read as cron reads them.

APScheduler 3 counts weekdays from Monday = 0, where crontab counts Sunday = 0
(and 7); handing it the numbers as written would run a Monday job on Tuesday.
So the expression is checked here and its weekdays are passed on by name.
(One difference remains: when both day-of-month and weekday are restricted,
cron runs on either, APScheduler only on days matching both.)

`next_fire` finds the next run time the way APScheduler's trigger does, without
importing it, so that `status` starts fast. (It differs in one corner: where a
day's span crosses a clock change, APScheduler 3's date arithmetic skips a run
at midnight; `next_fire` gives the wall time the expression names.)
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo

from fetcher.core.errors import BadCron

_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_FIELDS = (  # name, lowest, highest, names (index + offset = value)
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, _MONTH_NAMES),
    ("day of week", 0, 7, _DAY_NAMES),
)


@dataclass(frozen=True)
class Cron:
    minute: str
    hour: str
    day: str
    month: str
    day_of_week: str  # weekday names for APScheduler ("mon,wed"), or "*"


def parse_cron(expression: str) -> Cron:
    fields = expression.split()
    if len(fields) != 5:
        raise BadCron(f"a cron expression has five fields (minute hour day month weekday), got {len(fields)}")
    for text, spec in zip(fields, _FIELDS):
        _values(text, *spec)
    weekdays = "*" if fields[4] == "*" else ",".join(
        _DAY_NAMES[value % 7] for value in sorted({v % 7 for v in _values(fields[4], *_FIELDS[4])})
    )
    return Cron(fields[0], fields[1], fields[2], fields[3], weekdays)


def _values(text: str, name: str, low: int, high: int, names: tuple[str, ...]) -> set[int]:
    """Every value a field selects; BadCron naming the field if any part is off."""
    found: set[int] = set()
    for part in text.lower().split(","):
        base, _, step = part.partition("/")
        if step and not (step.isdigit() and int(step) > 0):
            raise BadCron(f"{name}: bad step in {part!r}")
        if base == "*":
            first, last = low, high
        else:
            start, _, end = base.partition("-")
            first = _number(start, name, low, high, names)
            last = _number(end, name, low, high, names) if end else (high if step else first)
            if last < first:
                raise BadCron(f"{name}: range {part!r} runs backwards")
        found.update(range(first, last + 1, int(step) if step else 1))
    return found


def _number(token: str, name: str, low: int, high: int, names: tuple[str, ...]) -> int:
    if token in names:
        return names.index(token) + (1 if name == "month" else 0)
    if not token.isdigit() or not low <= int(token) <= high:
        raise BadCron(f"{name}: {token!r} is not a value from {low} to {high}")
    return int(token)


def next_fire(expression: str, zone: tzinfo, now: datetime) -> datetime | None:
    """The first moment at or after `now` (rounded up to the second) whose wall
    time in `zone` the expression selects, as APScheduler's CronTrigger reads it
    (day of month and weekday must both match); None if none within 28 years.
    A wall time that a clock change skips is read with the offset before it
    (02:30 on a spring-forward night is 03:30); one it repeats is its first
    pass, or its second if `now` is past the first."""
    if len(expression.split()) != 5:
        parse_cron(expression)  # raises BadCron, saying why
    minutes, hours, days, months, weekdays = (
        sorted(_values(text, *spec)) for text, spec in zip(expression.split(), _FIELDS)
    )
    weekdays = sorted({value % 7 for value in weekdays})
    start = now.astimezone(timezone.utc)
    if start.microsecond:
        start = start.replace(microsecond=0) + timedelta(seconds=1)
    first_day = start.astimezone(zone).date() - timedelta(days=1)
    for day in (first_day + timedelta(days=n) for n in range(366 * 28)):
        if day.month in months and day.day in days and _cron_weekday(day) in weekdays:
            moments = (_instants(day, hour, minute, zone) for hour, minute in itertools.product(hours, minutes))
            upcoming = [moment for pair in moments for moment in pair if moment >= start]
            if upcoming:
                return min(upcoming).astimezone(zone)
    return None


def _instants(day: date, hour: int, minute: int, zone: tzinfo) -> set[datetime]:
    """The moments (in UTC) a wall time names: two when the clock repeats it, else one."""
    first, second = (
        datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone, fold=fold).astimezone(timezone.utc)
        for fold in (0, 1)
    )
    return {first, second} if second > first else {first}


def _cron_weekday(day: date) -> int:
    """Sunday 0 … Saturday 6, as crontab counts."""
    return (day.weekday() + 1) % 7
