"""What people see at 80 columns and in cron mail: every table keeps its URLs
whole, piped output is plain, the HTML report shows the URL under a title, and
the progress bar keeps the log lines above it (issue 12, items 2 and 4)."""

from __future__ import annotations

import io
import logging
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from lxml import html as lxml_html
from rich.console import Console

from fetcher.cli import logs
from fetcher.cli.main import cli
from fetcher.cli.loglines import LogLines
from fetcher.cli.progress import run_progress
from fetcher.cli.terminal import RunProgress
from fetcher.core.models import Snapshot
from fetcher.core.outcomes import Outcome
from tests.conftest import write_config
from tests.origin import Origin, html
from tests.test_audit import article

PIPED = {"COLUMNS": "80"}  # CliRunner's output is not a terminal: as in a pipe or cron mail
TERMINAL = {"COLUMNS": "80", "TTY_COMPATIBLE": "1", "NO_COLOR": "1"}  # rich draws as on an 80-column terminal
BOX = re.compile("[\u2500-\u257f]")  # box-drawing characters
ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
LONG_PATHS = (
    "/reports/2026/annual-report-of-the-harbour-authority-final.pdf?download=1&lang=en&utm_source=newsletter",
    "/abs/2401.01234v2?context=cs.CL&utm_source=newsletter&utm_medium=email&utm_campaign=weekly-digest",
)
TITLE = "A long paper title about language models and their many evaluations"


@pytest.fixture
def fetched(tmp_path: Path):
    """A config with two long URLs with query strings (one titled, one gone), after one refresh."""
    with Origin("127.0.0.1") as origin:
        good = origin.route(LONG_PATHS[0], html(article("harbour")))
        gone = origin.url(LONG_PATHS[1])  # no route: a 404
        config = write_config(tmp_path, [good], text=f'\n[[sources]]\nurl = "{gone}"\ntitle = "{TITLE}"\n')
        done = run(config, PIPED, "refresh")
        assert done.exit_code == 0, done.output
    return config, good, gone


def run(config: Path, env: dict[str, str], *args: str):
    return CliRunner().invoke(cli, ["--config", str(config), *args], env=env)


def assert_plain(text: str) -> None:
    assert not ESCAPE.search(text) and "\x1b" not in text, text
    assert not BOX.search(text), text
    assert "…" not in text, text


def column_text(output: str, index: int) -> str:
    """A boxed table's column `index` read top to bottom, its folded pieces joined."""
    pieces = [line.split("│")[index + 1].strip() for line in output.splitlines() if line.startswith("│")]
    return "".join(pieces)


def test_audit_piped_at_80_columns_is_plain_with_every_url_whole(fetched):
    config, good, gone = fetched
    done = run(config, PIPED, "audit")
    assert done.exit_code == 0, done.output
    assert_plain(done.stdout)
    lines = done.stdout.splitlines()
    for url in (good, gone):
        assert any(url in line for line in lines), done.stdout  # whole, on one line
    header = next(line for line in lines if "state" in line and "source" in line)
    for column in ("outcome", "failing since", "last good", "archived copy / moved to"):
        assert column in header  # nothing left out when piped
    assert TITLE in done.stdout and "http-404" in done.stdout
    assert all(line == line.rstrip() for line in lines)


def test_audit_on_an_80_column_terminal_fits_and_folds_urls_never_cuts_them(fetched):
    config, good, gone = fetched
    done = run(config, TERMINAL, "audit")
    assert done.exit_code == 0, done.output
    shown = ESCAPE.sub("", done.stdout)
    assert "…" not in shown
    table = [line for line in shown.splitlines() if BOX.match(line)]
    assert table and all(len(line) <= 80 for line in table), shown
    assert good in column_text(shown, 1) and gone in column_text(shown, 1)  # folded, in full
    assert "http-404" in shown  # the outcome is kept; the lesser columns are left out, and said so
    assert "left out at this width: failing since, last good" in " ".join(shown.split())


def test_history_runs_and_status_at_80_columns_keep_urls_and_paths_whole(fetched):
    config, good, gone = fetched
    for env in (PIPED, TERMINAL):
        history = run(config, env, "history", good)
        assert history.exit_code == 0, history.output
        assert any(good in line for line in history.stdout.splitlines()), history.stdout  # the heading, whole
        assert "…" not in history.stdout
        assert "new content" in history.stdout or env is TERMINAL  # the change column is a lesser one
        runs = run(config, env, "runs")
        assert runs.exit_code == 0 and "…" not in runs.stdout and "completed" in runs.stdout, runs.output
        status = run(config, env, "status")
        assert status.exit_code == 0 and "…" not in status.stdout, status.output
        if env is PIPED:
            for done in (history, runs, status):
                assert_plain(done.stdout)
            assert any(str(config) in line for line in status.stdout.splitlines()), status.stdout
            assert "newly failing" in runs.stdout and "sha256" in history.stdout
        else:
            table = [line for line in ESCAPE.sub("", history.stdout + runs.stdout).splitlines() if BOX.match(line)]
            assert table and all(len(line) <= 80 for line in table)


