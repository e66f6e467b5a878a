"""The command line against a real loopback origin serving a real article page:
what a user sees from fetch, show, history, export and refresh, and how bad
input is reported."""

from __future__ import annotations

import hashlib
import html as html_lib
import json
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from fetcher.cli.main import cli
from tests.conftest import Page, corpus_pages, run_fetcher, write_config
from tests.origin import Origin, html, sequence

STATUS_200 = re.compile(r"^HTTP 200 · Fetched [A-Z][a-z]{2} \d{1,2}, \d{4} · (<1|\d[\d,]*) KB$")
JSON_KEYS = {
    "resource_id", "url", "final_url", "fetched_at", "origin", "http_status", "outcome", "content_type",
    "size_bytes", "text_chars", "sha256", "title", "text",
}
NOT_FOUND = "<html><head><title>Not found</title></head><body><h1>Page not found</h1></body></html>"

PAGES = corpus_pages()
ARTICLE = max(PAGES, key=lambda page: len(page.gold))  # long enough to be cut at the default 3000 chars
OTHER = min(PAGES, key=lambda page: len(page.gold))


def rid(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


def flat(text: str) -> str:
    return " ".join(text.split())


def first_sentence(page: Page) -> str:
    return re.split(r"(?<=[.!?])\s+", page.gold.strip(), maxsplit=1)[0]


def og_title(page: Page) -> str:
    found = re.search(rb'<meta[^>]+property="og:title"[^>]+content="([^"]*)"', page.html)
    assert found, "fixture page has no og:title"
    return html_lib.unescape(found.group(1).decode("utf-8"))


def kb(chars: int) -> str:
    kilobytes = round(chars / 1024)
    return "<1 KB" if kilobytes == 0 else f"{kilobytes:,} KB"


def day(iso: str) -> str:
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return f"{moment:%b} {moment.day}, {moment.year}"


def error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), stderr
    assert "Traceback" not in stderr
    return lines[0]


class Scoped:
    """One test's corner of the shared loopback origin: its routes live under a
    prefix of their own, so hits and requests are counted per test."""

    def __init__(self, origin: Origin, prefix: str):
        self._origin = origin
        self.prefix = prefix

    def route(self, path: str, route) -> str:
        return self._origin.route(self.prefix + path, route)

    def url(self, path: str) -> str:
        return self._origin.url(self.prefix + path)

    def hits(self, path: str) -> int:
        return self._origin.hits(self.prefix + path)

    @property
    def requests(self) -> list:
        return [seen for seen in self._origin.requests if seen.path.startswith(self.prefix + "/")]


@dataclass
class Site:
    origin: Scoped
    directory: Path
    config: Path | None = None

    def configure(self, urls: list[str] = (), text: str = "", **fetch) -> Path:
        self.config = write_config(self.directory, list(urls), text, **fetch)
        return self.config

    def run(self, *args: str) -> Result:
        if self.config is None:
            self.configure()
        return CliRunner().invoke(cli, ["--config", str(self.config), *args])

    def json(self, *args: str):
        result = self.run(*args)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    @property
    def snapshots(self) -> Path:
        return self.directory / "snapshots"


@pytest.fixture(scope="module")
def shared_origin() -> Iterator[Origin]:
    # One server for the module: stopping an Origin waits out serve_forever's 0.5 s poll.
    with Origin("127.0.0.1") as server:
        yield server


@pytest.fixture
def site(shared_origin, tmp_path, request) -> Site:
    prefix = "/" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:12]
    return Site(Scoped(shared_origin, prefix), tmp_path)


def preview_parts(output: str) -> tuple[str, str, str, str | None, str]:
    """(first line, status line, excerpt, truncated line or None, last line)."""
    lines = output.rstrip("\n").split("\n")
    truncated = lines[-2] if lines[-2].startswith("... (truncated,") else None
    body_end = -2 if truncated else -1
    return lines[0], lines[1], "\n".join(lines[2:body_end]), truncated, lines[-1]


# -- fetch ---------------------------------------------------------------------


