"""A source's health from its live checks: how one check changes it, the state
it is in, and when the source is next due.

One bad night makes a source `failing`, not `dead`: it is dead only after
`dead_after_failures` failed checks in a row spanning `dead_after_days` — the
rule link-rot bots use. Failing sources are rechecked on a backoff so they do
not spend the nightly budget. Everything here is pure: the engine reads the
health row, folds a check into it with `next_health` and hands the store the
result to write.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from fetcher.core.config import RefreshPolicy
from fetcher.core.models import FetchResult, Source
from fetcher.core.outcomes import Outcome
from fetcher.core.sources import moved_permanently
from fetcher.core.states import STATES, State, Transition

SLACK_CAP = timedelta(hours=2)  # a run that started a little early still counts as due


@dataclass(frozen=True)
class Health:
    """What the store knows of a source's live checks (one row of `health`: the
    field names are its column names)."""

    resource_id: str
    last_checked: datetime | None = None
    last_ok: datetime | None = None
    last_outcome: Outcome | None = None
    failures_in_a_row: int = 0
    failing_since: datetime | None = None
    etag: str | None = None
    last_modified: str | None = None
    content_sha256: str | None = None
    last_status: int | None = None
    last_detail: str = ""
    moved_to: str | None = None  # where a permanent redirect now leads, if elsewhere


@dataclass(frozen=True)
class Check:
    """One live check of a source, as its health sees it."""

    at: datetime
    outcome: Outcome  # what the live attempt got
    status: int | None = None
    detail: str = ""  # what the live attempt said
    live_content: str | None = None  # SHA-256 of content stored from the live page: its validators count
    etag: str | None = None
    last_modified: str | None = None
    moved_to: str | None = None  # where permanent redirects led, if elsewhere


def check_of(result: FetchResult) -> Check | None:
    """The live check in a fetch; None when there was none (--archive-only)."""
    if result.live_outcome is None:
        return None
    download = result.download
    live = result.origin == "live"
    content = result.content_sha256 if live else None
    return Check(
        at=result.fetched_at, outcome=result.live_outcome, status=result.live_status,
        detail=result.own_detail if live else result.live_detail, live_content=content,
        etag=download.etag if content else None, last_modified=download.last_modified if content else None,
        moved_to=moved_permanently(result.source.url, download.redirects, download.final_url) if live else None,
    )


def next_health(before: Health, check: Check) -> tuple[Health, Transition | None]:
    """`before` with `check` folded in, and what that changed: newly failing when a
    fine (or new) source fails, recovered when a failing one answers again."""
    checked = replace(
        before, last_checked=check.at, last_outcome=check.outcome, last_status=check.status,
        last_detail="" if check.outcome.is_success else check.detail,
    )
    if check.outcome.is_success:
        after = replace(
            checked, last_ok=check.at, failures_in_a_row=0, failing_since=None, moved_to=check.moved_to,
            etag=(check.etag or before.etag) if check.live_content else before.etag,
            last_modified=(check.last_modified or before.last_modified) if check.live_content else before.last_modified,
            content_sha256=check.live_content or before.content_sha256,
        )
    else:
        after = replace(
            checked, failures_in_a_row=before.failures_in_a_row + 1, failing_since=before.failing_since or check.at,
        )
    if not before.failures_in_a_row and after.failures_in_a_row:
        return after, Transition.NEWLY_FAILING
    if before.failures_in_a_row and not after.failures_in_a_row:
        return after, Transition.RECOVERED
    return after, None


_BLOCKED = frozenset({Outcome.HTTP_401, Outcome.HTTP_403, Outcome.HTTP_429, Outcome.ROBOTS_BLOCKED})


def classify(health: Health | None, policy: RefreshPolicy) -> State:
    """The one rule for a source's state, from its health row (None: never stored)."""
    if health is None or health.last_checked is None:
        return State.UNCHECKED
    if health.failures_in_a_row == 0:
        return State.REDIRECTED if health.moved_to else State.OK
    if health.last_outcome in _BLOCKED:
        return State.BLOCKED
    if health.last_outcome is Outcome.BAD_CONTENT and health.last_detail.startswith("soft 404"):
        return State.SOFT_404
    span = health.last_checked - (health.failing_since or health.last_checked)
    if health.failures_in_a_row >= policy.dead_after_failures and span >= timedelta(days=policy.dead_after_days):
        return State.DEAD
    return State.FAILING


def state_counts(sources: list[Source], healths: dict[str, Health], policy: RefreshPolicy) -> dict[State, int]:
    """How many of `sources` are in each state, worst first; states with none left out."""
    found = Counter(classify(healths.get(source.resource_id), policy) for source in sources)
    return {name: found[name] for name in STATES if found[name]}


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
