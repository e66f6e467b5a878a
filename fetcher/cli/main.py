"""The command line's entry point: the `fetcher` group and its global options,
and the one place where an error becomes an exit code and at most one line on
stderr. `fetcher.cli.main` is where `cli` (the click group, which tests drive
with CliRunner) and `main` (the console script, and `python -m fetcher`) live.

Exit codes (README "Exit codes"): 0 done; 1 a one-off fetch got no usable
content, an audit's --fail-on matched, or the store could not be written (disk
full): the run is recorded as failed; 2 bad input (config, target, store, a file
that cannot be read or written); 3 another refresh holds the store; 130
interrupted (SIGINT or SIGTERM); 141 the reader of stdout went away (`| head`),
after the work was stored.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import click

from fetcher.cli.inputs import Globals
from fetcher.cli.lazy import Lazy, LazyGroup
from fetcher.core.config import LOG_FORMATS, LOG_LEVELS, config_path
from fetcher.core.errors import BadInput, Busy, FetcherError, Interrupted, StoreError, StoreWriteFailed

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_BUSY = 3
EXIT_INTERRUPTED = 130
EXIT_CLOSED_PIPE = 128 + signal.SIGPIPE  # 141: what a shell reports for `cat big | head`

# The exit code of each of our errors: the entry for the nearest class in the
# error's MRO wins (StoreWriteFailed before StoreError, ConfigError via BadInput).
EXIT_CODES: dict[type[BaseException], int] = {
    FetcherError: EXIT_FAILED,  # a problem of our own machine
    StoreWriteFailed: EXIT_FAILED,  # the run stopped and is recorded as failed
    BadInput: EXIT_BAD_INPUT,
    StoreError: EXIT_BAD_INPUT,  # not our store, or one we may not read
    OSError: EXIT_BAD_INPUT,  # a file that cannot be read or written
    Busy: EXIT_BUSY,
    Interrupted: EXIT_INTERRUPTED,
}


class Failure(click.ClickException):
    """One of our errors, ready to end the command: `error: …` (or
    `interrupted: …`) on stderr, and its exit code."""

    def __init__(self, message: str, exit_code: int, prefix: str = "error"):
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click declares it on the class; ours varies
        self.prefix = prefix

    def show(self, file: Any = None) -> None:
        click.echo(f"{self.prefix}: {self.format_message()}", err=True)


class ClosedPipe(Exception):
    """stdout's reader went away. Not an OSError, so that click's own handling
    of EPIPE (a silent exit 1) lets it through to main()."""


def exit_code(error: BaseException) -> int:
    """The exit code for one of our errors or an OSError (see EXIT_CODES)."""
    return next(EXIT_CODES[kind] for kind in type(error).__mro__ if kind in EXIT_CODES)


def failure(error: FetcherError | OSError) -> Failure:
    """The one translation of an error into what the user sees."""
    if isinstance(error, FetcherError):
        prefix = "interrupted" if isinstance(error, Interrupted) else "error"
        return Failure(str(error), exit_code(error), prefix)
    return Failure(_os_error(error), exit_code(error))


@contextmanager
def _translated() -> Iterator[None]:
    """Our errors and OSErrors become a Failure; a closed stdout becomes ClosedPipe."""
    try:
        yield
    except BrokenPipeError as error:
        raise ClosedPipe() from error
    except (FetcherError, OSError) as error:
        raise failure(error) from error


def _os_error(error: OSError) -> str:
    """`path: Permission denied`, or the error as Python words it."""
    if error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return str(error)


# Each command's module is imported when the command runs (fetcher.cli.lazy):
# a reading command never loads what fetching needs. The summary is the first
# paragraph of the command's docstring, shown by `fetcher --help`.
COMMANDS = {
    "fetch": Lazy("fetcher.cli.fetching", "fetch",
                  "Fetch one source now (a resource id or a URL), store it and print its preview."),
    "refresh": Lazy("fetcher.cli.fetching", "refresh",
                    "Fetch the sources that are due (all with --all, or --only some), concurrently\n"
                    "and politely, with archived copies standing in for dead pages."),
    "schedule": Lazy("fetcher.cli.fetching", "schedule",
                     "Run the refresh on the [schedule] cron, in the foreground, until SIGTERM/SIGINT."),
    "worker": Lazy("fetcher.cli.working", "worker",
                   "Fetch queued sources of a PostgreSQL store, alongside any number of other\n"
                   "workers, until SIGTERM/SIGINT."),
    "runs": Lazy("fetcher.cli.reading", "runs", "List recorded refresh runs, newest first (no network)."),
    "status": Lazy("fetcher.cli.reading", "status",
                   "The last run, the health of the sources and what is due next (no network)."),
    "audit": Lazy("fetcher.cli.auditing", "audit",
                  "Which sources are dead, failing, blocked, soft 404s or moved, since when, and\n"
                  "which archived copy can stand in. Reads the store (no network) unless --check."),
    "sources": Lazy("fetcher.cli.auditing", "sources", "Find sources in documents and add them to the config."),
    "show": Lazy("fetcher.cli.reading", "show", "Print the latest stored preview of a source (no network)."),
    "history": Lazy("fetcher.cli.reading", "history", "List every stored fetch of a source, newest first (no network)."),
    "export": Lazy("fetcher.cli.reading", "export",
                   "Write the latest snapshot of every stored source, for a site build (no network)."),
    "store": Lazy("fetcher.cli.store_admin", "store",
                  "Look after the store: migrate its schema, copy it to another database."),
}


class _Commands(LazyGroup):
    """The command group: errors are translated here, on the way out of parsing
    (--help, --version) and of every command, so that `cli` run by click (or by
    a test's CliRunner) and `main()` end the same way."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        with _translated():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        with _translated():
            return super().invoke(ctx)


@click.group(cls=_Commands, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_file",
    metavar="PATH",
    help="Config file (default: $FETCHER_CONFIG, else ./config.toml).",
)
@click.option("--log-level", type=click.Choice(LOG_LEVELS), help="Overrides [log] level (default info).")
@click.option("--log-format", type=click.Choice(LOG_FORMATS), help="Overrides [log] format: text or JSON lines.")
@click.option("--log-file", metavar="PATH", help="Overrides [log] file (default: stderr).")
@click.version_option(package_name="fetcher")
@click.pass_context
def cli(
    context: click.Context, config_file: str | None, log_level: str | None, log_format: str | None, log_file: str | None
) -> None:
    """Keep dated, readable previews of the web sources a knowledge base cites."""
    context.obj = Globals(config_path(config_file), log_level, log_format, log_file)


def main() -> NoReturn:
    """Run the CLI. Every way it ends is an exit code and at most one line on
    stderr: our errors as `_translated` made them; a closed stdout ends quietly
    with 141 (the output was cut short; whatever was fetched is stored), as `cat`
    or `grep` killed by SIGPIPE would.

    On the way out the heap is frozen (gc.freeze): the interpreter's shutdown
    then frees objects without walking the whole heap in its garbage collections
    (after a refresh of 400 sources: 56 -> 22 ms, closing the store included).
    Whatever must happen at exit is done by its owner before (a store is closed
    by the command that opened it)."""
    try:
        code = cli.main(prog_name="fetcher", standalone_mode=False)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except (ClosedPipe, BrokenPipeError):
        _stdout_to_devnull()
        sys.exit(EXIT_CLOSED_PIPE)
    finally:
        gc.freeze()
    sys.exit(code if isinstance(code, int) else 0)


def _stdout_to_devnull() -> None:
    """Point stdout at /dev/null, so that flushing it at exit raises no second
    BrokenPipeError ("Exception ignored ...") (the recipe in Python's signal docs)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    finally:
        os.close(devnull)


if __name__ == "__main__":
    main()
