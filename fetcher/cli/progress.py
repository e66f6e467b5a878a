"""A run's progress as it goes, on stderr: one log line per source
(fetcher.cli.loglines), or on a terminal rich's progress bar
(fetcher.cli.terminal.RunProgress).

rich is imported only where stderr may be a terminal: a nightly run from cron,
a pipe or a log file starts ~22 ms sooner without it."""

from __future__ import annotations

import os
import sys
from typing import IO, Protocol

from fetcher.cli.loglines import LogLines
from fetcher.core.models import Snapshot


class Progress(Protocol):
    @property
    def shown(self) -> bool: ...  # a bar is on the terminal
    def start(self, total: int) -> None: ...
    def advance(self, snapshot: Snapshot) -> None: ...
    def move_to(self, done: int) -> None: ...
    def stop(self) -> None: ...


def run_progress() -> Progress:
    """The bar where stderr may be a terminal (rich decides), else log lines."""
    if not may_be_terminal(sys.stderr):
        return LogLines()
    from fetcher.cli.terminal import RunProgress

    return RunProgress()


def may_be_terminal(stream: IO[str]) -> bool:
    """False where rich's Console would find no terminal for sure: TTY_COMPATIBLE
    is not 1, FORCE_COLOR is not set, and `stream` is not a tty. Otherwise rich
    is asked (its other rules only ever say no)."""
    if os.environ.get("TTY_COMPATIBLE") == "1" or os.environ.get("FORCE_COLOR") is not None:
        return True
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
