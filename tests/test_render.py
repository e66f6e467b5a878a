"""Pages that need a browser: a page whose text is built by its script is rendered
in headless Chromium (the system's, driven by Playwright), bounded and fenced.

Everything is served on loopback and counted on the servers' side. A page that
loops forever, navigates away, asks for a private address or never finishes
loading ends in a named outcome within the page deadline, the run goes on, and
no browser process is left behind. Skipped, as a whole, without /usr/bin/chromium.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from fetcher.core.config import load_config
from fetcher.core.models import Snapshot
from fetcher.extract.document import extract
from fetcher.extract.render_rule import decide
from fetcher.net import browser
from fetcher.net.proctree import browser_pids, driver_pids, kill
from fetcher.run.pipeline import FetchOptions
from fetcher.store.sqlite import Store
from tests.conftest import FIXTURES, FakeSleep, Run, run_fetcher, write_config
from tests.origin import Origin, html, trickle
from tests.test_private_networks import PUBLIC_IP, fake_public  # noqa: F401 - a fixture used below

CHROMIUM = Path("/usr/bin/chromium")
needs_browser = pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium: rendering is not tested")

MENU = '<nav><a href="/">Home menu</a> <a href="/about">About our portal</a> <a href="/contact">Contact desk</a></nav>'
SENTENCES = [
    "The northern basin's water quality improved markedly over the last decade, according to the regional reports.",
    "Nitrate concentrations fell by a third between 2014 and 2024, while phosphate stayed close to its limit.",
    "Further measures will target agricultural run-off in the upper valleys, where most pollution originates.",
]
APP_JS = """
fetch('/api/article.json').then(r => r.json()).then(a => {
  document.getElementById('root').innerHTML =
    '<article><h1>' + a.title + '</h1>' + a.paras.map(p => '<p>' + p + '</p>').join('') + '</article>';
});
"""


def shell(script: str, mount: str = '<div id="root"></div>') -> str:
    """A client-side app's HTML: a menu, an empty mount element, its script."""
    return (f"<!doctype html><html><head><title>Policy portal</title></head><body>{MENU}{mount}"
            f"<noscript>You need to enable JavaScript to run this app.</noscript>{script}</body></html>")


def serve_app(server: Origin) -> str:
    server.route("/app.js", html(APP_JS, Content_Type="text/javascript"))
    article = {"title": "Water quality in the northern basin", "paras": SENTENCES}
    server.route("/api/article.json", html(json.dumps(article), Content_Type="application/json"))
    return server.route("/app", html(shell('<script src="/app.js"></script>')))


def refresh(directory: Path, urls: list[str], render: dict[str, Any] | None = None, **fetch: Any) -> dict[str, Snapshot]:
    """One run over `urls`; the snapshot of each; the browser is gone afterwards."""
    text = "[render]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in (render or {}).items())
    config = load_config(write_config(directory, urls, text=text, **fetch))
    store = Store(config.storage_dir)
    try:
        done = Run(config, store, FakeSleep()).refresh()
    finally:
        store.close()
    assert browser_pids() == [], "a browser process was left behind"
    return done


@needs_browser
def test_an_app_page_is_rendered_and_its_article_stored_not_its_menu(tmp_path):
    with Origin() as server:
        url = serve_app(server)
        write_config(tmp_path, [url])
        fetched = run_fetcher(tmp_path, "fetch", "--json", url)
        assert fetched.returncode == 0, fetched.stderr
        snapshot = json.loads(fetched.stdout)
        assert server.hits("/app") == 1  # the rendered page's document is the static fetch's body
        assert server.hits("/api/article.json") == 1
    assert snapshot["outcome"] == "ok" and snapshot["render"] == "rendered"
    assert "empty mount element (root)" in snapshot["render_reason"]
    for sentence in SENTENCES:
        assert sentence in snapshot["text"]
    assert "About our portal" not in snapshot["text"] and "Contact desk" not in snapshot["text"]
    bodies = tmp_path / "snapshots" / "bodies"
    static = gzip.decompress((bodies / snapshot["static_sha256"][:2] / f"{snapshot['static_sha256']}.gz").read_bytes())
    rendered = gzip.decompress((bodies / snapshot["sha256"][:2] / f"{snapshot['sha256']}.gz").read_bytes())
    assert b'<div id="root"></div>' in static and SENTENCES[0].encode() in rendered
    history = run_fetcher(tmp_path, "history", url)
    assert "rendered" in history.stdout, history.stdout
    shown = json.loads(run_fetcher(tmp_path, "show", "--format", "json", url).stdout)
    assert shown["render"] == "rendered"