def test_fetch_by_url_prints_the_preview_block(site):
    url = site.origin.route("/news/delhi-air", html(ARTICLE.html))
    result = site.run("fetch", url)
    assert result.exit_code == 0, result.output
    first, status, shown, truncated, last = preview_parts(result.stdout)
    stored = site.json("show", url, "--format", "json")
    text = stored["content"]["text"]

    assert first == "Cached Content Preview"
    assert STATUS_200.match(status), status
    assert status == f"HTTP 200 · Fetched {day(stored['fetched_at'])} · {kb(len(text))}"
    assert last == f"Resource ID: {rid(url)}"
    assert len(text) > 3000
    assert truncated == f"... (truncated, {kb(len(text))} total)"
    assert len(shown) <= 3000 and text.startswith(shown)
    assert len(shown) > 2500  # cut at a word near the limit, not long before it
    assert flat(first_sentence(ARTICLE)) in flat(shown)
    assert site.origin.hits("/news/delhi-air") == 1


def test_small_preview_chars_cut_the_text_and_say_so(site):
    url = site.origin.route("/article", html(ARTICLE.html))
    site.configure(text="[preview]\nchars = 200\n")
    result = site.run("fetch", url)
    assert result.exit_code == 0, result.output
    _, status, shown, truncated, last = preview_parts(result.stdout)
    text = site.json("show", url, "--format", "json")["content"]["text"]
    assert len(shown) <= 200 and shown and text.startswith(shown)
    assert not shown.endswith(" ")
    assert truncated == f"... (truncated, {kb(len(text))} total)"
    assert status.endswith(kb(len(text))) and last == f"Resource ID: {rid(url)}"


def test_text_shorter_than_the_preview_is_shown_whole_without_truncation_line(site):
    url = site.origin.route("/article", html(ARTICLE.html))
    site.configure(text="[preview]\nchars = 100000\n")
    result = site.run("fetch", url)
    assert result.exit_code == 0, result.output
    text = site.json("show", url, "--format", "json")["content"]["text"]
    lines = result.stdout.rstrip("\n").split("\n")
    assert "... (truncated" not in result.stdout
    assert lines[0] == "Cached Content Preview" and STATUS_200.match(lines[1])
    assert "\n".join(lines[2:-1]) == text
    assert lines[-1] == f"Resource ID: {rid(url)}"


def test_a_short_page_is_under_one_kilobyte_and_not_truncated(site):
    paragraph = "The board met on Tuesday and approved the budget for the coming year without changes."
    page = f"<html><head><title>Board notes</title></head><body><article><p>{paragraph}</p></article></body></html>"
    url = site.origin.route("/note", html(page))
    result = site.run("fetch", url)
    assert result.exit_code == 0, result.output
    lines = result.stdout.rstrip("\n").split("\n")
    assert STATUS_200.match(lines[1]) and lines[1].endswith(" · <1 KB"), lines[1]
    assert paragraph in lines[2:-1]
    assert "truncated" not in result.stdout


def test_fetch_by_resource_id_of_a_configured_source(site):
    url = site.origin.route("/configured", html(ARTICLE.html))
    site.origin.route("/other", html(OTHER.html))
    site.configure([url, site.origin.url("/other")])
    result = site.run("fetch", rid(url))
    assert result.exit_code == 0, result.output
    assert result.stdout.rstrip("\n").split("\n")[-1] == f"Resource ID: {rid(url)}"
    assert flat(first_sentence(ARTICLE)) in flat(result.stdout)
    assert site.origin.hits("/configured") == 1 and site.origin.hits("/other") == 0


def test_fetch_of_an_unconfigured_url_is_stored_under_its_id_and_show_works(site):
    url = site.origin.route("/not-in-config", html(ARTICLE.html))
    site.configure()
    fetched = site.run("fetch", url)
    assert fetched.exit_code == 0, fetched.output

    shown = site.run("show", rid(url))
    assert shown.exit_code == 0, shown.output
    assert shown.stdout == fetched.stdout
    assert site.origin.hits("/not-in-config") == 1  # show used no network

    history = site.json("history", rid(url), "--json")
    assert [(h["url"], h["resource_id"]) for h in history] == [(url, rid(url))]
    again = site.run("fetch", rid(url))  # a stored id is a valid fetch target too
    assert again.exit_code == 0 and site.origin.hits("/not-in-config") == 2


