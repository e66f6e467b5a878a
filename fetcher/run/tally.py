"""A run's running count (Tally)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from fetcher.core.models import RunSummary, Snapshot
from fetcher.core.outcomes import Outcome
from fetcher.core.states import Transition


class Tally:
    """What a run has done so far, source by source."""

    def __init__(self, started: datetime):
        self.started = started
        self.counts: Counter[Outcome] = Counter()
        self._marks: Counter[str] = Counter()
        self._transitions: Counter[Transition | None] = Counter()

    def add(self, snapshot: Snapshot) -> None:
        self.counts[snapshot.live_outcome or snapshot.outcome] += 1
        if snapshot.has_content:
            self._marks["changed" if snapshot.changed else "unchanged"] += 1
            self._marks["archived"] += snapshot.origin == "archive"
        self._transitions[snapshot.transition] += 1

    def summary(self, finished: datetime) -> RunSummary:
        failed = sum(n for kind, n in self.counts.items() if not kind.is_success)
        marks, transitions = self._marks, self._transitions
        return RunSummary(
            self.started, finished, dict(self.counts), marks["changed"], marks["unchanged"], failed,
            marks["archived"], transitions[Transition.NEWLY_FAILING], transitions[Transition.RECOVERED],
        )