@needs_browser
def test_no_render_for_a_one_off_and_off_without_a_browser(tmp_path):
    with Origin() as server:
        url = serve_app(server)
        write_config(tmp_path, [url])
        once = json.loads(run_fetcher(tmp_path, "fetch", "--json", "--no-render", url).stdout)
        # --no-render: the static extraction stands as it is (here the shell's menu), nothing rendered
        assert (once["render"], once["render_reason"]) == ("not-needed", "fetch --no-render")
        assert SENTENCES[0] not in (once["text"] or "")
        (tmp_path / "off").mkdir()  # a store of its own: the one-off above stored the static page
        write_config(tmp_path / "off", [url], text='[render]\nbrowser = "/nonexistent/chromium"\n')
        off = run_fetcher(tmp_path / "off", "fetch", "--json", url)
        audit = run_fetcher(tmp_path / "off", "audit")
        assert server.hits("/app.js") == 0
    snapshot = json.loads(off.stdout)
    # the shell's menu is not taken for the page's text: empty, and said to be for want of a browser
    assert snapshot["outcome"] == "empty" and snapshot["render"] == "off" and not snapshot["text"]
    assert "no browser at /nonexistent/chromium" in snapshot["render_reason"]
    assert off.stderr.count("rendering is off") == 1, off.stderr
    assert "without a browser" in audit.stdout, audit.stdout


@needs_browser
def test_a_page_whose_load_playwright_times_out_first_is_a_render_timeout(tmp_path, monkeypatch):
    """`goto` carries the page's deadline on Playwright's clock as well as ours: on a
    busy CI machine Playwright's came first and its TimeoutError made the endless
    script's page render-failed. Here Playwright's clock is made to end first."""
    real_load = browser.Browser._load

    async def load_on_a_shorter_playwright_clock(self: browser.Browser, tab: Any, page: Any) -> Any:
        real_goto = tab.goto

        async def goto(url: str, **options: Any) -> Any:
            return await real_goto(url, **{**options, "timeout": options["timeout"] / 3})

        tab.goto = goto
        return await real_load(self, tab, page)

    monkeypatch.setattr(browser.Browser, "_load", load_on_a_shorter_playwright_clock)
    with Origin() as server:
        loops = server.route("/loops", html(shell("<script>while (true) {}</script>")))
        done = refresh(tmp_path, [loops], render={"deadline": 3})
    snapshot = done[loops]
    assert (snapshot.outcome.value, snapshot.render and snapshot.render.value) == ("render-timeout", "failed")
    assert "did not finish loading within 3s" in snapshot.detail, snapshot.detail