def test_fetch_json_describes_what_was_served(site):
    url = site.origin.route("/article", html(ARTICLE.html))
    before = datetime.now(timezone.utc)
    data = site.json("fetch", url, "--json")
    after = datetime.now(timezone.utc)

    assert JSON_KEYS <= set(data), JSON_KEYS - set(data)
    assert (data["resource_id"], data["url"], data["final_url"]) == (rid(url), url, url)
    assert (data["http_status"], data["origin"], data["outcome"]) == (200, "live", "ok")
    assert data["content_type"].startswith("text/html")
    assert data["size_bytes"] == len(ARTICLE.html)
    assert data["sha256"] == hashlib.sha256(ARTICLE.html).hexdigest()
    assert data["text_chars"] == len(data["text"])
    assert flat(first_sentence(ARTICLE)) in flat(data["text"])
    fetched_at = datetime.fromisoformat(data["fetched_at"].replace("Z", "+00:00"))
    assert before - timedelta(seconds=1) <= fetched_at <= after + timedelta(seconds=1)


def test_title_is_the_article_headline(site):
    url = site.origin.route("/article", html(ARTICLE.html))
    data = site.json("fetch", url, "--json")
    headline = og_title(ARTICLE)
    assert data["title"] == headline
    assert "\n" not in data["title"]
    assert site.json("show", url, "--format", "json")["title"] == headline


def test_configured_title_stands_in_when_the_page_never_had_content(site):
    url = site.origin.route("/gone", html(NOT_FOUND, status=404))
    site.configure(text=f'\n[[sources]]\nurl = "{url}"\ntitle = "Cited report (configured)"\n')
    assert site.run("fetch", url).exit_code == 1
    record = site.json("show", url, "--format", "json")
    assert record["title"] == "Cited report (configured)"
    assert record["content"] is None


def test_fetch_of_a_404_exits_1_and_is_stored(site):
    url = site.origin.route("/gone", html(NOT_FOUND, status=404))
    result = site.run("fetch", url)
    assert result.exit_code == 1
    lines = result.stdout.rstrip("\n").split("\n")
    assert lines[0] == "Cached Content Preview"
    assert re.match(r"^HTTP 404 \(http-404\) · Fetched [A-Z][a-z]{2} \d{1,2}, \d{4} · no content$", lines[1]), lines[1]
    assert lines[-1] == f"Resource ID: {rid(url)}"

    history = site.json("history", url, "--json")
    assert [(h["http_status"], h["outcome"], h["changed"], h["sha256"]) for h in history] == [
        (404, "http-404", False, None)
    ]
    shown = site.run("show", url)
    assert shown.exit_code == 0 and shown.stdout.split("\n")[1] == lines[1]
    assert site.origin.hits("/gone") == 1


def test_failure_after_content_keeps_showing_the_old_copy(site):
    url = site.origin.route("/article", sequence(html(ARTICLE.html), html(NOT_FOUND, status=404)))
    good = site.json("fetch", url, "--json")

    failed = site.run("fetch", url)
    assert failed.exit_code == 1
    _, status, shown, truncated, last = preview_parts(failed.stdout)
    latest = site.json("history", url, "--json")[0]
    assert status == (
        f"HTTP 404 (http-404) · Fetched {day(latest['fetched_at'])} · "
        f"showing the copy fetched {day(good['fetched_at'])} · {kb(good['text_chars'])}"
    )
    assert shown and good["text"].startswith(shown)
    assert flat(first_sentence(ARTICLE)) in flat(shown)
    assert truncated is not None and last == f"Resource ID: {rid(url)}"

    again = site.run("show", url)
    assert again.exit_code == 0 and again.stdout == failed.stdout

    record = site.json("show", url, "--format", "json")
    assert (record["http_status"], record["outcome"]) == (404, "http-404")
    assert record["content"]["text"] == good["text"]
    assert record["content"]["sha256"] == good["sha256"]
    assert record["preview"] == again.stdout.rstrip("\n")
    assert site.origin.hits("/article") == 2


