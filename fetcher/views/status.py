"""`fetcher status` as data: the last run, the sources' health, what is due and
when the scheduler runs next. One typed value (`Status`), shown as lines for a
person (`lines`) and as JSON with snake_case keys and typed values (`to_dict`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fetcher.core.config import Config
from fetcher.core.health import Health, classify, is_due
from fetcher.core.health import next_due as next_due_at
from fetcher.core.states import State
from fetcher.core.timestamps import rfc3339
from fetcher.store.rows import RunRecord
from fetcher.store.sqlite import Store
from fetcher.views.runs import recorded_runs


@dataclass(frozen=True)
class Due:
    """The configured sources' states, how many are due now and when the next one is."""

    states: dict[State, int]
    due_now: int
    next_due: datetime | None


@dataclass(frozen=True)
class Status:
    config: Path | None
    store: str  # the store directory, or the database URL without its password
    last_run: RunRecord | None
    sources: int
    due: Due
    next_run: datetime | None
    cron: str
    timezone: str

    def to_dict(self) -> dict[str, Any]:
        """JSON: paths as strings, counts as numbers, moments as RFC 3339 (or null)."""
        return {
            "config": str(self.config) if self.config else None,
            "store": str(self.store),
            "last_run": _run_dict(self.last_run),
            "sources": self.sources,
            "states": {state.value: n for state, n in sorted(self.due.states.items(), key=lambda i: i[0].value)},
            "due_now": self.due.due_now,
            "next_due": rfc3339(self.due.next_due),
            "next_scheduled_run": rfc3339(self.next_run),
            "schedule": {"cron": self.cron, "timezone": self.timezone},
        }

    def lines(self) -> list[tuple[str, str]]:
        """The labelled lines a person reads."""
        run = self.last_run
        shown = "none yet"
        if run is not None:
            summary = run.summary or {}
            done = f", {summary.get('total', 0)} sources, {summary.get('seconds', '?')}s" if summary else ""
            shown = f"#{run.id} {run.status} ({run.trigger}), started {when(run.started_at)}{done}"
        states = sorted(self.due.states.items(), key=lambda item: item[0].value)
        counts = " · ".join(f"{state.value} {n}" for state, n in states)
        return [
            ("config", str(self.config)), ("store", str(self.store)), ("last run", shown),
            ("sources", f"{self.sources}: {counts}"), ("due now", str(self.due.due_now)),
            ("next due", when(self.due.next_due)),
            ("next scheduled run", f"{when(self.next_run)} ({self.cron}, {self.timezone})"),
        ]


def status_of(config: Config, store: Store | None, now: datetime, next_run: datetime | None) -> Status:
    """`fetcher status`: the last run, the sources' health, what is due and when."""
    runs = recorded_runs(store, 1)
    return Status(
        config.path, config.database_display, runs[0] if runs else None, len(config.sources), due(config, store, now),
        next_run, config.schedule.cron, config.schedule.timezone,
    )


def due(config: Config, store: Store | None, now: datetime) -> Due:
    """The configured sources' states, how many are due at `now`, and the soonest
    moment one of the others falls due (None when none will)."""
    healths = store.all_health() if store else {}
    states: Counter[State] = Counter()
    later: list[datetime] = []
    due_now = 0
    for source in config.sources:
        health = healths.get(source.resource_id, Health(source.resource_id))
        states[classify(health, config.refresh)] += 1
        every = source.refresh_every or config.refresh.every
        if is_due(health, every, config.refresh, now):
            due_now += 1
        elif (moment := next_due_at(health, every, config.refresh)) is not None:
            later.append(moment)
    return Due(dict(states), due_now, min(later) if later else None)


def _run_dict(run: RunRecord | None) -> dict[str, Any] | None:
    if run is None:
        return None
    summary = run.summary or {}
    return {
        "id": run.id, "status": run.status, "trigger": run.trigger, "started_at": rfc3339(run.started_at),
        "finished_at": rfc3339(run.finished_at), "sources": summary.get("total"), "seconds": summary.get("seconds"),
    }


def when(moment: datetime | None) -> str:
    """`2026-11-23 03:00 UTC`, or `-` for no moment."""
    if moment is None:
        return "-"
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