@needs_browser
def test_pages_that_misbehave_end_in_named_outcomes_within_the_deadline(tmp_path, fake_public):  # noqa: F811
    """Private networks refused (the default), the origin on the one loopback address
    the test policy calls public; the secret on 127.0.0.1 must see no request."""
    with Origin(PUBLIC_IP) as server, Origin("127.0.0.1") as secret:
        secret.route("/secret", html("<p>" + " ".join(SENTENCES) + "</p>"))
        app = serve_app(server)
        loops = server.route("/loops", html(shell("<script>while (true) {}</script>")))
        away = server.route("/away", html(shell("<script>location.href = '/elsewhere';</script>")))
        server.route("/elsewhere", html("<p>elsewhere</p>"))
        steal = (f"<script>fetch('{secret.url('/secret')}').then(r => r.text())"
                 ".then(t => { document.getElementById('root').innerHTML = t; });</script>")
        blocked = server.route("/blocked", html(shell(steal)))
        socket = (f"<script>const ws = new WebSocket('ws://127.0.0.1:{secret.port}/socket');"
                  "ws.onmessage = m => { document.getElementById('root').innerHTML = m.data; };</script>")
        sockets = server.route("/socket-page", html(shell(socket)))
        server.route("/slow.js", trickle(b"//" + b" " * 200, 1, 0.2))
        hangs = server.route("/hangs", html(shell('<script src="/slow.js"></script>')))
        started = time.monotonic()
        done = refresh(tmp_path, [loops, away, blocked, sockets, hangs, app], render={"deadline": 3},
                       allow_private_networks=False)
        took = time.monotonic() - started
        assert secret.hits("/secret") == 0 and secret.requests == [] and server.hits("/elsewhere") == 0
    outcomes = {url: (done[url].outcome.value, done[url].render and done[url].render.value) for url in done}
    assert outcomes == {
        loops: ("render-timeout", "failed"), away: ("render-navigated", "failed"),
        blocked: ("render-blocked", "rendered"), sockets: ("render-blocked", "rendered"), hangs: ("render-timeout", "failed"), app: ("ok", "rendered"),
    }
    assert "within 3s" in done[loops].detail and "/elsewhere" in done[away].detail
    assert "127.0.0.1 is a loopback address" in done[blocked].detail
    assert "WebSockets are not opened" in done[sockets].detail
    assert took < 25, took  # two pages at a time, each within its 3 s deadline (plus start and closing)


@needs_browser
def test_a_browser_over_its_memory_cap_is_killed_and_the_page_failed(tmp_path):
    with Origin() as server:
        url = serve_app(server)
        done = refresh(tmp_path, [url], render={"max_memory": 64 * 1024 * 1024})
    assert done[url].outcome.value == "render-failed" and "max_memory" in done[url].detail


def kill_when(server: Origin, path: str, pids: Any, how: int = signal.SIGKILL) -> tuple[threading.Thread, list[float]]:
    """From another thread: once `path` is requested (the browser is mid-page), signal `pids()`."""
    killed: list[float] = []

    def watch() -> None:
        ends = time.monotonic() + 30
        while server.hits(path) == 0 and time.monotonic() < ends:
            time.sleep(0.02)
        killed.append(time.monotonic())
        for pid in pids():
            os.kill(pid, how)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread, killed


@needs_browser
def test_a_browser_killed_mid_page_fails_that_page_at_once_and_the_next_renders(tmp_path):
    """Its processes SIGKILLed from outside while the page loads a script that
    never ends: the page is render-failed long before its 20 s deadline, the next
    page of the same run gets a new browser, and nothing is left running."""
    with Origin() as server:
        server.route("/never.js", trickle(b"//" + b" " * 200, 1, 1.0))
        hangs = server.route("/hangs", html(shell('<script src="/never.js"></script>')))
        app = serve_app(server)
        thread, killed = kill_when(server, "/never.js", browser_pids)
        started = time.monotonic()
        done = refresh(tmp_path, [hangs, app], render={"deadline": 20, "concurrency": 1})
        took = time.monotonic() - started
        thread.join()
    assert killed and killed[0] - started < took
    assert done[hangs].outcome.value == "render-failed", done[hangs]
    assert "the browser" in done[hangs].detail and ("went away" in done[hangs].detail or "ended" in done[hangs].detail)
    assert done[app].outcome.value == "ok" and SENTENCES[0] in done[app].text
    assert took < 15, took  # far inside the 20 s deadline: the killed page did not wait for it
    assert driver_pids() == []