def test_html_report_shows_the_url_under_the_title(fetched, tmp_path):
    config, good, gone = fetched
    report = tmp_path / "audit.html"
    done = run(config, PIPED, "audit", "--format", "html", "-o", str(report))
    assert done.exit_code == 0, done.output
    root = lxml_html.fromstring(report.read_text(encoding="utf-8"))
    cells = {tr.xpath("./td")[1].xpath("./a")[0].text_content(): tr.xpath("./td")[1]
             for tr in root.xpath('//table[@id="sources"]/tbody/tr')}
    titled = cells[TITLE]
    assert titled.xpath("./a/@href") == [gone]
    assert [div.text_content() for div in titled.xpath('./div[@class="url"]')] == [gone]  # whole, as text
    untitled = cells[good]  # no title: the URL is the link's text, not shown twice
    assert untitled.xpath('./div[@class="url"]') == []


def snapshot(n: int, outcome: Outcome) -> Snapshot:
    ok = outcome.is_success
    return Snapshot(
        fetch_id=n, resource_id=f"{n:016x}", url=f"http://127.0.0.1:9/page/{n}", final_url=f"http://127.0.0.1:9/page/{n}",
        fetched_at=datetime(2026, 11, 29, 22, 22, tzinfo=timezone.utc), origin="live", http_status=200 if ok else 404,
        outcome=outcome, detail="" if ok else "HTTP 404", attempts=1, elapsed_ms=5, changed=ok,
        text_chars=1200 if ok else None, sha256="ab" * 32 if ok else None,
    )


def screen(raw: str) -> list[str]:
    """The lines a terminal would keep: escape sequences out, and of each line
    only what was written after its last carriage return."""
    return [line.rsplit("\r", 1)[-1] for line in ESCAPE.sub("", raw).split("\n")]


def test_progress_bar_on_a_terminal_keeps_log_lines_above_it(monkeypatch):
    logs.configure("info", "text", None)
    log = logging.getLogger("fetcher")
    before = list(log.handlers)
    out = io.StringIO()
    progress = RunProgress(Console(file=out, force_terminal=True, width=80))
    progress.start(4)
    outcomes = (Outcome.OK, Outcome.HTTP_404, Outcome.OK, Outcome.HTTP_404)
    for n, outcome in enumerate(outcomes):
        progress.advance(snapshot(n, outcome))
        log.info("run 1 completed step %d with a message long enough to reach the bar's end", n)
    progress.stop()
    assert log.handlers == before  # the stderr handler is back once the bar is gone
    lines = screen(out.getvalue())
    logged = [line for line in lines if "completed step" in line]
    assert len(logged) == 4
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ info +run 1 completed step \d with", line) for line in logged)
    assert all(line.endswith("reach the bar's end") for line in logged), logged
    bar = [line for line in lines if "4/4" in line][-1]
    assert "2 failed" in bar and re.search(r"[\d.]+ sources/s", bar) and re.search(r"\d+:\d\d:\d\d left", bar), bar
    assert bar.startswith("refresh ") and bar.rstrip().endswith("elapsed") and len(bar) <= 80, bar


@pytest.mark.parametrize("environment, bar", [
    ({}, False), ({"TTY_COMPATIBLE": "0"}, False), ({"TTY_COMPATIBLE": "1"}, True), ({"FORCE_COLOR": "1"}, True),
])
def test_a_refresh_shows_a_bar_where_rich_finds_a_terminal_and_log_lines_elsewhere(monkeypatch, environment, bar):
    """run_progress() on a stderr that is no tty: rich's own rules (TTY_COMPATIBLE,
    FORCE_COLOR) decide as they would for any of fetcher's tables."""
    for name in ("TTY_COMPATIBLE", "FORCE_COLOR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("sys.stderr", io.StringIO())
    progress = run_progress()
    assert isinstance(progress, RunProgress if bar else LogLines)
    progress.start(2)
    assert progress.shown is bar
    progress.stop()


def test_no_bar_off_a_terminal_one_log_line_a_source(capsys):
    logs.configure("info", "text", None)
    out = io.StringIO()
    progress = RunProgress(Console(file=out, force_terminal=False, width=80))
    progress.start(2)
    progress.advance(snapshot(1, Outcome.OK))
    progress.advance(snapshot(2, Outcome.HTTP_404))
    progress.stop()
    assert out.getvalue() == ""
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "http://127.0.0.1:9/page/1" in err[0] and "http-404" in err[1], err
