"""The pipeline's render step: after a live HTML page is extracted, decide
(fetcher.extract.render_rule) whether it needs a browser; if so, render it
(fetcher.net.browser) holding the host's politeness slot, and extract the
rendered DOM through the same extractor. The result says what was decided and
why (RenderNote), and carries the static body so that both are kept.

Subresources of a rendered page are fetched by a downloader of their own on the
run's shared client — the same guarded connections, so the same private-network
rules — with no per-host slots of their own (the page's slot is held meanwhile).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from fetcher.core.config import Config
from fetcher.core.models import Download, Extracted, RenderNote, Source
from fetcher.core.outcomes import NO_BROWSER, Outcome, Rendering
from fetcher.core.sources import host_of
from fetcher.extract.extractor import Extractor
from fetcher.extract.render_rule import decide
from fetcher.net.browser import Browser, Rendered, browser_available, render_bound
from fetcher.net.client import FetchClient
from fetcher.net.download import Downloader
from fetcher.net.hosts import HostSlots, Slots

log = logging.getLogger("fetcher")
RENDERED_TYPE = "text/html; charset=utf-8"
Step = tuple[Download, Extracted, RenderNote | None]


class RenderStep:
    def __init__(self, config: Config, client: FetchClient, slots: Slots, extractor: Extractor):
        settings = config.render
        self._settings = settings
        self._slots = slots
        self._extractor = extractor
        self._off = "[render] enabled = false" if settings.enabled is False else browser_available(settings)
        self._noticed = False
        self._browser = Browser(settings, config.fetch.user_agent)
        self._subresources = Downloader(client, config.fetch, HostSlots(1 << 16, 0.0))

    async def close(self) -> None:
        await self._browser.close()

    async def apply(self, source: Source, download: Download, extracted: Extracted, mode: str | None) -> Step:
        """The page as the run keeps it: static, or rendered when the rule says so."""
        if extracted.kind != "html" or extracted.outcome not in (Outcome.OK, Outcome.EMPTY):
            return download, extracted, None
        always_host = host_of(download.final_url) in self._settings.hosts or host_of(source.url) in self._settings.hosts
        text = extracted.text if extracted.outcome is Outcome.OK else ""
        decision = decide(download.body, len(text), mode or source.render, always_host, self._settings.min_text_chars)
        if mode is not None:  # a one-off's flag, not the configuration
            decision = replace(decision, reason="fetch --render" if mode == "always" else "fetch --no-render")
        if not decision.render:
            return download, extracted, RenderNote(Rendering.NOT_NEEDED, decision.reason)
        if self._off is not None:
            self._notice(source)
            note = RenderNote(Rendering.OFF, f"{decision.reason}; rendering is off: {self._off}")
            if decision.looks_like_app:  # its little static text is the shell's (a menu, a noscript notice),
                # not the page's: empty, which the audit tells apart from a page that is empty
                extracted = replace(extracted, outcome=Outcome.EMPTY, text="",
                                    detail=f"{NO_BROWSER}: the page looks like a client-side app, rendering is"
                                           f" off ({self._off})")
            return download, extracted, note
        async with self._slots.slot(host_of(download.final_url)):
            rendered = await self._fenced(download)
        if rendered.outcome is not Outcome.OK:
            if extracted.outcome is Outcome.OK and not decision.looks_like_app:  # configured; the static text stands
                reason = f"{decision.reason}; rendering failed ({rendered.outcome}: {rendered.detail}), static text kept"
                return download, extracted, RenderNote(Rendering.FAILED, reason, static=download)
            failed = Extracted(rendered.outcome, "html", detail=rendered.detail)
            return download, failed, RenderNote(Rendering.FAILED, decision.reason, static=download)
        return await self._extracted(download, rendered, decision.reason)

    async def _fenced(self, download: Download) -> Rendered:
        """The outer fence: whatever happens inside the browser module, one page's
        render ends within render_bound(); past it, the browser and its driver are
        killed (the next page starts afresh) and the page is `render-timeout`."""
        async with self._browser.turn:  # waiting for a turn is not rendering: the fence starts after it
            work = asyncio.create_task(self._browser.render_in_turn(download, self._fetch))
            bound = render_bound(self._settings)
            try:
                done, _ = await asyncio.wait({work}, timeout=bound)
            finally:
                if not work.done():
                    work.cancel()
            if done:
                return work.result()
            why = f"the page's rendering did not end within {bound:g}s; the browser and its driver were killed"
            log.warning("render: %s: %s", download.final_url, why)
            self._browser.reset(why)
            await asyncio.wait({work}, timeout=1.0)  # it unwinds now that the driver is gone; not waited for longer
        return Rendered(Outcome.RENDER_TIMEOUT, download.final_url, detail=why)

    async def _extracted(self, static: Download, rendered: Rendered, reason: str) -> Step:
        dom = rendered.html.encode("utf-8")
        page = replace(static, body=dom, content_type=RENDERED_TYPE, gzipped=None)
        extracted = await self._extractor.extract(dom, RENDERED_TYPE, static.final_url)
        if rendered.blocked:
            refused = f"refused {len(rendered.blocked)} request(s) of the page: {rendered.blocked[0]}"
            # text as short as the shell's means what was refused was the page's content
            enough = extracted.outcome is Outcome.OK and len(extracted.text) >= self._settings.min_text_chars
            outcome = Outcome.OK if enough else Outcome.RENDER_BLOCKED
            extracted = replace(extracted, outcome=outcome, detail="; ".join(filter(None, (extracted.detail, refused))))
        return page, extracted, RenderNote(Rendering.RENDERED, reason, static=static)

    async def _fetch(self, url: str, headers: dict[str, str]) -> Download:
        return await self._subresources.get(url, headers)

    def _notice(self, source: Source) -> None:
        if not self._noticed:
            self._noticed = True
            log.warning("%s looks like a client-side app, but rendering is off: %s", source.url, self._off)
