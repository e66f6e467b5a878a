"""Output and store hygiene, as a user sees it: web text is shown as data (never
rich markup, Markdown or HTML), no command ends in a traceback, a closed stdout
ends quietly, reading commands work on a store the user may only read, a killed
run's half-written body files go away, and the bytes decide HTML vs PDF.

Hostile URLs and titles reach a real store through a real refresh of a loopback
origin; the permission tests run the fetcher as `nobody` (tests run as root, and
root ignores file modes), and are skipped where that user cannot run it."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from fetcher.views.audit import Audit, AuditRow
from fetcher.views.audit_formats import to_html
from fetcher.core.sources import resource_id
from fetcher.store.sqlite import Store
from tests.conftest import FIXTURES, fetcher_command, run_fetcher, write_config
from tests.origin import Origin, html, respond

ARTICLE = "<p>" + "The harbour board published its annual report on dredging and tides. " * 12 + "</p>"
# A title from a scraped document: rich markup, a Markdown link, HTML, a backtick, a
# pipe and a terminal escape sequence (TOML's \u001b), all of which must come out as text.
TITLE = "[bold red]Annual[/] | <img src=x onerror=\"document.body.dataset.pwned=1\"> `c` ](javascript:x) \u001b[2J"
PAGE_TITLE = "[blink]Harbour[/] <script>document.body.dataset.pwned=2</script>"
SENTENCE = "Lorem ipsum dolor sit amet, consetetur sadipscing elitr"  # in the fixture PDF


@dataclass(frozen=True)
class Site:
    directory: Path
    typed: str  # ?filter[type]=report: a 200 page with a hostile <title>
    closing: str  # ?q[/x]=1: a 404 whose URL is an unmatched closing tag for rich, with a hostile title
    evil: str  # pipes, backticks, a javascript: link and a script tag in the path: a 404

    def copy(self, to: Path) -> Path:
        shutil.copytree(self.directory, to)
        return to


@pytest.fixture(scope="module")
def origin_server() -> Iterator[Origin]:
    with Origin("127.0.0.1") as server:
        yield server


@pytest.fixture(scope="module")
def site(origin_server: Origin, tmp_path_factory: pytest.TempPathFactory) -> Site:
    page = f"<html><head><title>{PAGE_TITLE}</title></head><body><article>{ARTICLE}</article></body></html>"
    typed = origin_server.route("/r?filter[type]=report", html(page))
    closing = origin_server.url("/q?q[/x]=1")
    evil = origin_server.url("/t|x`y`](javascript:alert(1))<script>alert(1)</script>")
    directory = tmp_path_factory.mktemp("hostile")
    titled = f"\n[[sources]]\nurl = {json.dumps(closing)}\ntitle = {json.dumps(TITLE)}\n"
    write_config(directory, [typed, evil], text=titled)
    done = run_fetcher(directory, "refresh", "--all")
    assert done.returncode == 0, done.stderr
    return Site(directory, typed, closing, evil)


def assert_clean(done: subprocess.CompletedProcess, code: int = 0) -> None:
    assert done.returncode == code, (done.stdout, done.stderr)
    for noise in ("Traceback", "MarkupError", "BrokenPipeError", "Exception ignored"):
        assert noise not in done.stderr, done.stderr


def store_state(directory: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under `directory`: mode, mtime and content hash (to show nothing was written)."""
    state = {}
    for path in sorted(directory.rglob("*")):
        info = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        state[str(path.relative_to(directory))] = (info.st_mode, info.st_mtime_ns, digest)
    return state


# -- web text on the terminal ----------------------------------------------------------


