"""Rendering a page in headless Chromium: the one module that imports Playwright.

One browser process per run, started when the first page needs it (Playwright
driving the system's Chromium: no browser download), `concurrency` pages at a
time, each in a fresh context: no downloads, no permission prompts, service
workers blocked, WebSockets closed. The browser itself reaches nothing: every
request a page makes is intercepted and served by `Fetch` — the run's own guarded
downloader (fetcher/net/connect.py checks every address it connects to, redirects
included), so the private-network and scheme rules of static fetches hold inside
the browser. The page's own document is served from the static fetch's body (it
is not requested twice); a later navigation of the page (a script setting
`location`) is refused and the page is `render-navigated`. A page has
`deadline` seconds to load and settle; a rendered DOM over `max_dom_bytes` is
`too-large`. A browser whose processes hold more than `max_memory` bytes, or
that does not close a page, is killed and started again for the next page; no
await on Playwright is unbounded (see Browser).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from fetcher.core.config import RenderSettings
from fetcher.core.models import Download
from fetcher.core.outcomes import Outcome
from fetcher.net.proctree import browser_pids, driver_pids, kill, resident_bytes

log = logging.getLogger("fetcher")
Fetch = Callable[[str, dict[str, str]], Awaitable[Download]]  # a subresource, fetched as static fetches are
NOWHERE_PORT = 9  # discard: nothing listens there on a normal machine
LAUNCH_ARGS = (
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-default-apps", "--disable-extensions",
    "--disable-domain-reliability", "--no-pings", "--metrics-recording-only", "--mute-audio",
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp", "--disable-features=DnsOverHttps,Translate",
    "--dns-prefetch-disable",
    # Defence in depth: anything Chromium would send itself rather than through the
    # interception (a preconnect, a prefetch) goes to a proxy on a port where nothing
    # listens, loopback included (`<-loopback>`), and names are not resolved by Chromium.
    f"--proxy-server=http://127.0.0.1:{NOWHERE_PORT}", "--proxy-bypass-list=<-loopback>",
)
SETTLE = 2.0  # seconds at most, after the load event, to wait for the page's requests to go quiet
QUIET = 0.25  # seconds with no request of the page in flight: it has settled
CLOSE_WITHIN = 5.0  # seconds a page's context (or the browser) gets to close before it is killed
LAUNCH_WITHIN = 30.0  # seconds for the driver to start and the browser to launch
SETUP_WITHIN = 5.0  # seconds, beyond the page's deadline, for the browser to open its context and tab
WATCH_EVERY = 0.25  # seconds between checks of the browser's memory


@dataclass(frozen=True)
class Rendered:
    outcome: Outcome  # ok, render-timeout, render-failed, render-blocked, render-navigated, too-large
    final_url: str
    html: str = ""
    detail: str = ""
    blocked: tuple[str, ...] = ()  # requests refused by the private-network rules: "url: why"


@dataclass
class _Page:
    """What happened on one page while it loaded."""

    url: str
    served_document: bool = False
    blocked: list[str] = field(default_factory=list)
    navigated_to: str | None = None
    serving: set[asyncio.Task[Any]] = field(default_factory=set)  # requests being fetched for the page
    last_request: float = 0.0  # loop time a request of the page last started or finished

    async def settled(self, ends: float) -> None:
        """Wait until no request of the page has been in flight for QUIET seconds, or `ends`."""
        loop = asyncio.get_running_loop()
        while loop.time() < ends and (self.serving or loop.time() - self.last_request < QUIET):
            await asyncio.sleep(0.05)


def browser_available(settings: RenderSettings) -> str | None:
    """Why rendering cannot run here (no browser, no Playwright), or None when it can."""
    if not (os.path.isfile(settings.browser) and os.access(settings.browser, os.X_OK)):
        return f"no browser at {settings.browser} (apt-get install chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed"
    return None


@dataclass
class _Launch:
    """One browser, from its launch to its end. `dead` is set the moment it is
    known gone (killed by us, crashed, or killed by someone else): the pages in
    flight on it end then, whatever Playwright's own calls are still waiting for."""

    browser: Any
    pids: list[int]
    dead: asyncio.Event = field(default_factory=asyncio.Event)
    why: str = ""

    def end(self, why: str) -> None:
        if not self.dead.is_set():
            self.why = why
            self.dead.set()

    def kill(self, why: str) -> None:
        self.end(why)
        kill(self.pids + browser_pids())


