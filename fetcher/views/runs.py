"""The recorded refresh runs as a reader shows them: a run the store still
records as running whose process is gone was killed, so it did not finish."""

from __future__ import annotations

from dataclasses import replace

from fetcher.core.processes import alive
from fetcher.store.sqlite import RunRecord, Store

DID_NOT_FINISH = "did not finish"


def recorded_runs(store: Store | None, limit: int = 20) -> list[RunRecord]:
    """The last `limit` runs, newest first, with each run's status as it stands now."""
    return [shown(run) for run in store.runs(limit)] if store else []


def shown(run: RunRecord) -> RunRecord:
    """`run`, marked as not finished when it is recorded as running and its process is gone."""
    return replace(run, status=DID_NOT_FINISH) if run.status == "running" and not alive(run.pid) else run
