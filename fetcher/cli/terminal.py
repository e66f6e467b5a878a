"""What the CLI shows on a terminal, with rich: the progress bar, the run
summary, the audit, history, runs and status tables (laid out by
fetcher.cli.tables: fitted to a terminal, plain and complete when piped).

Text from the web (URLs, titles, details) and from the config (archive names,
paths) reaches rich only as `rich.text.Text`, never as a markup string: a URL
like `?filter[type]=report` is shown as written, and one like `?q[/x]=1` cannot
break the table. Control characters are replaced, so a title cannot move the
cursor or recolour the terminal."""

from __future__ import annotations

import logging
import re
from datetime import datetime

from rich.console import Console
from rich.progress import (
    BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn, TimeRemainingColumn,
)
from rich import table as rich_table
from rich.text import Text

from fetcher.cli.tables import Column, PipeConsole, show
from fetcher.views.audit import Audit
from fetcher.cli import logs
from fetcher.cli.loglines import LogLines
from fetcher.core.models import Snapshot
from fetcher.core.outcomes import Rendering
from fetcher.views.preview import human_size
from fetcher.store.sqlite import RunRecord

_SPACE_LIKE = re.compile(r"[\t\n\r\v\f]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def plain(text: object) -> Text:
    """`text` as literal rich Text on one line: no markup, no emoji codes, no
    terminal control sequences (white space controls become spaces, others '?')."""
    return Text(_CONTROL.sub("?", _SPACE_LIKE.sub(" ", str(text))))


class _AboveTheBar(logging.Handler):
    """Log records printed through the progress bar's console: each on its own
    lines above the bar, which is drawn again below them."""

    def __init__(self, console: Console, like: logging.Handler | None) -> None:
        super().__init__(like.level if like else logging.NOTSET)
        self.console = console
        self.setFormatter(like.formatter if like and like.formatter else logs.Text())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.print(Text(self.format(record)), soft_wrap=True, highlight=False, markup=False)
        except Exception:  # as logging's own handlers do: a failed log line does not stop the run
            self.handleError(record)


class _Rate(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.1f} sources/s" if speed else "- sources/s", style="progress.data.speed")


class _Left(TimeRemainingColumn):
    def render(self, task: Task) -> Text:
        return Text.assemble(super().render(task), " left")


class _Elapsed(TimeElapsedColumn):
    def render(self, task: Task) -> Text:
        return Text.assemble(super().render(task), " elapsed")


def _whole() -> rich_table.Column:
    return rich_table.Column(no_wrap=True)  # a figure is never wrapped onto a second line


class RunProgress:
    """On a terminal, a progress bar: done/total, failures so far, rate and time
    left, with the log lines printed above it while it is shown. Otherwise (cron,
    a pipe, a file) no bar: one log line per source (fetcher.cli.loglines.LogLines)."""

    def __init__(self, console: Console | None = None) -> None:
        self._console = console or PipeConsole(stderr=True)
        self._bar: Progress | None = None
        self._failed = 0
        self._moved: list[logging.Handler] = []
        self._lines = LogLines()

    def start(self, total: int) -> None:
        if self._console.is_terminal and total:
            self._bar = Progress(
                TextColumn("refresh", table_column=_whole()),
                BarColumn(bar_width=None, table_column=rich_table.Column(ratio=1)),  # the bar takes what the figures leave
                MofNCompleteColumn(table_column=_whole()),
                TextColumn("{task.fields[failed]} failed", style="red", table_column=_whole()),
                _Rate(table_column=_whole()), _Left(table_column=_whole()), _Elapsed(table_column=_whole()),
                console=self._console, expand=True,
            )
            self._task = self._bar.add_task("refresh", total=total, failed=0)
            self._route_logs(self._bar.console)
            self._bar.start()

    def _route_logs(self, console: Console) -> None:
        """The logger's stream handlers (stderr, where the bar is) give way to one
        that prints through the bar's console; log files are left as they are."""
        logger = logging.getLogger("fetcher")
        self._moved = [h for h in logger.handlers if type(h) is logging.StreamHandler]
        for handler in self._moved:
            logger.removeHandler(handler)
        self._above = _AboveTheBar(console, self._moved[0] if self._moved else None)
        logger.addHandler(self._above)

    def stop(self) -> None:
        if self._bar:
            self._bar.stop()
            logger = logging.getLogger("fetcher")
            logger.removeHandler(self._above)
            for handler in self._moved:
                logger.addHandler(handler)
            self._bar = None

    @property
    def shown(self) -> bool:
        return self._bar is not None

    def move_to(self, done: int) -> None:
        """A queued run's progress (fetcher.cli.working): `done` sources so far."""
        if self._bar:
            self._bar.update(self._task, completed=done)

    def advance(self, snapshot: Snapshot) -> None:
        if not self._bar:
            self._lines.advance(snapshot)
            return
        kind = snapshot.live_outcome or snapshot.outcome
        self._failed += not kind.is_success
        self._bar.update(self._task, advance=1, failed=self._failed)


def print_history(title: str, rows: list[Snapshot]) -> None:
    """The heading (id and URL, whole) and the table of fetches."""
    columns = (Column("fetched (UTC)"), Column("origin", drop=3), Column("HTTP"), Column("outcome"),
               Column("text", drop=2), Column("change", drop=4), Column("sha256", drop=5))
    cells = []
    for row in rows:
        change = "new content" if row.changed else ("unchanged" if row.has_content else "-")
        origin = row.origin
        if row.captured_at:
            origin = f"archive ({row.archive_name}, captured {row.captured_at:%Y-%m-%d})"
        outcome = str(row.outcome)
        if row.live_outcome and row.live_outcome != row.outcome:
            outcome = f"{row.live_outcome} → {row.outcome}"
        outcome += _RENDER_MARKS.get(row.render, "") if row.render else ""
        cells.append(_row(
            row.fetched_at.strftime("%Y-%m-%d %H:%M:%S"), origin, str(row.http_status or "-"), outcome,
            human_size(row.text_chars) if row.has_content else "-", change, (row.sha256 or "-")[:12],
        ))
    show(columns, cells, before=[plain(title)])


_RENDER_MARKS = {Rendering.RENDERED: " (rendered)", Rendering.OFF: " (not rendered: browser off)"}


def print_runs(runs: list[RunRecord]) -> None:
    columns = (Column("run"), Column("started (UTC)"), Column("seconds", drop=3), Column("trigger", drop=4),
               Column("status"), Column("sources"), Column("changed", drop=2), Column("archived", drop=5),
               Column("newly failing", drop=1), Column("recovered", drop=1))
    cells = []
    for run in runs:
        summary = run.summary or {}
        seconds = f"{(run.finished_at - run.started_at).total_seconds():.1f}" if run.finished_at else "-"
        cells.append(_row(
            str(run.id), f"{run.started_at:%Y-%m-%d %H:%M:%S}", seconds, run.trigger, run.status,
            *(str(summary.get(key, "-")) for key in ("total", "changed", "archived", "newly_failing", "recovered")),
        ))
    show(columns, cells, title="refresh runs, newest first")


def print_status(lines: list[tuple[str, str]]) -> None:
    """Label and value, one a line; a long path or URL is folded on a terminal, never cut."""
    show((Column(""), Column("", url=True)), [_row(label, value) for label, value in lines], headless=True)


def _row(*cells: object) -> list[Text]:
    return [plain(cell) for cell in cells]


def when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment else "-"


def print_audit(audit: Audit) -> None:
    """The audit as a table, worst first, with what changed since the last run."""
    before = [plain(" · ".join(f"{name} {n}" for name, n in audit.counts().items()) or "no sources")]
    for heading, rows in (("newly broken since the last run", audit.newly_broken),
                          ("recovered since the last run", audit.recovered)):
        if rows:
            before.append(Text.assemble((heading, "bold"), ": ", plain(", ".join(row.url for row in rows))))
    columns = (Column("state"), Column("source", url=True), Column("outcome", drop=1),
               Column("failing since", drop=2), Column("last good", drop=3),
               Column("archived copy / moved to", url=True))
    cells = []
    for row in audit.rows:
        stand_in = row.moved_to or (f"{row.stand_in_captured_at:%Y-%m-%d} {row.stand_in_url}" if row.stand_in_url else "")
        source = Text("\n").join(plain(part) for part in (row.title, row.url) if part)
        cells.append([plain(row.state), source, plain(row.outcome_label),
                      plain(f"{row.first_failure:%Y-%m-%d}" if row.first_failure else ""),
                      plain(f"{row.last_good:%Y-%m-%d}" if row.last_good else ""), plain(stand_in)])
    show(columns, cells, before=before)