@needs_browser
def test_a_browser_killed_while_it_opens_a_tab_does_not_hang_the_run(tmp_path, monkeypatch):
    """The hang found in issue 15: SIGKILLed ~0.08 s into `new_page()` (the tab's target
    created, not yet initialised), Playwright's new_page() never returned and the run
    never ended. Now that page is render-failed at once and the other page renders."""
    from playwright.async_api import BrowserContext

    new_page, calls = BrowserContext.new_page, []

    async def killed_meanwhile(context: Any) -> Any:
        opening = asyncio.ensure_future(new_page(context))
        calls.append(1)
        if len(calls) == 1:
            await asyncio.sleep(0.08)
            kill(browser_pids())
        return await opening

    monkeypatch.setattr(BrowserContext, "new_page", killed_meanwhile)
    with Origin() as server:
        app = serve_app(server)
        first_url = server.route("/first", html(shell('<script src="/app.js"></script>')))
        started = time.monotonic()
        done = refresh(tmp_path, [first_url, app], render={"deadline": 20, "concurrency": 1})
        took = time.monotonic() - started
    failed = [snap for snap in done.values() if snap.outcome.value == "render-failed"]
    assert len(failed) == 1 and "the browser" in failed[0].detail, done  # the page whose tab was opening
    assert sorted(snap.outcome.value for snap in done.values()) == ["ok", "render-failed"] and took < 15, took


@needs_browser
def test_a_wedged_driver_is_killed_and_the_next_page_gets_a_new_one(tmp_path, monkeypatch):
    """The Playwright driver stopped (SIGSTOP) mid-page answers nothing ever again:
    the page still ends within its deadline plus the closing margin, the driver and
    the browser are killed, and the next page renders with fresh ones."""
    monkeypatch.setattr(browser, "CLOSE_WITHIN", 1.0)
    with Origin() as server:
        server.route("/never.js", trickle(b"//" + b" " * 200, 1, 1.0))
        hangs = server.route("/hangs", html(shell('<script src="/never.js"></script>')))
        app = serve_app(server)
        thread, _stopped = kill_when(server, "/never.js", driver_pids, signal.SIGSTOP)
        started = time.monotonic()
        done = refresh(tmp_path, [hangs, app], render={"deadline": 2, "concurrency": 1})
        took = time.monotonic() - started
        thread.join()
    assert done[hangs].outcome.value == "render-timeout" and "within 2s" in done[hangs].detail, done[hangs]
    assert done[app].outcome.value == "ok" and SENTENCES[0] in done[app].text
    assert took < 15, took
    assert driver_pids() == []


def test_no_corpus_page_would_be_rendered():
    """The 181 real articles (tests/fixtures/corpus) all have text: the rule says no."""
    urls = json.loads((FIXTURES / "corpus" / "urls.json").read_text(encoding="utf-8"))
    assert len(urls) == 181
    for key, url in urls.items():
        body = gzip.decompress((FIXTURES / "corpus" / f"{key}.html.gz").read_bytes())
        extracted = extract(body, "text/html", url)
        decision = decide(body, len(extracted.text))
        assert not decision.render, (key, decision.reason)


def test_the_rule_sees_an_app_shell_and_obeys_the_configuration():
    app = shell('<script src="/app.js"></script>').encode()
    assert decide(app, 0).render and decide(app, 0).looks_like_app
    assert not decide(app, 0, mode="never").render
    assert not decide(app, 5000).render
    plain = b"<html><body><p>Short note.</p></body></html>"
    assert not decide(plain, 11).render
    assert decide(plain, 11, mode="always").render and decide(plain, 11, always_host=True).render
    assert decide(b'<html><body><app-root></app-root><script src="main.js"></script></body></html>', 0).render
    assert decide(b"<html><body><script>" + b"x" * 5000 + b"</script></body></html>", 0).render


def test_fetch_options_default_to_the_configuration():
    assert FetchOptions().render is None


def test_one_module_imports_playwright():
    root = Path(__file__).resolve().parent.parent / "fetcher"
    importing = sorted(str(path.relative_to(root)) for path in root.rglob("*.py")
                       if "from playwright" in path.read_text() or "import playwright" in path.read_text())
    assert importing == ["net/browser.py"]