# -- show ----------------------------------------------------------------------


def test_show_markdown_and_json(site):
    url = site.origin.route("/article", html(ARTICLE.html))
    assert site.run("fetch", url).exit_code == 0
    text_view = site.run("show", url)
    _, status, shown, truncated, _ = preview_parts(text_view.stdout)

    markdown = site.run("show", url, "--format", "markdown")
    assert markdown.exit_code == 0
    lines = markdown.stdout.rstrip("\n").split("\n")
    assert lines[0] == "### Cached Content Preview"
    assert f"**{status}**" in lines
    quoted = [line for line in lines if line.startswith(">")]
    assert "\n".join(line[2:] for line in quoted) == shown
    assert f"*{truncated}*" in lines
    assert lines[-1] == f"Resource ID: `{rid(url)}`"

    record = site.json("show", url, "--format", "json")
    assert (record["resource_id"], record["url"], record["http_status"], record["outcome"]) == (rid(url), url, 200, "ok")
    assert record["title"] == og_title(ARTICLE)
    assert record["content"]["sha256"] == hashlib.sha256(ARTICLE.html).hexdigest()
    assert record["content"]["text"].startswith(shown)
    assert record["preview"] == text_view.stdout.rstrip("\n")
    assert site.origin.hits("/article") == 1


def test_show_of_a_never_fetched_configured_source_exits_2(site):
    url = site.origin.route("/article", html(ARTICLE.html))
    other = site.origin.route("/other", html(OTHER.html))
    site.configure([url, other])
    assert site.run("fetch", other).exit_code == 0  # a store exists; /article is not in it
    for target in (rid(url), url):
        result = site.run("show", target)
        assert result.exit_code == 2
        line = error_line(result.stderr)
        assert rid(url) in line and "not been fetched" in line
        assert result.stdout == ""
    assert site.origin.hits("/article") == 0


# -- history -------------------------------------------------------------------


def test_unchanged_page_fetched_twice_is_one_copy_and_two_history_rows(site):
    url = site.origin.route("/article", html(ARTICLE.html))
    assert site.run("fetch", url).exit_code == 0
    assert site.run("fetch", url).exit_code == 0

    history = site.json("history", url, "--json")
    assert [h["changed"] for h in history] == [False, True]  # newest first
    assert history[0]["fetch_id"] > history[1]["fetch_id"]
    assert history[0]["fetched_at"] >= history[1]["fetched_at"]
    assert history[0]["sha256"] == history[1]["sha256"] == hashlib.sha256(ARTICLE.html).hexdigest()
    assert all("text" not in h for h in history)

    bodies = list((site.snapshots / "bodies").rglob("*.gz"))
    assert [p.name for p in bodies] == [f"{history[0]['sha256']}.gz"]
    with sqlite3.connect(f"file:{site.snapshots / 'fetcher.sqlite3'}?mode=ro", uri=True) as db:
        assert db.execute("SELECT COUNT(*) FROM contents").fetchone()[0] == 1
        assert db.execute("SELECT COUNT(*) FROM fetches").fetchone()[0] == 2

    table = site.run("history", url)
    assert table.exit_code == 0
    assert rid(url) in table.stdout
    assert table.stdout.index("unchanged") < table.stdout.index("new content")


def test_history_lists_newest_first(site):
    url = site.origin.route("/article", sequence(html(ARTICLE.html), html(NOT_FOUND, status=404), html(OTHER.html)))
    codes = [site.run("fetch", url).exit_code for _ in range(3)]
    assert codes == [0, 1, 0]
    history = site.json("history", url, "--json")
    assert [(h["outcome"], h["http_status"], h["changed"]) for h in history] == [
        ("ok", 200, True), ("http-404", 404, False), ("ok", 200, True)
    ]
    assert history[0]["sha256"] == hashlib.sha256(OTHER.html).hexdigest()
    assert history[2]["sha256"] == hashlib.sha256(ARTICLE.html).hexdigest()
    assert [h["fetch_id"] for h in history] == sorted((h["fetch_id"] for h in history), reverse=True)

    table = site.run("history", url).stdout
    rows = [line for line in table.splitlines()[1:] if " live " in line]  # not the heading: its URL's port may hold "404"
    assert len(rows) == 3 and "new content" in rows[0] and "http-404" in rows[1] and "new content" in rows[2], table


