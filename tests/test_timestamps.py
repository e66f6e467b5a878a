"""Every timestamp in every JSON (and CSV) output is RFC 3339 in UTC with `Z`:
`fetch --json`, `refresh --json`, `runs --json`, `history --json`, `show
--format json`, `export` (JSON and JSON lines), `audit --format json|csv`,
JSON log lines and the run lock's file. A real store, from a real refresh of a
loopback origin whose second page is gone and stood in for by an archived copy."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fetcher.cli.main import cli
from fetcher.core.timestamps import rfc3339
from fetcher.store.lock import RunLock
from tests.conftest import write_config
from tests.fake_wayback import FakeWayback
from tests.origin import Origin, html

RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
LOOKS_LIKE_A_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT")  # any ISO 8601 date and time
ARTICLE = "<p>" + "The harbour board published its annual report on dredging and tides. " * 12 + "</p>"
PAGE = f"<html><head><title>Harbour</title></head><body><article>{ARTICLE}</article></body></html>"


def timestamps(value: Any) -> Iterator[str]:
    """Every string in a JSON value that reads as a date and time."""
    if isinstance(value, dict):
        for item in value.values():
            yield from timestamps(item)
    elif isinstance(value, list):
        for item in value:
            yield from timestamps(item)
    elif isinstance(value, str) and LOOKS_LIKE_A_TIMESTAMP.match(value):
        yield value


def assert_rfc3339(found: list[str], at_least: int) -> None:
    assert len(found) >= at_least, found
    wrong = [stamp for stamp in found if not RFC3339_UTC.fullmatch(stamp)]
    assert wrong == []


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[str]]]:
    with Origin("127.0.0.1") as origin, FakeWayback("127.0.0.6") as wayback:
        live = origin.route("/live", html(PAGE))
        gone = origin.route("/gone", html("<html><body>Not here</body></html>", status=404))
        wayback.add(gone, "20240408194323", PAGE.encode())
        directory = tmp_path_factory.mktemp("stamps")
        config = write_config(directory, [live, gone], archive={**wayback.settings, "requests_per_minute": 600})
        run = CliRunner().invoke(cli, ["--config", str(config), "--log-format", "json", "refresh", "--json"])
        assert run.exit_code == 0, run.output
        yield config, [live, gone], run


def invoke(config: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--config", str(config), *args])
    assert result.exit_code == 0, (args, result.output, result.stderr)
    return result.stdout


def test_refresh_and_its_json_log_lines(kb):
    _, _, run = kb
    assert_rfc3339(list(timestamps(json.loads(run.stdout))), at_least=2)  # started_at, finished_at
    logs = [json.loads(line) for line in run.stderr.splitlines()]
    assert_rfc3339([entry["ts"] for entry in logs], at_least=2)


def test_runs_json(kb):
    config, _, _ = kb
    (run,) = json.loads(invoke(config, "runs", "--json"))
    assert_rfc3339([run["started_at"], run["finished_at"]], at_least=2)
    assert_rfc3339(list(timestamps(run)), at_least=4)  # and the summary's own


def test_history_show_and_fetch_json(kb):
    config, (live, gone), _ = kb
    for url in (live, gone):
        history = json.loads(invoke(config, "history", url, "--json"))
        assert_rfc3339(list(timestamps(history)), at_least=1)
        shown = json.loads(invoke(config, "show", url, "--format", "json"))
        assert_rfc3339(list(timestamps(shown)), at_least=2)
    archived = json.loads(invoke(config, "show", gone, "--format", "json"))
    assert archived["origin"] == "archive" and archived["captured_at"] == "2024-04-08T19:43:23Z"
    fetched = json.loads(invoke(config, "fetch", live, "--json"))
    assert_rfc3339(list(timestamps(fetched)), at_least=2)  # fetched_at, content_first_seen


def test_export_json_and_jsonl(kb):
    config, _, _ = kb
    assert_rfc3339(list(timestamps(json.loads(invoke(config, "export")))), at_least=4)
    lines = [json.loads(line) for line in invoke(config, "export", "--format", "jsonl").splitlines()]
    assert_rfc3339(list(timestamps(lines)), at_least=4)


def test_audit_json_and_csv(kb):
    config, _, _ = kb
    audit = json.loads(invoke(config, "audit", "--format", "json"))
    assert_rfc3339(list(timestamps(audit)), at_least=5)  # generated_at, checks, the stand-in's capture
    assert "2024-04-08T19:43:23Z" in [row["stand_in_captured_at"] for row in audit["sources"]]
    rows = list(csv.DictReader(io.StringIO(invoke(config, "audit", "--format", "csv"))))
    assert_rfc3339(list(timestamps(rows)), at_least=4)


def test_status_json_has_no_machine_timestamp_in_another_format(kb):
    config, _, _ = kb
    assert_rfc3339(list(timestamps(json.loads(invoke(config, "status", "--json")))), at_least=0)


def test_the_run_lock_file(tmp_path):
    with RunLock(tmp_path) as lock:
        lock.acquire(datetime(2026, 11, 23, 3, 0, tzinfo=timezone.utc), "refresh")
        written = json.loads(lock.path.read_text(encoding="utf-8"))
    assert written["started_at"] == "2026-11-23T03:00:00Z"


@pytest.mark.parametrize(
    ("moment", "written"),
    [
        (datetime(2026, 11, 23, 3, 0, tzinfo=timezone.utc), "2026-11-23T03:00:00Z"),
        (datetime(2026, 11, 23, 3, 0, 0, 250000, tzinfo=timezone.utc), "2026-11-23T03:00:00.250000Z"),
        (datetime(2026, 11, 23, 4, 0, tzinfo=timezone(timedelta(hours=1))), "2026-11-23T03:00:00Z"),
        (datetime(2026, 11, 23, 3, 0), "2026-11-23T03:00:00Z"),
        (None, None),
    ],
)
def test_rfc3339(moment, written):
    assert rfc3339(moment) == written
