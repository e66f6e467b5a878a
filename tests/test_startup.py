"""Reading commands start fast: they never import the libraries only fetching
needs, and a one-off fetch imports only what its one document needs. Checked in
a fresh interpreter per command, through the real entry point, by listing which
of those libraries are in sys.modules when it exits. (Start-up times are
measured by bench/startup.py, not asserted here.)"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fetcher.cli.main import COMMANDS, cli
from fetcher.core.sources import resource_id
from tests.conftest import write_config
from tests.origin import Origin, html

FETCHING_LIBRARIES = ("trafilatura", "pypdf", "httpx", "htmldate", "apscheduler")
# httpx's command-line client and what it imports (rich's syntax view, pygments): no command needs them
# (fetcher.net puts a stand-in in its place)
HTTPX_COMMAND_LINE = ("httpx._main", "pygments")
TERMINAL = ("rich",)  # tables and the progress bar: not for a refresh whose stderr is no terminal

# Runs the CLI as `fetcher` does, then says on stderr's last line which of the
# libraries it loaded, however the command ended.
PROBE = f"""
import atexit, sys
def loaded():
    print("loaded:", ",".join(m for m in {FETCHING_LIBRARIES + HTTPX_COMMAND_LINE + TERMINAL!r}
                               if m in sys.modules and getattr(sys.modules[m], "__file__", None)), file=sys.stderr)
atexit.register(loaded)
sys.argv = ["fetcher", *sys.argv[1:]]
from fetcher.cli.main import main
main()
"""

PAGE = "<html><head><title>Kept</title></head><body><article><p>" + "Words worth keeping. " * 30 + "</p></article></body></html>"


def fetcher_loading(cwd: Path, *args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run `fetcher ARGS` in a fresh interpreter: its result and the fetching libraries it imported."""
    result = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("loaded:"), result.stderr
    return result, {name for name in last.removeprefix("loaded:").strip().split(",") if name}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp("startup")
    with Origin("127.0.0.1") as origin:
        url = origin.route("/page", html(PAGE))
        write_config(directory, [url])
        yield directory, url


def test_a_one_off_fetch_of_a_page_does_not_import_the_pdf_reader(site):
    directory, url = site
    result, loaded = fetcher_loading(directory, "fetch", url)
    assert result.returncode == 0, result.stderr
    assert "Words worth keeping." in result.stdout
    assert "trafilatura" in loaded and "pypdf" not in loaded and "apscheduler" not in loaded
    assert not loaded & set(HTTPX_COMMAND_LINE), loaded


def test_a_refresh_extracts_in_workers_without_importing_the_extraction_libraries(tmp_path):
    """The pages are extracted in worker processes, which import trafilatura and
    pypdf themselves (by name): the main process imports neither. With stderr
    not a terminal (as from cron) there is no progress bar, and no rich."""
    with Origin("127.0.0.1") as origin:
        urls = [origin.route(f"/page{n}", html(PAGE)) for n in range(2)]
        write_config(tmp_path, urls)
        result, loaded = fetcher_loading(tmp_path, "refresh", "--all", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["changed"] == 2 and summary["counts"] == {"ok": 2}, summary
    assert "trafilatura" not in loaded and "pypdf" not in loaded, loaded
    assert "httpx" in loaded and not loaded & set(HTTPX_COMMAND_LINE), loaded
    assert "rich" not in loaded, loaded


@pytest.mark.parametrize(
    "args",
    [
        ["--help"], ["show", "ID"], ["show", "ID", "--format", "json"], ["history", "ID"], ["history", "URL", "--json"],
        ["status"], ["status", "--json"], ["runs"], ["runs", "--json"], ["export"], ["audit"], ["audit", "--format", "html"],
        ["show", "--help"], ["audit", "--help"],
    ],
)
def test_reading_commands_import_none_of_the_fetching_libraries(site, args):
    directory, url = site
    if not (directory / "snapshots").exists():
        assert fetcher_loading(directory, "refresh")[0].returncode == 0
    args = [{"ID": resource_id(url), "URL": url}.get(arg, arg) for arg in args]
    result, loaded = fetcher_loading(directory, *args)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert not loaded & set(FETCHING_LIBRARIES + HTTPX_COMMAND_LINE), (args, loaded)


def test_the_command_list_in_help_is_what_the_commands_themselves_say():
    """`fetcher --help` lists the commands from main.COMMANDS without importing
    them; it reads the same once every command is loaded."""
    before = CliRunner().invoke(cli, ["--help"]).stdout
    for name, command in cli.commands.items():  # imports every command
        summary = inspect.cleandoc(command.help or "").split("\n\n")[0]
        assert summary == COMMANDS[name].summary, name
    assert CliRunner().invoke(cli, ["--help"]).stdout == before


def test_the_start_up_benchmark_runs():
    """`python -m bench.startup` end to end, one timed run (its figures are not checked)."""
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-m", "bench.startup", "--runs", "1"], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    cells = {cell.strip() for cell in result.stdout.replace("|", "\n").split("\n")}
    assert {"`fetcher --help`", "`fetcher show`", "`fetcher fetch`"} <= cells, result.stdout
