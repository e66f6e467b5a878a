"""What the CLI shows on a terminal, with rich: the progress bar, the run
summary, history, runs and status tables."""

from __future__ import annotations

import logging
from datetime import datetime

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fetcher.audit import Audit
from fetcher.logs import FIELDS
from fetcher.models import RunSummary, Snapshot
from fetcher.report import human_size
from fetcher.store import RunRecord

log = logging.getLogger("fetcher")


class RunProgress:
    """A progress bar on a terminal; otherwise one log line per source (for cron)."""

    def __init__(self) -> None:
        self._console = Console(stderr=True)
        self._bar: Progress | None = None

    def start(self, total: int) -> None:
        if self._console.is_terminal and total:
            self._bar = Progress(
                TextColumn("refresh"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=self._console
            )
            self._task = self._bar.add_task("refresh", total=total)
            self._bar.start()

    def stop(self) -> None:
        if self._bar:
            self._bar.stop()

    def advance(self, snapshot: Snapshot) -> None:
        if self._bar:
            self._bar.advance(self._task)
            return
        kind = snapshot.live_outcome or snapshot.outcome
        status = snapshot.live_status if snapshot.origin == "archive" else snapshot.http_status
        size = human_size(snapshot.text_chars) if snapshot.has_content else snapshot.detail
        if snapshot.origin == "archive" and snapshot.has_content:
            size = f"archived copy, {size}"
        fields = {
            "event": "fetched", "resource_id": snapshot.resource_id, "url": snapshot.url, "outcome": kind,
            "http_status": status, "origin": snapshot.origin, "text_chars": snapshot.text_chars,
            "changed": snapshot.changed, "transition": snapshot.transition,
        }
        log.info("%-16s %-4s %s %s (%s)", kind, status or "-", snapshot.resource_id, snapshot.url, size,
                 extra={FIELDS: fields})


def print_summary(summary: RunSummary) -> None:
    """The concise end-of-run summary (stdout)."""
    counts = " · ".join(f"{kind} {n}" for kind, n in sorted(summary.counts.items(), key=lambda i: (-i[1], i[0])))
    print(f"{summary.total} sources refreshed in {summary.to_dict()['seconds']}s: {counts or 'none due'}")
    print(
        f"changed {summary.changed} · unchanged {summary.unchanged} · failed {summary.failed}"
        f" · archived copies {summary.archived} · newly failing {summary.newly_failing}"
        f" · recovered {summary.recovered} · not due {summary.not_due}"
    )


def print_history(title: str, rows: list[Snapshot]) -> None:
    table = Table(title=title)
    for column in ("fetched (UTC)", "origin", "HTTP", "outcome", "text", "change", "sha256"):
        table.add_column(column)
    for row in rows:
        change = "new content" if row.changed else ("unchanged" if row.has_content else "-")
        origin = row.origin
        if row.captured_at:
            origin = f"archive ({row.archive_name}, captured {row.captured_at:%Y-%m-%d})"
        outcome = row.outcome
        if row.live_outcome and row.live_outcome != row.outcome:
            outcome = f"{row.live_outcome} → {row.outcome}"
        table.add_row(
            row.fetched_at.strftime("%Y-%m-%d %H:%M:%S"),
            origin,
            str(row.http_status or "-"),
            outcome,
            human_size(row.text_chars) if row.has_content else "-",
            change,
            (row.sha256 or "-")[:12],
        )
    _wide().print(table)


def print_runs(runs: list[RunRecord]) -> None:
    table = Table(title="refresh runs, newest first")
    for column in ("run", "started (UTC)", "seconds", "trigger", "status", "sources", "changed", "archived",
                   "newly failing", "recovered"):
        table.add_column(column)
    for run in runs:
        summary = run.summary or {}
        status = run.status
        seconds = f"{(run.finished_at - run.started_at).total_seconds():.1f}" if run.finished_at else "-"
        table.add_row(
            str(run.id), f"{run.started_at:%Y-%m-%d %H:%M:%S}", seconds, run.trigger, status,
            *(str(summary.get(key, "-")) for key in ("total", "changed", "archived", "newly_failing", "recovered")),
        )
    _wide().print(table)


def print_status(lines: list[tuple[str, str]]) -> None:
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    for label, value in lines:
        table.add_row(label, value)
    Console().print(table)


def _wide() -> Console:
    """A console that does not squeeze tables to 80 columns when piped or in cron mail."""
    console = Console()
    return console if console.is_terminal else Console(width=200)


def when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment else "-"


def print_audit(audit: Audit) -> None:
    """The audit as a terminal table, worst first, with what changed since the last run."""
    console = Console()
    console.print(" · ".join(f"{name} {n}" for name, n in audit.counts().items()) or "no sources")
    for heading, rows in (("newly broken since the last run", audit.newly_broken),
                          ("recovered since the last run", audit.recovered)):
        if rows:
            console.print(f"[bold]{heading}[/]: " + ", ".join(row.url for row in rows), highlight=False)
    table = Table()
    for column in ("state", "source", "outcome", "failing since", "last good", "archived copy / moved to"):
        table.add_column(column)
    for row in audit.rows:
        stand_in = row.moved_to or (f"{row.stand_in_captured_at:%Y-%m-%d} {row.stand_in_url}" if row.stand_in_url else "")
        table.add_row(
            row.state, f"{row.title or ''}\n{row.url}".strip(), row.outcome or "",
            f"{row.first_failure:%Y-%m-%d}" if row.first_failure else "",
            f"{row.last_good:%Y-%m-%d}" if row.last_good else "", stand_in,
        )
    console.print(table)
