"""One root for every error of ours (fetcher/core/errors.py draws the tree), and
one translation at the command line's edge: the exit code is looked up by
class, and the user sees one `error: …` line (README "Exit codes")."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import click
import pytest
from click.testing import CliRunner

import fetcher
from fetcher.cli import main as cli_main
from fetcher.core import errors
from fetcher.core.errors import (
    BadCron, BadInput, BadURL, Busy, CdxFormatError, ConfigError, ExtractFailed, FetcherError, Interrupted, StoreError,
    StoreWriteFailed, Stopped, UndecodableText,
)

# Exceptions that are not ours to report, each for its reason (core/errors.py says which).
OUTSIDE_THE_TREE = {
    "fetcher.net.inflate.OverCap", "fetcher.net.inflate.Incomplete",  # between the inflater and the download
    "fetcher.extract.pool.WorkerGone",  # private to the extraction pool
    "fetcher.net.connect.PrivateAddressRefused",  # must be an httpcore.ConnectError
    "fetcher.cli.main.ClosedPipe", "fetcher.cli.main.Failure",  # the edge's own: how the CLI ends
}


def exception_classes() -> dict[str, type[BaseException]]:
    """Every exception class defined in the package, by its dotted name."""
    found = {}
    for module_info in pkgutil.walk_packages(fetcher.__path__, "fetcher."):
        if module_info.name == "fetcher.__main__":
            continue
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == module.__name__:
                found[f"{module.__name__}.{name}"] = value
    return found


def test_every_error_of_ours_is_a_fetcher_error():
    classes = exception_classes()
    assert OUTSIDE_THE_TREE <= set(classes)  # the exclusions are real
    loose = sorted(name for name, kind in classes.items()
                   if name not in OUTSIDE_THE_TREE and not issubclass(kind, FetcherError))
    assert loose == []
    assert {name.rsplit(".", 1)[0] for name, kind in classes.items() if issubclass(kind, FetcherError)} == {
        "fetcher.core.errors"
    }


def test_the_old_homes_still_name_the_same_classes():
    from fetcher.core.config import ConfigError as config_error
    from fetcher.core.cron import BadCron as bad_cron
    from fetcher.core.sources import BadURL as bad_url
    from fetcher.extract.decode import UndecodableText as undecodable
    from fetcher.net.archive import CdxFormatError as cdx_format
    from fetcher.store.lock import Busy as busy
    from fetcher.store.sqlite import StoreError as store_error

    assert (config_error, bad_cron, bad_url, undecodable, cdx_format, busy, store_error) == (
        ConfigError, BadCron, BadURL, UndecodableText, CdxFormatError, Busy, StoreError
    )


@pytest.mark.parametrize("kind", [BadURL, BadCron, UndecodableText, CdxFormatError])
def test_errors_caught_as_value_errors_still_are(kind):
    with pytest.raises(ValueError):
        raise kind("x")


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (BadInput("x"), 2), (ConfigError("x"), 2), (BadURL("x"), 2), (BadCron("x"), 2),
        (StoreError("x"), 2), (StoreWriteFailed("x"), 1), (Busy("x"), 3), (Interrupted("x"), 130),
        (ExtractFailed("x"), 1), (Stopped("x"), 1), (FetcherError("x"), 1),
        (PermissionError(13, "Permission denied", "/x"), 2),
    ],
)
def test_the_exit_code_is_the_documented_one_for_each_class(error, code):
    assert cli_main.exit_code(error) == code
    assert cli_main.failure(error).exit_code == code


@pytest.mark.parametrize(
    ("error", "line", "code"),
    [
        (ConfigError("config.toml: [fetch] retries must be a whole number, got 'x'"),
         "error: config.toml: [fetch] retries must be a whole number, got 'x'", 2),
        (StoreWriteFailed("snapshots: cannot write to the store: disk I/O error"),
         "error: snapshots: cannot write to the store: disk I/O error", 1),
        (Busy("another run holds snapshots/refresh.lock"), "error: another run holds snapshots/refresh.lock", 3),
        (Interrupted("stopped by a signal"), "interrupted: stopped by a signal", 130),
        (PermissionError(13, "Permission denied", "/etc/x"), "error: /etc/x: Permission denied", 2),
    ],
)
def test_an_error_in_a_command_ends_it_with_one_line_and_its_code(error, line, code):
    """Raised anywhere in a command, the error is translated once, at the group."""

    @click.command("boom")
    def boom() -> None:
        raise error

    cli_main.cli.add_command(boom)
    try:
        result = CliRunner().invoke(cli_main.cli, ["boom"])
    finally:
        cli_main.cli.commands.pop("boom")
    assert (result.exit_code, result.stderr, result.stdout) == (code, line + "\n", "")


def test_the_tree_in_the_docstring_names_every_class():
    drawn = errors.__doc__
    for name, value in vars(errors).items():
        if inspect.isclass(value) and issubclass(value, FetcherError):
            assert f" {name} " in drawn or f"─ {name}" in drawn or drawn.lstrip().startswith(name), name
