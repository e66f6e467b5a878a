"""What the CLI shows on a terminal, with rich: the progress bar, the run
summary, history, runs and status tables.

Text from the web (URLs, titles, details) and from the config (archive names,
paths) reaches rich only as `rich.text.Text`, never as a markup string: a URL
like `?filter[type]=report` is shown as written, and one like `?q[/x]=1` cannot
break the table. Control characters are replaced, so a title cannot move the
cursor or recolour the terminal."""

from __future__ import annotations

import errno
import logging
import re
from datetime import datetime

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from fetcher.views.audit import Audit
from fetcher.cli.logs import FIELDS
from fetcher.core.models import RunSummary, Snapshot
from fetcher.views.preview import human_size
from fetcher.store.sqlite import RunRecord

log = logging.getLogger("fetcher")

_SPACE_LIKE = re.compile(r"[\t\n\r\v\f]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def plain(text: object) -> Text:
    """`text` as literal rich Text on one line: no markup, no emoji codes, no
    terminal control sequences (white space controls become spaces, others '?')."""
    return Text(_CONTROL.sub("?", _SPACE_LIKE.sub(" ", str(text))))


class PipeConsole(Console):
    """A rich Console that reports a closed pipe as BrokenPipeError, for the CLI
    to end quietly, instead of rich's own `SystemExit(1)`."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError(errno.EPIPE, "the reader closed the pipe")


class RunProgress:
    """A progress bar on a terminal; otherwise one log line per source (for cron)."""

    def __init__(self) -> None:
        self._console = PipeConsole(stderr=True)
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
            "event": "fetched", "resource_id": snapshot.resource_id, "url": snapshot.url, "outcome": kind.value,
            "http_status": status, "origin": snapshot.origin, "text_chars": snapshot.text_chars,
            "changed": snapshot.changed, "transition": snapshot.transition.value if snapshot.transition else None,
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


def _add_row(table: Table, *cells: object) -> None:
    table.add_row(*(plain(cell) for cell in cells))


def print_history(title: str, rows: list[Snapshot]) -> None:
    """The heading (id and URL, on one line however long) and the table of fetches."""
    table = Table()
    for column in ("fetched (UTC)", "origin", "HTTP", "outcome", "text", "change", "sha256"):
        table.add_column(column)
    for row in rows:
        change = "new content" if row.changed else ("unchanged" if row.has_content else "-")
        origin = row.origin
        if row.captured_at:
            origin = f"archive ({row.archive_name}, captured {row.captured_at:%Y-%m-%d})"
        outcome = str(row.outcome)
        if row.live_outcome and row.live_outcome != row.outcome:
            outcome = f"{row.live_outcome} → {row.outcome}"
        _add_row(
            table,
            row.fetched_at.strftime("%Y-%m-%d %H:%M:%S"),
            origin,
            str(row.http_status or "-"),
            outcome,
            human_size(row.text_chars) if row.has_content else "-",
            change,
            (row.sha256 or "-")[:12],
        )
    console = _wide()
    console.print(plain(title), soft_wrap=True)
    console.print(table)


def print_runs(runs: list[RunRecord]) -> None:
    table = Table(title="refresh runs, newest first")
    for column in ("run", "started (UTC)", "seconds", "trigger", "status", "sources", "changed", "archived",
                   "newly failing", "recovered"):
        table.add_column(column)
    for run in runs:
        summary = run.summary or {}
        status = run.status
        seconds = f"{(run.finished_at - run.started_at).total_seconds():.1f}" if run.finished_at else "-"
        _add_row(
            table, str(run.id), f"{run.started_at:%Y-%m-%d %H:%M:%S}", seconds, run.trigger, status,
            *(str(summary.get(key, "-")) for key in ("total", "changed", "archived", "newly_failing", "recovered")),
        )
    _wide().print(table)


def print_status(lines: list[tuple[str, str]]) -> None:
    table = Table(show_header=False, box=None)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")  # a long path is wrapped, never cut short
    for label, value in lines:
        _add_row(table, label, value)
    _wide().print(table)


def _wide() -> Console:
    """A console that does not squeeze tables to 80 columns when piped or in cron mail."""
    console = PipeConsole()
    return console if console.is_terminal else PipeConsole(width=200)


def when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment else "-"


_URL_COLUMNS = ("source", "archived copy / moved to")  # wrapped, never cut short with "…"


def print_audit(audit: Audit) -> None:
    """The audit as a terminal table, worst first, with what changed since the last run."""
    console = _wide()
    console.print(plain(" · ".join(f"{name} {n}" for name, n in audit.counts().items()) or "no sources"))
    for heading, rows in (("newly broken since the last run", audit.newly_broken),
                          ("recovered since the last run", audit.recovered)):
        if rows:
            console.print(Text.assemble((heading, "bold"), ": ", plain(", ".join(row.url for row in rows))),
                          highlight=False)
    table = Table()
    for column in ("state", "source", "outcome", "failing since", "last good", "archived copy / moved to"):
        table.add_column(column, overflow="fold" if column in _URL_COLUMNS else "ellipsis")
    for row in audit.rows:
        stand_in = row.moved_to or (f"{row.stand_in_captured_at:%Y-%m-%d} {row.stand_in_url}" if row.stand_in_url else "")
        source = Text("\n").join(plain(part) for part in (row.title, row.url) if part)
        table.add_row(
            plain(row.state), source, plain(row.outcome or ""),
            plain(f"{row.first_failure:%Y-%m-%d}" if row.first_failure else ""),
            plain(f"{row.last_good:%Y-%m-%d}" if row.last_good else ""), plain(stand_in),
        )
    console.print(table)
