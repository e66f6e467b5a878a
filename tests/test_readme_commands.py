"""The README's command table says what `fetcher --help` says: the same
commands, and every option a row shows is one `fetcher COMMAND --help` lists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from fetcher.cli.main import cli

README = Path(__file__).resolve().parent.parent / "README.md"
ROW = re.compile(r"^\| `fetcher ([^`]+)` \|", re.MULTILINE)
OPTION = re.compile(r"(?<![\w-])(--?[a-zA-Z][\w-]*)")
WORD = re.compile(r"^[a-z][a-z-]*$")


def readme_rows() -> dict[tuple[str, ...], set[str]]:
    """The command table under "## Commands": command words -> the options its row shows."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Commands\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for usage in ROW.findall(section):
        words = usage.replace("\\|", " ").split()
        command = tuple(word for word in words[:2] if WORD.match(word))
        options = {flag for word in words for part in word.strip("[]").split("/") for flag in OPTION.findall(part)}
        rows[command] = options
    return rows


def help_text(*command: str) -> str:
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0, result.output
    return result.stdout


def commands_in_help(*group: str) -> set[str]:
    """The command names under "Commands:" in a group's --help."""
    listing = help_text(*group).split("\nCommands:\n", 1)[1]
    return {line.split()[0] for line in listing.splitlines() if line.startswith("  ") and line.strip()}


def test_the_readme_lists_exactly_the_commands_of_the_help():
    rows = readme_rows()
    listed = {words[0] for words in rows}
    assert listed == commands_in_help()
    for group in {words[0] for words in rows if len(words) > 1}:
        assert {words[1] for words in rows if words[0] == group and len(words) > 1} == commands_in_help(group)


@pytest.mark.parametrize("command", sorted(readme_rows()), ids=" ".join)
def test_each_option_in_a_readme_row_is_in_the_commands_help(command):
    shown = set(OPTION.findall(help_text(*command)))
    assert readme_rows()[command] - shown == set()


def test_the_global_options_the_readme_names_are_in_the_help():
    section = README.read_text(encoding="utf-8").split("\n## Commands\n", 1)[1].split("\n|", 1)[0]
    named = set(re.findall(r"`(--[\w-]+)", section))
    assert {"--config", "--log-level", "--log-format", "--log-file"} <= named
    assert named - set(OPTION.findall(help_text())) == set()


def test_the_check_sees_a_missing_option():
    """The parsing itself: an option the help does not have would be caught."""
    rows = readme_rows()
    assert rows[("fetch",)] == {"--json", "--archive-only", "--no-archive", "--recheck-archive", "--render", "--no-render"}
    assert rows[("audit",)] >= {"--check", "--from", "--format", "-o", "--output", "--only-broken", "--fail-on"}
    assert rows[("sources", "import")] == {"--write", "--include-images"}
    assert "--no-such-option" not in set(OPTION.findall(help_text("fetch")))
