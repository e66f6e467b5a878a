"""What a user names and reads: a missing store is said, never read as nothing;
a source is named by its resource id or URL in every command, and an unknown
one is the same error everywhere; `status --json` and every command's JSON keys
are as the README documents them; `sources import` leaves images, mailto:/tel:
and same-document anchors out. All through the command line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from fetcher.cli.main import cli
from fetcher.core.sources import resource_id
from tests.conftest import write_config
from tests.origin import Origin, html

README = Path(__file__).resolve().parent.parent / "README.md"
PAGE = "<html><head><title>A page</title></head><body><p>" + "Readable words of an article. " * 40 + "</p></body></html>"


def invoke(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), *args])


def error_line(result: Result) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture
def site(origin: Origin, tmp_path: Path) -> tuple[Path, str, str]:
    """A config of two pages on loopback, nothing fetched yet: (config, first url, second url)."""
    urls = [origin.route("/one", html(PAGE)), origin.route("/two", html(PAGE.replace("A page", "Two")))]
    return write_config(tmp_path, urls), urls[0], urls[1]


# -- a missing store -----------------------------------------------------------------


def test_reading_commands_on_a_missing_store_say_so_and_exit_2(site, tmp_path):
    config, url, _ = site
    out = tmp_path / "site.json"
    for args in (("show", url), ("history", url), ("history", resource_id(url), "--json"), ("export",),
                 ("export", "-o", str(out)), ("runs",), ("runs", "--json"), ("status",), ("status", "--json")):
        result = invoke(config, *args)
        assert result.exit_code == 2, (args, result.output)
        assert "no store yet" in error_line(result) and result.stdout == "", args
    assert not out.exists() and not (tmp_path / "snapshots").exists()


def test_audit_without_a_store_lists_every_source_unchecked_and_says_why(site, tmp_path):
    config, url, other = site
    result = invoke(config, "audit", "--format", "json")
    assert result.exit_code == 0
    assert "no store yet" in result.stderr
    rows = json.loads(result.stdout)["sources"]
    assert {(row["url"], row["state"]) for row in rows} == {(url, "unchecked"), (other, "unchecked")}
    assert not (tmp_path / "snapshots").exists()


def test_refresh_with_nothing_due_says_when_the_next_source_is(site):
    config, _, _ = site
    assert invoke(config, "refresh").exit_code == 0
    again = invoke(config, "refresh")
    assert again.exit_code == 0
    hint = again.stdout.splitlines()[-1]
    assert re.search(r"next source is due \d{4}-\d\d-\d\d \d\d:\d\d UTC", hint), again.stdout
    assert "--all" in hint


def test_archive_only_without_an_archive_is_bad_input_and_stores_nothing(site, origin, tmp_path):
    config, url, _ = site
    result = invoke(config, "fetch", url, "--archive-only")
    assert result.exit_code == 2 and "--archive-only" in error_line(result) and "archive" in error_line(result)
    assert not (tmp_path / "snapshots").exists() and origin.requests == []


# -- naming a source --------------------------------------------------------------------


def test_refresh_only_takes_a_url_as_fetch_and_show_do(site, origin):
    config, url, other = site
    result = invoke(config, "refresh", "--only", url, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["total"] == 1
    assert (origin.hits("/one"), origin.hits("/two")) == (1, 0)
    both = invoke(config, "refresh", "--only", other, "--only", resource_id(url), "--json")
    assert json.loads(both.stdout)["total"] == 2


@pytest.mark.parametrize("target", ["deadbeef", "0123456789abcdef", "http://127.0.0.1:9/nobody-knows-me"])
def test_an_unknown_source_is_the_same_error_in_every_command(site, target):
    config, url, _ = site
    assert invoke(config, "fetch", url).exit_code == 0  # a store exists
    lines = set()
    for args in (("show", target), ("history", target), ("history", target, "--json"), ("refresh", "--only", target)):
        result = invoke(config, *args)
        assert result.exit_code == 2 and result.stdout == "", (args, result.output)
        lines.add(error_line(result))
    [line] = lines
    assert line.startswith(f"error: unknown source '{target}'") and "only http and https" not in line


def test_a_malformed_url_says_what_is_wrong_with_it(site):
    config, url, _ = site
    assert invoke(config, "fetch", url).exit_code == 0
    for command in ("fetch", "show", "history"):
        result = invoke(config, command, "ftp://example.org/file")
        assert result.exit_code == 2 and "only http and https" in error_line(result)


def test_a_stored_source_no_longer_configured_is_still_named_by_url_or_id(site, tmp_path):
    config, url, _ = site
    assert invoke(config, "fetch", url).exit_code == 0
    write_config(tmp_path, [])  # the source leaves the config; its fetches stay in the store
    for target in (url, resource_id(url)):
        assert invoke(config, "show", target).exit_code == 0
        assert len(json.loads(invoke(config, "history", target, "--json").stdout)) == 1


# -- status --json and the README's table of keys ------------------------------------------


def test_status_json_has_snake_case_keys_and_typed_values(site):
    config, _, _ = site
    assert invoke(config, "refresh").exit_code == 0
    status = json.loads(invoke(config, "status", "--json").stdout)
    assert all(re.fullmatch(r"[a-z_]+", key) for key in status)
    assert (status["sources"], status["states"], status["due_now"]) == (2, {"ok": 2}, 0)
    assert status["last_run"]["status"] == "completed" and status["last_run"]["sources"] == 2
    assert isinstance(status["last_run"]["seconds"], float) and isinstance(status["last_run"]["id"], int)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", status["next_due"])
    assert status["next_scheduled_run"].endswith("Z") and status["schedule"] == {"cron": "0 3 * * *", "timezone": "UTC"}


def documented_keys() -> dict[str, set[str]]:
    """The README's *JSON output* table: first words of each row -> its keys."""
    section = README.read_text(encoding="utf-8").split("\n### JSON output\n", 1)[1].split("\n### ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split(" | ")]
        if line.startswith("| `") or line.startswith("| their") or line.startswith("| its"):
            rows[cells[0]] = set(cells[1].strip("`").split(", "))
    return rows


def test_every_json_output_has_the_keys_the_readme_lists(site):
    config, url, _ = site
    fetched = json.loads(invoke(config, "fetch", url, "--json").stdout)
    summary = json.loads(invoke(config, "refresh", "--all", "--json").stdout)
    shown = json.loads(invoke(config, "show", url, "--format", "json").stdout)
    [exported, _] = json.loads(invoke(config, "export").stdout)
    history = json.loads(invoke(config, "history", url, "--json").stdout)
    [run] = json.loads(invoke(config, "runs", "--json").stdout)
    status = json.loads(invoke(config, "status", "--json").stdout)
    audit = json.loads(invoke(config, "audit", "--format", "json").stdout)
    actual = [fetched, history[0], shown, shown["content"], summary, run, run["summary"], status,
              status["last_run"], status["schedule"], audit, audit["sources"][0]]
    documented = list(documented_keys().values())
    assert len(documented) == len(actual)
    for keys, output in zip(documented, actual):
        assert keys == set(output), sorted(keys ^ set(output))
    assert set(exported) == set(shown) and set(exported["content"]) == set(shown["content"])


# -- sources import ----------------------------------------------------------------------


def test_sources_import_leaves_out_images_mailto_tel_and_anchors(tmp_path):
    config = write_config(tmp_path, [])
    doc = tmp_path / "notes.md"
    doc.write_text(
        "See [the report](https://example.org/report) and ![chart](https://example.org/chart.png).\n"
        "[![badge](https://img.example.org/badge.svg)](https://ci.example.org/build)\n"
        "Mail [us](mailto:team@example.org), call [us](tel:+15551234), jump [down](#details).\n",
        encoding="utf-8",
    )
    page = tmp_path / "page.html"
    page.write_text(
        '<base href="https://example.org/page"><a href="#top">top</a> <a href="mailto:a@example.org">mail</a>'
        '<a href="tel:123">call</a> <a href="/other">other</a>',
        encoding="utf-8",
    )
    listed = invoke(config, "sources", "import", str(doc), str(page))
    assert listed.exit_code == 0, listed.output
    urls = [line.split()[1] for line in listed.stdout.splitlines()]
    assert urls == ["https://example.org/report", "https://ci.example.org/build", "https://example.org/other"]

    kept = invoke(config, "sources", "import", str(doc), "--include-images", "--write")
    assert kept.exit_code == 0, kept.output
    written = config.read_text(encoding="utf-8")
    for url in ("https://example.org/chart.png", "https://img.example.org/badge.svg", "https://example.org/report"):
        assert f'url = "{url}"' in written
    assert "mailto:" not in written and "tel:" not in written and "#details" not in written
