"""A source's health from its live checks, and when it is next due.

One bad night makes a source `failing`, not `dead`: it is dead only after
`dead_after_failures` failed checks in a row spanning `dead_after_days` — the
rule link-rot bots use. Failing sources are rechecked on a backoff so they do
not spend the nightly budget.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from fetcher.core.config import Config, RefreshPolicy
from fetcher.core.models import Source
from fetcher.core.outcomes import Outcome

SLACK_CAP = timedelta(hours=2)  # a run that started a little early still counts as due


@dataclass(frozen=True)
class Health:
    """What the store knows of a source's live checks."""

    resource_id: str
    last_checked: datetime | None = None
    last_ok: datetime | None = None
    last_outcome: str | None = None
    failures_in_a_row: int = 0
    failing_since: datetime | None = None
    etag: str | None = None
    last_modified: str | None = None
    content_sha256: str | None = None
    last_status: int | None = None
    last_detail: str = ""
    moved_to: str | None = None  # where a permanent redirect now leads, if elsewhere


def state(health: Health, policy: RefreshPolicy) -> str:
    """'new' (never checked), 'ok', 'failing' or 'dead'."""
    if health.last_checked is None:
        return "new"
    if health.failures_in_a_row == 0:
        return "ok"
    span = health.last_checked - (health.failing_since or health.last_checked)
    if health.failures_in_a_row >= policy.dead_after_failures and span >= timedelta(days=policy.dead_after_days):
        return "dead"
    return "failing"


def interval(health: Health, every: float, policy: RefreshPolicy) -> timedelta:
    """How long after its last check a source is due again."""
    if health.failures_in_a_row == 0:
        return timedelta(seconds=every)
    backoff = policy.failure_backoff
    return timedelta(seconds=backoff[min(health.failures_in_a_row, len(backoff)) - 1])


def next_due(health: Health, every: float, policy: RefreshPolicy) -> datetime | None:
    """When the source is next due; None if it has never been checked (due now)."""
    if health.last_checked is None:
        return None
    wait = interval(health, every, policy)
    return health.last_checked + wait - min(SLACK_CAP, wait / 10)


def is_due(health: Health, every: float, policy: RefreshPolicy, now: datetime) -> bool:
    due = next_due(health, every, policy)
    return due is None or now >= due


def due_sources(
    sources: list[Source], healths: dict[str, Health], policy: RefreshPolicy, now: datetime
) -> list[Source]:
    """The sources due at `now`, each by its own interval or the default."""
    return [
        source
        for source in sources
        if is_due(healths.get(source.resource_id, Health(source.resource_id)), source.refresh_every or policy.every,
                  policy, now)
    ]


# Worst first: the order of the report and of --fail-on.
STATES = ("dead", "soft-404", "failing", "blocked", "redirected", "unchecked", "ok")
_BLOCKED = frozenset(
    {Outcome.HTTP_401.value, Outcome.HTTP_403.value, Outcome.HTTP_429.value, Outcome.ROBOTS_BLOCKED.value}
)


def classify(health: Health | None, config: Config) -> str:
    """One source's state from its health row."""
    if health is None or health.last_checked is None:
        return "unchecked"
    if health.failures_in_a_row == 0:
        return "redirected" if health.moved_to else "ok"
    if health.last_outcome in _BLOCKED:
        return "blocked"
    if health.last_outcome == Outcome.BAD_CONTENT.value and health.last_detail.startswith("soft 404"):
        return "soft-404"
    return state(health, config.refresh)


def state_counts(sources: list[Source], healths: dict[str, Health], config: Config) -> dict[str, int]:
    found = Counter(classify(healths.get(source.resource_id), config) for source in sources)
    return {name: found[name] for name in STATES if found[name]}
