"""Commands imported when they are run, so that `fetcher --help` or `fetcher show`
does not pay for the libraries only `fetch` and `refresh` need (trafilatura,
pypdf, httpx, APScheduler: most of a second). The group lists each command by
name, module and the summary its `--help` line shows; the module is imported
the first time the command itself is needed (to run it or print its own help).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

import click


@dataclass(frozen=True)
class Lazy:
    """A command by where it lives: `module`'s attribute `attribute`, whose
    docstring starts with `summary` (tests/test_startup.py checks they agree)."""

    module: str
    attribute: str
    summary: str


class LazyCommands(MutableMapping[str, click.Command]):
    """A group's `commands`: a lazy entry is imported on first access; commands
    added later (`add_command`) are kept as they are."""

    def __init__(self, lazy: dict[str, Lazy]):
        self._lazy = dict(lazy)
        self._loaded: dict[str, click.Command] = {}

    def __getitem__(self, name: str) -> click.Command:
        if name not in self._loaded:
            where = self._lazy[name]  # KeyError: no such command
            self._loaded[name] = getattr(importlib.import_module(where.module), where.attribute)
        return self._loaded[name]

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        if name not in self._lazy and name not in self._loaded:
            raise KeyError(name)
        self._lazy.pop(name, None)
        self._loaded.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*self._lazy, *self._loaded]))

    def __len__(self) -> int:
        return len(set(self._lazy) | set(self._loaded))

    def short_help(self, name: str, limit: int) -> str:
        """The command's line in the group's help, without importing it."""
        if name in self._loaded:
            return self._loaded[name].get_short_help_str(limit)
        return click.Command(name, help=self._lazy[name].summary).get_short_help_str(limit)


class LazyGroup(click.Group):
    """A click group whose commands (a LazyCommands) are imported when run."""

    def __init__(self, *args: Any, lazy: dict[str, Lazy], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.commands: MutableMapping[str, click.Command] = LazyCommands(lazy)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The `Commands:` section, as click writes it, from the summaries alone."""
        assert isinstance(self.commands, LazyCommands)
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        with formatter.section("Commands"):
            formatter.write_dl([(name, self.commands.short_help(name, limit)) for name in names])
