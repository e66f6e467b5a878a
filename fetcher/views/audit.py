"""The broken-link audit: every source classified from what the store knows, with
the best archived stand-in for the broken ones. Read-only, no network; a fixed
handful of queries whatever the number of sources."""

from __future__ import annotations

from collections import Counter
import enum
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from fetcher.core.config import Config
from fetcher.core.health import Health, classify
from fetcher.core.models import Capture, Source
from fetcher.core.outcomes import NO_BROWSER, Outcome
from fetcher.core.states import STATES, State, Transition
from fetcher.core.timestamps import rfc3339
from fetcher.store.sqlite import Store

__all__ = ["FAIL_ON", "STATES", "Audit", "AuditRow", "build_audit"]

FAIL_ON = {
    "dead": frozenset({State.DEAD}),
    "failing": frozenset({State.DEAD, State.FAILING, State.SOFT_404}),
    "any": frozenset(STATES) - {State.OK, State.UNCHECKED},
}


@dataclass(frozen=True)
class AuditRow:
    resource_id: str
    url: str
    title: str | None
    state: State
    outcome: Outcome | None
    http_status: int | None
    detail: str
    last_checked: datetime | None
    first_failure: datetime | None
    last_failure: datetime | None
    last_good: datetime | None
    moved_to: str | None
    stand_in_url: str | None
    stand_in_captured_at: datetime | None
    stand_in_archive: str | None

    @property
    def outcome_label(self) -> str:
        """The outcome as the tables show it: an app page left empty because rendering is off is told apart."""
        if self.outcome is Outcome.EMPTY and self.detail.startswith(NO_BROWSER):
            return f"{self.outcome} ({NO_BROWSER})"
        return str(self.outcome or "")

    def to_dict(self) -> dict[str, Any]:
        """The row as JSON-ready values: dates as ISO text, state and outcome as their strings."""
        return {name: _plain(getattr(self, name)) for name in _ROW_FIELDS}


_ROW_FIELDS = tuple(field.name for field in fields(AuditRow))


@dataclass(frozen=True)
class Audit:
    rows: list[AuditRow]
    newly_broken: list[AuditRow]
    recovered: list[AuditRow]
    history: list[tuple[datetime, dict[str, int]]]  # per recorded run: health counts after it (as stored)

    def counts(self) -> dict[State, int]:
        found = Counter(row.state for row in self.rows)
        return {name: found[name] for name in STATES if found[name]}

    def fails(self, fail_on: str | None) -> bool:
        return fail_on is not None and any(row.state in FAIL_ON[fail_on] for row in self.rows)


def build_audit(config: Config, store: Store | None, sources: list[Source]) -> Audit:
    healths = store.all_health() if store else {}
    stand_ins = store.stand_ins() if store else {}
    rows = [_row(source, healths.get(source.resource_id), stand_ins.get(source.resource_id), config)
            for source in sources]
    rows.sort(key=lambda row: (STATES.index(row.state), row.url))
    by_id = {row.resource_id: row for row in rows}
    changes = store.last_run_transitions() if store else {}
    runs = store.runs(60) if store else []
    history = [(run.started_at, run.summary["health"]) for run in reversed(runs)
               if run.summary and run.summary.get("health")]
    return Audit(
        rows=rows,
        newly_broken=[by_id[rid] for rid, change in changes.items() if change is Transition.NEWLY_FAILING and rid in by_id],
        recovered=[by_id[rid] for rid, change in changes.items() if change is Transition.RECOVERED and rid in by_id],
        history=history,
    )


def _row(source: Source, health: Health | None, stand_in: Capture | None, config: Config) -> AuditRow:
    kind = classify(health, config.refresh)
    failing = health if health is not None and health.failures_in_a_row > 0 else None
    return AuditRow(
        resource_id=source.resource_id,
        url=source.url,
        title=source.title,
        state=kind,
        outcome=health.last_outcome if health else None,
        http_status=health.last_status if health else None,
        detail=health.last_detail if health else "",
        last_checked=health.last_checked if health else None,
        first_failure=failing.failing_since if failing else None,
        last_failure=failing.last_checked if failing else None,
        last_good=health.last_ok if health else None,
        moved_to=health.moved_to if health else None,
        stand_in_url=stand_in.raw_url if stand_in else None,
        stand_in_captured_at=stand_in.captured_at if stand_in else None,
        stand_in_archive=stand_in.archive if stand_in else None,
    )


def _plain(value: object) -> object:
    if isinstance(value, datetime):
        return rfc3339(value)
    return value.value if isinstance(value, enum.Enum) else value
