"""The soft-404 probe: once per origin per run, lazily, what the host answers
for a path that cannot exist (compared with each page by extract/soft404.py).
Shared by every source of the origin through one asyncio task. In an engine
kept for longer (`fetcher worker`), a host's answer is used for 24 hours at most
(sites change their error pages too), and a probe that got no answer at all for
10 minutes."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from fetcher.net.download import Downloader, Gate
from fetcher.net.places import in_flight
from fetcher.core.errors import Stopped
from fetcher.core.expiring import ANSWER_KEEP, UNREACHABLE_KEEP, Expiring
from fetcher.extract.extractor import Extractor
from fetcher.core.models import Download, Extracted
from fetcher.core.outcomes import Outcome
from fetcher.extract.soft404 import Seen, is_home, looks_like_probe, origin_of

log = logging.getLogger("fetcher")


@dataclass(frozen=True)
class Probe:
    """What a host answered for a made-up path: `page` is set only for a 200 with readable text."""

    url: str
    status: int | None
    outcome: Outcome
    page: Seen | None = None


class HostProbes:
    """One probe per origin for the run, asked for lazily: `soft_404_reason` sends
    GET {scheme}://{host}/{32 random hex digits} through the shared downloader (so
    host slots and delays apply) the first time a page of that origin needs checking;
    concurrent sources of the origin await the same task."""

    def __init__(
        self,
        downloader: Downloader,
        extractor: Extractor,
        token: Callable[[], str] = lambda: secrets.token_hex(16),
        gate: Gate | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        """`gate`: robots.txt's verdict on a URL; a probe robots.txt disallows is not sent (no evidence)."""
        self._downloader = downloader
        self._extractor = extractor
        self._token = token
        self._gate = gate
        self._probes: Expiring[str, asyncio.Task[Probe]] = Expiring(clock)

    async def soft_404_reason(self, url: str, download: Download, extracted: Extracted) -> str | None:
        """'soft 404: …' if this HTML page reads like its host's answer for a made-up
        path, else None. A home page asked for, or the page unknown paths redirect to
        asked for directly, is never one."""
        if extracted.kind != "html" or is_home(url):
            return None
        probe = await self.probe(origin_of(download.final_url))
        if probe.page is None or (download.final_url == probe.page.final_url and not download.redirects):
            return None
        score = looks_like_probe(Seen(url, download.final_url, extracted.title, extracted.text), probe.page)
        if score is None:
            return None
        return (
            f"soft 404: reads like what the host answers for a path that cannot exist "
            f"({probe.url} answered {probe.status}; text {score:.0%} alike, same title)"
        )

    async def probe(self, origin: str) -> Probe:
        """The origin's probe, asked for once per run (and again once too old:
        ANSWER_KEEP, UNREACHABLE_KEEP); cancelling one waiter leaves it running for the others."""
        task = self._probes.get(origin)
        if task is None:
            task = asyncio.ensure_future(self._ask(f"{origin}/{self._token()}"))
            self._probes.put(origin, task, ANSWER_KEEP)
            task.add_done_callback(partial(self._asked, origin))
        return await asyncio.shield(task)

    def _asked(self, origin: str, task: asyncio.Task[Probe]) -> None:
        """A probe that got no answer (or was cancelled) is not kept for a day."""
        if self._probes.get(origin) is not task:
            return
        if task.cancelled():
            self._probes.put(origin, task, 0)
        elif task.result().status is None:
            self._probes.put(origin, task, UNREACHABLE_KEEP)

    async def _ask(self, url: str) -> Probe:
        """The probe; one that fails in any way is no evidence (and fails no source)."""
        try:
            return await self._answer(url)
        except Stopped:  # the run is stopping: no evidence, and nothing worth a warning
            return Probe(url, None, Outcome.INTERNAL_ERROR)
        except Exception as error:  # noqa: BLE001 - shared by every source of the host
            log.warning("soft-404 probe %s failed: %r", url, error)
            return Probe(url, None, Outcome.INTERNAL_ERROR)

    async def _answer(self, url: str) -> Probe:
        refused = await self._gate(url) if self._gate is not None else None
        if refused is not None:
            return Probe(url, None, refused.outcome)
        async with in_flight():  # asked once the asking source's download was over
            download = await self._downloader.get(url, gate=self._gate)
        if download.outcome is not Outcome.OK:
            return Probe(url, download.http_status, download.outcome)
        extracted = await self._extractor.extract(download.body, download.content_type, download.final_url)
        if extracted.outcome is not Outcome.OK:
            return Probe(url, download.http_status, extracted.outcome)
        page = Seen(url, download.final_url, extracted.title, extracted.text)
        return Probe(url, download.http_status, Outcome.OK, page)