def render_bound(settings: RenderSettings) -> float:
    """The longest one render() can take: launch, the page, closing it (the outer fence's limit)."""
    return LAUNCH_WITHIN + settings.deadline + SETUP_WITHIN + 2 * CLOSE_WITHIN + 1.0


class Browser:
    """Use as `async with Browser(settings) as browser:`; nothing starts before the first render().

    Every await on Playwright is bounded. Why: a browser killed (by the memory
    watchdog, or from outside) while `context.new_page()` was in flight left that
    call waiting forever — the driver never answers it once the browser's pipe is
    gone, and Playwright gives new_page (like evaluate, content, route) no timeout
    of its own — so the run hung (issue 15's fix, h15fix). Now each page's work
    races the browser's death (`_Launch.dead`) and a deadline of its own, and a
    driver that does not answer is killed and started afresh."""

    def __init__(self, settings: RenderSettings, user_agent: str):
        self._settings = settings
        self._user_agent = user_agent
        self.turn = asyncio.Semaphore(settings.concurrency)  # held by render(); `concurrency` pages at a time
        self._starting = asyncio.Lock()
        self._playwright: Any = None
        self._driver: list[int] = []  # the Playwright driver's node process, our child
        self._abandoned: list[Any] = []  # drivers killed as wedged
        self._launch: _Launch | None = None
        self._open = 0
        self._watch: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Browser:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def render(self, document: Download, fetch: Fetch) -> Rendered:
        """Render `document` (a static fetch's HTML) at its final URL, its
        subresources fetched by `fetch`. Always returns a classified Rendered."""
        async with self.turn:
            return await self.render_in_turn(document, fetch)

    async def render_in_turn(self, document: Download, fetch: Fetch) -> Rendered:
        """render(), for a caller already holding `turn` (whose own time limit should not count the wait)."""
        try:
            launch = await self._started()
        except Exception as error:  # noqa: BLE001 - a browser that will not start fails this page only
            return Rendered(Outcome.RENDER_FAILED, document.final_url,
                            detail=f"the browser did not start: {_why(error)}")
        self._open += 1
        try:
            return await self._fenced(launch, document, fetch)
        finally:
            self._open -= 1

    async def _fenced(self, launch: _Launch, document: Download, fetch: Fetch) -> Rendered:
        """The page's work, ended as soon as its browser dies, and never longer than
        its deadline plus the setting up and closing margins (then the browser is killed)."""
        work = asyncio.create_task(self._render(launch, document, fetch))
        dead = asyncio.create_task(launch.dead.wait())
        bound = self._settings.deadline + SETUP_WITHIN + CLOSE_WITHIN + 1.0
        try:
            await asyncio.wait({work, dead}, timeout=bound, return_when=asyncio.FIRST_COMPLETED)
        finally:
            dead.cancel()
            if not work.done():
                work.cancel()
        if work.done() and not work.cancelled():
            return work.result()
        if not launch.dead.is_set():
            launch.kill(f"the browser did not end a page within {bound:g}s; killed and restarted")
        await asyncio.wait({work}, timeout=CLOSE_WITHIN)  # its own closing is skipped: the browser is dead
        return Rendered(Outcome.RENDER_FAILED, document.final_url, detail=f"rendering failed: {launch.why}")

    async def _render(self, launch: _Launch, document: Download, fetch: Fetch) -> Rendered:
        page = _Page(document.final_url)
        opened: list[Any] = []  # the page's context, once it exists
        try:
            async with asyncio.timeout(self._settings.deadline + SETUP_WITHIN):
                return await self._open_and_load(launch.browser, page, document, fetch, opened)
        except TimeoutError:
            launch.kill(f"the browser did not answer within {self._settings.deadline + SETUP_WITHIN:g}s; "
                        "killed and restarted")
            return Rendered(Outcome.RENDER_TIMEOUT, page.url, detail=f"rendering failed: {launch.why}")
        except Exception as error:  # noqa: BLE001 - Playwright's errors: the page failed, the run goes on
            why = launch.why if launch.dead.is_set() else _why(error)
            return Rendered(Outcome.RENDER_FAILED, page.url, detail=f"rendering failed: {why}")
        finally:
            for task in page.serving:  # a subresource still downloading is not wanted any more
                task.cancel()
            if opened and not launch.dead.is_set():
                await self._close(launch, opened[0])

    async def _open_and_load(self, browser: Any, page: _Page, document: Download, fetch: Fetch,
                             opened: list[Any]) -> Rendered:
        context = await browser.new_context(
            accept_downloads=False, service_workers="block", user_agent=self._user_agent,
            java_script_enabled=True, permissions=[],
        )
        opened.append(context)
        await context.route("**/*", lambda route: self._serve(route, page, document, fetch))
        with contextlib.suppress(AttributeError):  # Playwright >= 1.48
            await context.route_web_socket("**/*", lambda ws: _refuse_socket(ws, page))
        return await self._load(await context.new_page(), page)
    async def _load(self, tab: Any, page: _Page) -> Rendered:
        """Load, settle, and read the DOM, within the page's deadline. `goto` has the
        same deadline on Playwright's clock: whichever clock ends it first, a page
        that did not load in time is a render-timeout. (On a busy machine Playwright's
        TimeoutError, not the builtin one, came first at times: render-failed.)"""
        from playwright.async_api import TimeoutError as BrowserTimeout  # imported with the browser already

        deadline = self._settings.deadline
        loop = asyncio.get_running_loop()
        ends = loop.time() + deadline
        stage = "did not finish loading"
        try:
            async with asyncio.timeout(deadline):
                await tab.goto(page.url, wait_until="load", timeout=deadline * 1000)
                stage = "did not settle"
                await page.settled(min(ends, loop.time() + SETTLE))
                stage = "did not answer (its script does not yield)"
                size = await tab.evaluate("document.documentElement ? document.documentElement.outerHTML.length : 0")
                if size > self._settings.max_dom_bytes:
                    return _judged(page, Rendered(Outcome.TOO_LARGE, tab.url,
                                                  detail=f"rendered DOM over {self._settings.max_dom_bytes} bytes"))
                html = await tab.content()
        except (TimeoutError, BrowserTimeout):
            return _judged(page, Rendered(Outcome.RENDER_TIMEOUT, page.url,
                                          detail=f"the page {stage} within {deadline:g}s"))
        return _judged(page, Rendered(Outcome.OK, page.url, html))

    async def _serve(self, route: Any, page: _Page, document: Download, fetch: Fetch) -> None:
        """Every request the page makes: its document from the static body, the
        rest fetched through the run's guarded downloader, or refused."""
        request = route.request
        task = asyncio.current_task()
        page.last_request = asyncio.get_running_loop().time()
        if task is not None:
            page.serving.add(task)
        try:
            if request.is_navigation_request() and request.frame.parent_frame is None:
                if page.served_document:  # a script (or meta refresh) leaving the page
                    page.navigated_to = page.navigated_to or request.url
                    await route.abort("blockedbyclient")
                    return
                page.served_document = True
                await route.fulfill(status=200, body=document.body,
                                    headers={"content-type": document.content_type or "text/html"})
                return
            if urlsplit(request.url).scheme not in ("http", "https") or request.method not in ("GET", "HEAD"):
                await route.abort("blockedbyclient")
                return
            answer = await fetch(request.url, {"Accept": request.headers.get("accept", "*/*")})
            if answer.outcome is Outcome.PRIVATE_ADDRESS:
                page.blocked.append(f"{request.url}: {answer.detail}")
                await route.abort("blockedbyclient")
            elif answer.http_status is None:
                await route.abort("failed")
            else:
                await route.fulfill(status=answer.http_status, body=answer.body,
                                    headers={"content-type": answer.content_type or "application/octet-stream"})
        except Exception as error:  # noqa: BLE001 - the page closed meanwhile, or the browser went away
            log.debug("render: request %s not served: %s", request.url, error)
        finally:
            page.serving.discard(task)
            page.last_request = asyncio.get_running_loop().time()

    async def _started(self) -> _Launch:
        """The running browser, or a new one (and a new driver when the old one is gone or wedged)."""
        async with self._starting:
            launch = self._launch
            if launch is not None and not launch.dead.is_set() and launch.browser.is_connected():
                return launch
            await self._stop_browser()
            try:
                async with asyncio.timeout(LAUNCH_WITHIN):
                    self._launch = await self._launched()
            except BaseException:
                self._stop_driver()  # it did not start a browser in time: it starts afresh for the next page
                raise
            if self._watch is None or self._watch.done():
                self._watch = asyncio.create_task(self._watch_browser())
            return self._launch

    async def _launched(self) -> _Launch:
        if self._playwright is None:
            from playwright.async_api import async_playwright

            drivers = set(driver_pids())
            self._playwright = await async_playwright().start()
            self._driver = [pid for pid in driver_pids() if pid not in drivers]
        before = set(browser_pids())
        browser = await self._playwright.chromium.launch(
            executable_path=self._settings.browser, headless=True, args=list(LAUNCH_ARGS),
            handle_sigint=False, handle_sigterm=False, handle_sighup=False, timeout=LAUNCH_WITHIN * 1000,
        )
        launch = _Launch(browser, [pid for pid in browser_pids() if pid not in before])
        browser.on("disconnected", lambda _browser: launch.end("the browser went away (it crashed or was killed)"))
        return launch

    async def _watch_browser(self) -> None:
        """Kill the browser when its processes hold more than `max_memory` bytes;
        notice at once when its processes are gone, whatever the driver says."""
        while self._launch is not None:
            await asyncio.sleep(WATCH_EVERY)
            launch = self._launch
            if launch is None or launch.dead.is_set():
                continue
            pids = browser_pids()
            if launch.pids and not set(launch.pids) & set(pids):
                launch.end("the browser's processes ended (it crashed or was killed)")
                continue
            if not self._open:
                continue
            used = resident_bytes(pids)
            if used > self._settings.max_memory:
                why = f"the browser held {used >> 20} MB, over [render] max_memory; killed and restarted"
                log.warning("render: %s", why)
                launch.kill(why)

    async def _close(self, launch: _Launch, context: Any) -> None:
        try:
            await asyncio.wait_for(context.close(), CLOSE_WITHIN)
        except Exception as error:  # noqa: BLE001 - a hung browser is killed; the next page starts another
            log.warning("render: a page did not close (%s); the browser is killed", type(error).__name__)
            launch.kill("the browser did not close a page; killed and restarted")

    async def _stop_browser(self) -> None:
        """Close the browser (a dead one is only asked once, briefly); a driver that
        does not answer even that is wedged and stopped too."""
        launch, self._launch = self._launch, None
        if launch is not None:
            try:
                await asyncio.wait_for(launch.browser.close(), CLOSE_WITHIN)
            except Exception:  # noqa: BLE001 - the driver did not answer: killed, started afresh
                self._stop_driver()
            launch.kill("the browser was closed")
        kill(browser_pids())

    def _stop_driver(self) -> None:
        """Kill the Playwright driver (our child, node): nothing of it is awaited here."""
        if self._playwright is not None:
            self._abandoned.append(self._playwright)  # its pipes are closed by close(), once it is dead
            with contextlib.suppress(Exception):  # Playwright's own "connection closed" note, read so that
                failed = self._playwright.stop.__self__._client._transport.on_error_future  # asyncio does not
                failed.add_done_callback(lambda future: future.cancelled() or future.exception())  # print it
        self._playwright = None
        kill(self._driver + browser_pids())
        self._driver = []

    def reset(self, why: str) -> None:
        """The outer fence: kill the browser and its driver, awaiting nothing; the next page starts afresh."""
        if self._launch is not None:
            self._launch.kill(why)
        self._launch = None
        self._stop_driver()

    async def close(self) -> None:
        """Close the browser and the driver; any browser or driver process left is killed."""
        await self._stop_browser()
        if self._watch is not None:
            self._watch.cancel()
        playwright, self._playwright = self._playwright, None
        if playwright is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(playwright.stop(), CLOSE_WITHIN)
        kill(self._driver + browser_pids())
        self._driver = []
        for dead in self._abandoned:  # killed already: this only closes our ends of its pipes
            with contextlib.suppress(Exception):
                await asyncio.wait_for(dead.stop(), 1.0)
        self._abandoned = []


def _judged(page: _Page, rendered: Rendered) -> Rendered:
    """A navigation away says more than what the DOM shows; refused requests go with the result."""
    if page.navigated_to is not None:
        rendered = Rendered(Outcome.RENDER_NAVIGATED, page.url,
                            detail=f"the page's script navigated away, to {page.navigated_to} (refused)")
    return replace(rendered, blocked=tuple(page.blocked))


async def _refuse_socket(ws: Any, page: _Page) -> None:
    page.blocked.append(f"{ws.url}: WebSockets are not opened by the renderer")
    with contextlib.suppress(Exception):
        await ws.close()


def _why(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}"