def test_terminal_tables_show_urls_and_titles_as_written(site):
    audit = run_fetcher(site.directory, "audit")
    assert_clean(audit)
    assert "filter[type]=report" in audit.stdout and "q[/x]=1" in audit.stdout
    assert "[bold red]Annual[/] | <img src=x" in audit.stdout  # the configured title, markup and all
    assert "[2J" in audit.stdout  # its escape sequence defused: the ESC byte is gone, the rest shown
    assert "newly broken since the last run:" in audit.stdout and "\x1b" not in audit.stdout

    for url, shown in ((site.typed, "filter[type]=report"), (site.closing, "q[/x]=1"), (site.evil, "<script>")):
        history = run_fetcher(site.directory, "history", resource_id(url))
        assert_clean(history)
        assert f"{resource_id(url)} {url}" in history.stdout and shown in history.stdout

    for command in ("runs", "status"):
        assert_clean(run_fetcher(site.directory, command))


def test_config_paths_with_brackets_are_shown_as_written(site, tmp_path):
    directory = site.copy(tmp_path / "kb[red]x[/]")
    status = run_fetcher(directory, "--config", str(directory / "config.toml"), "status")
    assert_clean(status)
    assert "kb[red]x[/]" in status.stdout


def test_stored_page_title_is_data(site):
    shown = run_fetcher(site.directory, "show", resource_id(site.typed), "--format", "json")
    assert_clean(shown)
    assert json.loads(shown.stdout)["title"] == PAGE_TITLE


# -- the audit's Markdown and HTML -----------------------------------------------------


def test_markdown_audit_renders_web_text_as_text(site):
    done = run_fetcher(site.directory, "audit", "--format", "markdown")
    assert_clean(done)
    rendered = MarkdownIt("commonmark").enable("table").render(done.stdout)
    links = LinkParser.parse(rendered)
    assert "<script" not in rendered and "<img" not in rendered  # no HTML from the web
    assert all(href.startswith(origin_prefix(site)) for href in links.hrefs)  # no javascript: link
    # Each broken source is one table row of five cells: no pipe in a title or URL split a cell.
    assert [len(row) for row in links.rows[1:]] == [5, 5]
    texts = [text for text, _ in links.links]
    assert TITLE.replace("\x1b", " ") in texts  # the title exactly as configured, on one line
    assert site.evil in texts  # an untitled source's link text is its URL exactly as cited
    assert texts.count(TITLE.replace("\x1b", " ")) == 2  # newly broken, and its table row