def test_history_of_a_configured_source_never_fetched_is_empty(site):
    url = site.origin.url("/never")
    other = site.origin.route("/other", html(OTHER.html))
    site.configure([url, other])
    assert site.run("fetch", other).exit_code == 0
    assert site.json("history", url, "--json") == []
    result = site.run("history", url)
    assert result.exit_code == 0 and "not been fetched" in result.stdout


# -- export --------------------------------------------------------------------


def test_export_writes_one_record_per_stored_resource(site):
    first = site.origin.route("/one", html(ARTICLE.html))
    second = site.origin.route("/two", html(OTHER.html))
    gone = site.origin.route("/gone", html(NOT_FOUND, status=404))
    codes = [site.run("fetch", url).exit_code for url in (first, second, first, gone)]
    assert codes == [0, 0, 0, 1]

    out = site.directory / "export" / "previews.jsonl"
    out.parent.mkdir()
    result = site.run("export", "--format", "jsonl", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "wrote 3 sources" in result.stderr and result.stdout == ""
    lines = out.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert len(lines) == 3 and all(isinstance(r, dict) for r in records)
    by_id = {r["resource_id"]: r for r in records}
    assert set(by_id) == {rid(first), rid(second), rid(gone)}
    assert by_id[rid(first)]["content"]["text"].startswith(first_sentence(ARTICLE)[:40])
    assert by_id[rid(second)]["content"]["sha256"] == hashlib.sha256(OTHER.html).hexdigest()
    assert by_id[rid(gone)]["content"] is None and by_id[rid(gone)]["outcome"] == "http-404"
    for url in (first, second, gone):
        assert by_id[rid(url)]["preview"] == site.run("show", url).stdout.rstrip("\n")
    assert [p.name for p in out.parent.iterdir()] == ["previews.jsonl"]  # no temporary left behind

    array = site.run("export")
    assert array.exit_code == 0
    assert json.loads(array.stdout) == records


def test_export_with_no_store_says_so_and_writes_nothing(site):
    out = site.directory / "site.json"
    for args in (("export",), ("export", "-o", str(out))):
        result = site.run(*args)
        assert result.exit_code == 2 and result.stdout == ""
        assert "no store yet" in error_line(result.stderr)
    assert not out.exists()


# -- refresh -------------------------------------------------------------------


def test_refresh_json_summary_adds_up_to_the_sources(site):
    urls = [
        site.origin.route("/one", html(ARTICLE.html)),
        site.origin.route("/two", html(OTHER.html)),
        site.origin.route("/gone", html(NOT_FOUND, status=404)),
    ]
    site.configure(urls)
    result = site.run("refresh", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["total"] == len(urls) == sum(summary["counts"].values())
    assert summary["counts"] == {"ok": 2, "http-404": 1}
    assert (summary["changed"], summary["unchanged"], summary["failed"]) == (2, 0, 1)
    assert summary["changed"] + summary["unchanged"] + summary["failed"] == len(urls)
    assert [site.origin.hits(p) for p in ("/one", "/two", "/gone")] == [1, 1, 1]
    progress = [line for line in result.stderr.splitlines() if "run 1 " not in line]  # one line a source
    assert len(progress) == len(urls) and all(sum(rid(u) in line for line in progress) == 1 for u in urls)
    for url in urls:
        assert len(site.json("history", url, "--json")) == 1


def test_refresh_only_fetches_the_chosen_source(site):
    urls = [site.origin.route("/one", html(ARTICLE.html)), site.origin.route("/two", html(OTHER.html))]
    site.configure(urls)
    result = site.run("refresh", "--only", rid(urls[1]), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["total"] == 1
    assert (site.origin.hits("/one"), site.origin.hits("/two")) == (0, 1)

    unknown = site.run("refresh", "--only", "0123456789abcdef")
    assert unknown.exit_code == 2 and "0123456789abcdef" in error_line(unknown.stderr)


def test_refresh_warns_about_duplicate_sources_but_fetches_both(site):
    plain = site.origin.route("/report", html(ARTICLE.html))
    slashed = site.origin.route("/report/", html(ARTICLE.html))
    site.configure([plain, slashed])
    result = site.run("refresh", "--json")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if " warning " in line]  # a log line
    assert len(warnings) == 1
    assert slashed in warnings[0] and plain in warnings[0] and "duplicate" in warnings[0]
    words = warnings[0].split()
    assert words.index(slashed) < words.index(plain)  # the later source is the one named a duplicate
    assert json.loads(result.stdout)["counts"] == {"ok": 2}
    assert (site.origin.hits("/report"), site.origin.hits("/report/")) == (1, 1)


# -- help and bad input ----------------------------------------------------------


@pytest.mark.parametrize("command", [[], ["fetch"], ["refresh"], ["show"], ["history"], ["export"]])
def test_help_works(command):
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Usage:")
    usage = result.stdout.split("\n")[0]
    assert all(f" {word} " in f"{usage} " for word in command), usage


def test_every_command_is_documented_in_the_readme():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    assert {"fetch", "refresh", "show", "history", "export", "runs", "status", "schedule"} <= set(cli.commands)
    for name, command in cli.commands.items():
        assert f"fetcher {name}" in readme, name
        for option in command.params:
            for flag in option.opts:
                if flag.startswith("--") and flag != "--help":
                    assert flag in readme, (name, flag)


@pytest.mark.parametrize("command", ["fetch", "show", "history"])
@pytest.mark.parametrize("target", ["foo", "ftp://example.org/file", "0123456789abcdef"])
def test_bad_target_exits_2_with_one_error_line(site, command, target):
    site.configure([site.origin.url("/configured")])
    result = site.run(command, target)
    assert result.exit_code == 2, result.output
    assert target in error_line(result.stderr)
    assert result.stdout == ""
    assert site.origin.requests == []


def test_bad_target_through_the_entry_point(site):
    config = site.configure()
    done = run_fetcher(site.directory, "--config", str(config), "fetch", "foo")
    assert done.returncode == 2
    assert "foo" in error_line(done.stderr)
    assert done.stdout == ""


def test_show_of_unfetched_source_through_the_entry_point(site):
    url = site.origin.url("/article")
    config = site.configure([url])
    done = run_fetcher(site.directory, "--config", str(config), "show", rid(url))
    assert done.returncode == 2
    assert rid(url) in error_line(done.stderr)
    assert done.stdout == ""


def test_failed_fetch_through_the_entry_point_exits_1_with_its_preview(site):
    url = site.origin.route("/gone", html(NOT_FOUND, status=404))
    config = site.configure()
    done = run_fetcher(site.directory, "--config", str(config), "fetch", url)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stdout.rstrip("\n").split("\n")
    assert lines[0] == "Cached Content Preview" and lines[1].startswith("HTTP 404 (http-404)")
    assert lines[-1] == f"Resource ID: {rid(url)}"
    assert site.origin.hits("/gone") == 1


def test_a_refresh_and_a_fetch_through_the_entry_point_leave_the_store_closed(site):
    """The command closes its store (main() freezes the heap on the way out, so no
    garbage collection at exit would close it): SQLite's WAL is checkpointed into
    the database and its side files are gone."""
    url = site.origin.route("/article", html(ARTICLE.html))
    config = site.configure([url])
    for command in (["refresh", "--all"], ["fetch", url]):
        done = run_fetcher(site.directory, "--config", str(config), *command)
        assert done.returncode == 0, done.stderr
        assert sorted(path.name for path in site.snapshots.glob("fetcher.sqlite3*")) == ["fetcher.sqlite3"], command
    assert len(site.json("history", url, "--json")) == 2


@pytest.mark.parametrize("command", ["fetch", "show"])
def test_bad_target_writes_nothing(site, command):
    site.configure()
    result = site.run(command, "foo")
    assert result.exit_code == 2
    assert not site.snapshots.exists()
