"""Tables for people at any width, and complete when piped.

On a terminal a table is drawn with rich's box characters and fitted to the
terminal: when it is too wide, the lesser columns are left out first (a note
under the table names them), and a cell that still does not fit is folded onto
more lines. A URL is never cut short with "…": URL columns always fold.

Off a terminal (a pipe, a file, cron mail) a table is plain text: no colour or
other escape sequences, no box-drawing characters, columns separated by spaces,
every column kept and every cell on its lines whole, however wide that makes
the table, so that a URL can be copied or grepped from the mail as one line."""

from __future__ import annotations

import errno
from collections.abc import Sequence
from dataclasses import dataclass

import click
from rich.console import Console, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

_PLAIN_WIDTH = 100_000  # wide enough that nothing in a plain table ever wraps
_URL_ROOM = 50  # the width a URL column is given before lesser columns are kept


class PipeConsole(Console):
    """A rich Console that reports a closed pipe as BrokenPipeError, for the CLI
    to end quietly, instead of rich's own `SystemExit(1)`."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError(errno.EPIPE, "the reader closed the pipe")


@dataclass(frozen=True)
class Column:
    """A table column. `drop`: 0 keeps it at every width; the others are left out
    on a narrow terminal, highest first. `url`: folded, never cut or left out."""

    name: str
    drop: int = 0
    url: bool = False


def show(columns: Sequence[Column], rows: Sequence[Sequence[Text]], title: str | None = None,
         before: Sequence[RenderableType] = (), headless: bool = False) -> None:
    """Print `before` (lines of text) then the table on stdout: fitted to a
    terminal, or plain and complete when stdout is not one. A `headless` table
    (label and value) has no header and no box anywhere."""
    console = PipeConsole()
    if not console.is_terminal:
        _print_plain(before, _table(columns, rows, title, boxed=False, headless=headless))
        return
    kept = _fit(console, columns, rows, title, headless)
    for line in before:
        console.print(line, highlight=False, soft_wrap=True)  # the terminal wraps it: a URL stays one line
    console.print(_table(kept, _cells(columns, kept, rows), title, not headless, headless))
    left_out = [column.name for column in columns if column not in kept and _filled(columns, column, rows)]
    if left_out:
        console.print(Text(f"left out at this width: {', '.join(left_out)} (a wider terminal, or a pipe, shows them)",
                           style="dim"))


def _fit(console: Console, columns: Sequence[Column], rows: Sequence[Sequence[Text]], title: str | None,
         headless: bool) -> list[Column]:
    """The columns kept on this terminal: the empty ones and then the lesser ones
    are left out until the table fits with _URL_ROOM characters a line for each URL."""
    empty = [c for c in columns if not _filled(columns, c, rows)]
    lesser = sorted((c for c in columns if c.drop and not c.url and c not in empty), key=lambda c: -c.drop)
    kept = list(columns)
    wide = console.options.update_width(_PLAIN_WIDTH)
    for column in empty + lesser:
        probe = [[_clip(cell) if c.url else cell for c, cell in zip(kept, row)] for row in _cells(columns, kept, rows)]
        if Measurement.get(console, wide, _table(kept, probe, title, not headless, headless)).maximum <= console.width:
            break
        kept.remove(column)
    return kept


def _filled(columns: Sequence[Column], column: Column, rows: Sequence[Sequence[Text]]) -> bool:
    index = columns.index(column)
    return any(row[index].plain.strip() for row in rows)


def _clip(cell: Text) -> Text:
    return Text("\n").join(line[:_URL_ROOM] for line in cell.split("\n"))


def _cells(columns: Sequence[Column], kept: Sequence[Column], rows: Sequence[Sequence[Text]]) -> list[list[Text]]:
    indexes = [columns.index(column) for column in kept]
    return [[row[index] for index in indexes] for row in rows]


def _table(columns: Sequence[Column], rows: Sequence[Sequence[Text]], title: str | None, boxed: bool,
           headless: bool = False) -> Table:
    table = Table(title=title, show_header=not headless)
    if not boxed:
        table = Table(title=title, show_header=not headless, box=None, show_edge=False, title_justify="left")
    for column in columns:
        table.add_column(column.name, overflow="fold")  # never "…": what is shown is whole, if folded
    for row in rows:
        table.add_row(*row)
    return table


def _print_plain(before: Sequence[RenderableType], table: Table) -> None:
    """Plain text on stdout: no escape sequences, no wrapping, no trailing spaces."""
    console = PipeConsole(width=_PLAIN_WIDTH, color_system=None, highlight=False, emoji=False)
    with console.capture() as captured:
        for line in before:
            console.print(line)
        console.print(table)
    click.echo("\n".join(line.rstrip() for line in captured.get().splitlines()))