def test_html_audit_escapes_web_text_and_runs_only_its_own_script(site):
    done = run_fetcher(site.directory, "audit", "--format", "html")
    assert_clean(done)
    page = LinkParser.parse(done.stdout)
    assert len(page.scripts) == 1 and not page.script_srcs
    policy = page.csp
    digest = base64.b64encode(hashlib.sha256(page.scripts[0].encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in policy and "default-src 'none'" in policy
    assert not page.event_attributes  # no onerror=, onclick= ... from the web
    assert all(href.startswith(origin_prefix(site)) for href in page.hrefs)
    assert TITLE in [text for text, _ in page.links]  # shown as written
    assert site.evil in [text for text, _ in page.links]


def test_html_links_only_http_urls():
    row = AuditRow("a" * 16, "https://example.org/x", "t", "redirected", "ok", 200, "", None, None, None, None,
                   "javascript:alert(1)", "data:text/html,<script>alert(2)</script>", None, "IA")
    page = to_html(Audit([row], [], [], []), datetime(2026, 1, 1, tzinfo=timezone.utc))
    assert LinkParser.parse(page).hrefs == ["https://example.org/x"]
    assert "moved to javascript:alert(1)" in page


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_html_audit_in_a_browser_runs_no_injected_code(site, tmp_path):
    """About 2 s: one headless Chromium load of the report, hostile title included."""
    from tests.test_audit import chromium

    report = tmp_path / "report.html"
    assert_clean(run_fetcher(site.directory, "audit", "--format", "html", "-o", str(report)))
    loaded = chromium(tmp_path / "profile", "--dump-dom", report.as_uri())
    assert loaded.returncode == 0 and "<html" in loaded.stdout, loaded.stderr[-2000:]
    assert "data-pwned" not in loaded.stdout  # the title's onerror= did not run
    assert '<span id="shown">3 shown</span>' in loaded.stdout  # the report's own script did


def origin_prefix(site: Site) -> str:
    return site.typed.split("/r?")[0] + "/"


class LinkParser(HTMLParser):
    """The links, scripts, table rows, event attributes and CSP of an HTML page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[str, str]] = []
        self.hrefs: list[str] = []
        self.scripts: list[str] = []
        self.script_srcs: list[str] = []
        self.event_attributes: list[str] = []
        self.rows: list[list[str]] = []
        self.csp = ""
        self._text: list[str] | None = None
        self._script: list[str] | None = None

    @classmethod
    def parse(cls, markup: str) -> LinkParser:
        parser = cls()
        parser.feed(markup)
        parser.close()
        return parser

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.event_attributes += [name for name, _ in attrs if name.startswith("on")]
        if tag == "a":
            self.hrefs.append(values.get("href") or "")
            self._text = []
        elif tag == "script":
            self._script = []
            if "src" in values:
                self.script_srcs.append(values["src"] or "")
        elif tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th") and self.rows:
            self.rows[-1].append(tag)
        elif tag == "meta" and (values.get("http-equiv") or "").lower() == "content-security-policy":
            self.csp = values.get("content") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._text is not None:
            self.links.append(("".join(self._text), self.hrefs[-1]))
            self._text = None
        elif tag == "script" and self._script is not None:
            self.scripts.append("".join(self._script))
            self._script = None

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)
        if self._script is not None:
            self._script.append(data)


# -- no traceback ------------------------------------------------------------------------


def test_unwritable_outputs_are_one_error_line(site, tmp_path):
    for args, words in (
        (("export", "-o", str(tmp_path / "missing" / "out.json")), "cannot write"),
        (("audit", "--format", "json", "-o", str(tmp_path / "missing" / "audit.json")), "cannot write"),
        (("--log-file", str(tmp_path / "missing" / "fetcher.log"), "status"), "cannot open the log file"),
        (("audit", "--from", str(tmp_path)), "is a directory"),
    ):
        done = run_fetcher(site.directory, *args)
        assert_clean(done, 2)
        assert done.stderr.startswith("error: ") and words in done.stderr and done.stderr.count("\n") == 1, args
    assert not (tmp_path / "missing").exists()


def read_pipe_closed(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the fetcher with a stdout whose reader has already gone (like `| head -0`)."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        process = subprocess.run(fetcher_command() + list(args), cwd=cwd, stdout=writer, stderr=subprocess.PIPE,
                                 text=True, timeout=60)
    finally:
        os.close(writer)
    return subprocess.CompletedProcess(process.args, process.returncode, "", process.stderr)


def test_a_closed_stdout_ends_quietly_with_141(site):
    for args in (("history", resource_id(site.closing)), ("history", resource_id(site.typed), "--json"),
                 ("export",), ("audit",), ("audit", "--format", "html"), ("show", resource_id(site.typed)),
                 ("runs",), ("status",), ("--help",), ("--version",)):
        done = read_pipe_closed(site.directory, *args)
        assert_clean(done, 141)
        assert done.stderr == "", (args, done.stderr)


def test_a_refresh_whose_stdout_closed_still_stores_its_work(site, tmp_path):
    directory = site.copy(tmp_path / "site")
    before = json.loads(run_fetcher(directory, "runs", "--json").stdout)
    done = read_pipe_closed(directory, "refresh", "--all")
    assert_clean(done, 141)
    runs = json.loads(run_fetcher(directory, "runs", "--json").stdout)
    assert len(runs) == len(before) + 1 and runs[0]["status"] == "completed" and runs[0]["summary"]["total"] == 3
    assert len(json.loads(run_fetcher(directory, "history", resource_id(site.typed), "--json").stdout)) == 2


# -- as another user: unreadable files, a read-only store ------------------------------


NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


@pytest.fixture(scope="module")
def as_nobody() -> Iterator:
    """run(cwd, *args): the fetcher command as the unprivileged user `nobody`."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("switching to the user nobody needs root and setpriv")
    probe = subprocess.run(NOBODY + [sys.executable, "-c", "import fetcher.cli.main"], cwd="/", capture_output=True,
                           text=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip(f"the user nobody cannot run {sys.executable} with this worktree: {probe.stderr[-300:]}")

    def run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(NOBODY + fetcher_command() + list(args), cwd=cwd, capture_output=True, text=True,
                              timeout=60)

    yield run


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory everyone may enter (pytest's own tmp_path is root's alone)."""
    directory = Path(tempfile.mkdtemp(prefix="fetcher-hygiene-", dir="/tmp"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory)


def owned_by_root_readable_by_all(directory: Path) -> None:
    for path in [directory, *directory.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def test_unreadable_files_are_one_error_line(site, as_nobody, shared_dir):
    directory = site.copy(shared_dir / "site")
    owned_by_root_readable_by_all(directory)
    private = shared_dir / "private"
    private.mkdir(mode=0o700)
    shutil.copy(directory / "config.toml", private / "config.toml")
    notes = directory / "notes.md"
    notes.write_text(f"see <{site.typed}>\n", encoding="utf-8")
    notes.chmod(0o600)
    config = str(directory / "config.toml")
    cases = (
        (("--config", str(private / "config.toml"), "status"), "config.toml: cannot read the config file"),
        (("--config", config, "sources", "import", str(notes)), "notes.md: cannot read the file"),
        (("--config", config, "audit", "--from", str(notes)), "notes.md: cannot read the file"),
        (("--config", config, "--log-file", str(directory / "fetcher.log"), "status"), "cannot open the log file"),
        (("--config", config, "export", "-o", str(directory / "export.json")), "cannot write"),
        (("--config", config, "refresh"), "cannot open the store"),
    )
    for args, words in cases:
        done = as_nobody(shared_dir, *args)
        assert_clean(done, 2)
        assert done.stderr.startswith("error: ") and words in done.stderr, (args, done.stderr)
        assert done.stderr.count("\n") == 1 and ("Permission denied" in done.stderr or "readonly" in done.stderr)

    (directory / "snapshots").chmod(0o700)  # a store directory this user may not enter
    done = as_nobody(shared_dir, "--config", config, "status")
    assert_clean(done, 2)
    assert done.stderr == f"error: {directory / 'snapshots'}: cannot read the store directory: Permission denied\n"


def test_reading_commands_work_on_a_store_the_user_may_only_read(site, as_nobody, shared_dir):
    directory = site.copy(shared_dir / "site")
    Store(directory / "snapshots").close()  # the last writer closes cleanly: SQLite removes -wal and -shm
    owned_by_root_readable_by_all(directory)
    assert sorted(path.name for path in (directory / "snapshots").iterdir()) == [
        "bodies", "fetcher.sqlite3", "refresh.lock"]
    before = store_state(directory)
    config = ("--config", str(directory / "config.toml"))

    show = as_nobody(shared_dir, *config, "show", resource_id(site.typed))
    assert_clean(show)
    assert "HTTP 200" in show.stdout and "The harbour board published its annual report" in show.stdout
    history = as_nobody(shared_dir, *config, "history", resource_id(site.closing))
    assert_clean(history)
    assert "q[/x]=1" in history.stdout and "http-404" in history.stdout
    export = as_nobody(shared_dir, *config, "export")
    assert_clean(export)
    assert {item["url"] for item in json.loads(export.stdout)} == {site.typed, site.closing, site.evil}
    audit = as_nobody(shared_dir, *config, "audit", "--format", "json")
    assert_clean(audit)
    assert json.loads(audit.stdout)["counts"] == {"failing": 2, "ok": 1}
    status = as_nobody(shared_dir, *config, "status")
    assert_clean(status)
    assert "failing 2 · ok 1" in status.stdout
    runs = as_nobody(shared_dir, *config, "runs", "--json")
    assert_clean(runs)
    assert [run["status"] for run in json.loads(runs.stdout)] == ["completed"]

    assert store_state(directory) == before  # nothing created, nothing changed


def test_a_read_only_reader_sees_a_running_writers_latest_commit(site, as_nobody, shared_dir):
    directory = site.copy(shared_dir / "site")
    owned_by_root_readable_by_all(directory)
    writer = Store(directory / "snapshots")  # a run in progress: its commit is still in the -wal file
    try:
        writer.start_run(datetime(2026, 12, 1, 3, 0, tzinfo=timezone.utc), "refresh")
        assert (directory / "snapshots" / "fetcher.sqlite3-wal").stat().st_size > 0
        for path in (directory / "snapshots").glob("fetcher.sqlite3-*"):
            path.chmod(0o644)
        runs = as_nobody(shared_dir, "--config", str(directory / "config.toml"), "runs", "--json")
        assert_clean(runs)
        assert [run["started_at"][:10] for run in json.loads(runs.stdout)][0] == "2026-12-01"
    finally:
        writer.close()


# -- half-written bodies ---------------------------------------------------------------------


def test_a_killed_runs_temporary_bodies_are_removed_at_the_next_refresh(site, tmp_path):
    directory = site.copy(tmp_path / "site")
    bodies = directory / "snapshots" / "bodies"
    folder = next(path for path in bodies.iterdir() if path.is_dir())
    gone = dead_pid()
    leftover = folder / f".{'a' * 64}.gz.{gone}.k3x9q2z1.tmp"  # a killed run's, two minutes old
    writing = folder / f".{'b' * 64}.gz.{os.getpid()}.p0w8e7r6.tmp"  # a live `fetch` writing right now
    writing_long = folder / f".{'c' * 64}.gz.{os.getpid()}.m5n4b3v2.tmp"  # live, and at it for two minutes
    for path in (leftover, writing, writing_long):
        path.write_bytes(b"\x1f\x8b half a body")
    two_minutes_ago = time.time() - 120
    for path in (leftover, writing_long):
        os.utime(path, (two_minutes_ago, two_minutes_ago))

    done = run_fetcher(directory, "refresh", "--all")
    assert_clean(done)
    assert "removed 1 half-written body files left by a killed run" in done.stderr
    assert not leftover.exists() and writing.exists() and writing_long.exists()


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_body_files_are_written_under_a_name_with_the_writers_pid(tmp_path):
    from fetcher.store.files import write_atomically

    seen = []
    write_atomically(tmp_path / "x.gz", lambda out: seen.extend(p.name for p in tmp_path.iterdir()))
    assert len(seen) == 1 and re.fullmatch(rf"\.x\.gz\.{os.getpid()}\.[a-z0-9_]+\.tmp", seen[0])
    assert [p.name for p in tmp_path.iterdir()] == ["x.gz"]


# -- the bytes decide HTML vs PDF --------------------------------------------------------------


def test_html_served_as_pdf_is_read_as_html_and_a_pdf_served_as_html_as_pdf(origin, tmp_path):
    pdf = (FIXTURES / "pdf" / "002-trivial-libre-office-writer.pdf").read_bytes()
    page = f"<!DOCTYPE html><html><head><title>Tide tables</title></head><body><article>{ARTICLE}</article></body></html>"
    as_pdf = origin.route("/tides.pdf", respond(200, page.encode(), {"Content-Type": "application/pdf"}))
    as_html = origin.route("/paper", respond(200, pdf, {"Content-Type": "text/html; charset=utf-8"}))
    write_config(tmp_path, [as_pdf, as_html])

    html_one = run_fetcher(tmp_path, "fetch", as_pdf, "--json")
    assert_clean(html_one)
    snapshot = json.loads(html_one.stdout)
    assert (snapshot["outcome"], snapshot["title"]) == ("ok", "Tide tables")
    assert snapshot["text"].startswith("The harbour board published its annual report")

    pdf_one = run_fetcher(tmp_path, "fetch", as_html, "--json")
    assert_clean(pdf_one)
    snapshot = json.loads(pdf_one.stdout)
    assert snapshot["outcome"] == "ok" and SENTENCE in " ".join(snapshot["text"].split())
