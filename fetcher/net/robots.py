"""robots.txt (RFC 9309): may we request this URL?

One robots.txt per origin (scheme, host, port) is fetched at most once a run
(and, in an engine kept for longer, as `fetcher worker` keeps one, used for 24
hours at most: RFC 9309 2.4; one that could not be had is asked for again after
10 minutes), through the shared Downloader (so host slots, deadline, retries and byte
classification apply), cut at its first 500 KiB as Google does, and parsed by
protego. Concurrent sources of one origin wait for the same fetch. What the
answer means:

- 2xx: the rules of the group matching our product token (else `*`) apply;
  a `Crawl-delay` there raises the host's spacing (capped by `max_crawl_delay`)
  for as long as the answer is used; the next answer's (or none) replaces it.
- 4xx (401, 403 and 404 included) or a redirect chain that goes nowhere: no
  rules, everything is allowed (RFC 9309 2.3.1.3).
- 5xx or 429: "unreachable", everything is disallowed (RFC 9309 2.3.1.4).
- No HTTP answer at all (dns-error, connect-refused, timeout, tls-error,
  private-address, a broken connection): the page is not requested either, and
  its result is that same failure, so a dead host still counts as dead.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from protego import Protego

from fetcher.core.config import FetchSettings
from fetcher.core.expiring import ANSWER_KEEP, UNREACHABLE_KEEP, Expiring
from fetcher.net.download import Downloader
from fetcher.net.hosts import Clock, Slots, Sleep
from fetcher.core.models import Download
from fetcher.core.outcomes import Outcome
from fetcher.net.retrying import fetch_with_retries

log = logging.getLogger("fetcher")

ROBOTS_MAX_BYTES = 500 * 1024  # RFC 9309 2.5: at least 500 KiB must be parsed; the rest is ignored
OriginKey = tuple[str, str, int]
_DEFAULT_PORTS = {"http": 80, "https": 443}
_TOKEN = re.compile(r"[A-Za-z_-]+")  # RFC 9309 2.2.1: the product token's characters
# A redirect chain that led nowhere (a loop, a non-http target): robots.txt is unavailable.
_DEAD_END = frozenset({Outcome.REDIRECT_LOOP, Outcome.BAD_CONTENT})


def product_token(user_agent: str) -> str:
    """The product token robots.txt groups are matched against: the User-Agent's
    first word, e.g. "fetcher/0.1 (…)" -> "fetcher"."""
    found = _TOKEN.match(user_agent.strip())
    return found.group(0).lower() if found else user_agent.strip().lower()


def origin_of(url: str) -> OriginKey:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme, 0)


def robots_url(url: str) -> str:
    """The robots.txt governing `url`: same scheme, host and port; no user info."""
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.rpartition('@')[2]}/robots.txt"


@dataclass(frozen=True)
class RobotsRules:
    """What one origin's robots.txt said. `verdict` is "rules" (a parsed file),
    "allow-all", "disallow-all" or "no-answer" (the failure is in `failure`)."""

    url: str
    verdict: str
    reason: str
    parser: Protego | None = None
    failure: Download | None = None
    attempts: int = 1  # requests it took to learn this (retries included)

    @property
    def keep_for(self) -> float:
        """Seconds these rules may be used: a day for what the host said, 10
        minutes for its being unreachable (disallow-all, no answer)."""
        return ANSWER_KEEP if self.verdict in ("rules", "allow-all") else UNREACHABLE_KEEP

    def crawl_delay(self, token: str) -> float | None:
        return self.parser.crawl_delay(token) if self.parser is not None else None

    def refusal(self, url: str, token: str) -> Download | None:
        """None if `url` may be requested; else the result that stands for the page."""
        if self.failure is not None:
            if self.failure.outcome is Outcome.PRIVATE_ADDRESS:  # the page's own host: the same refusal
                return Download(url, Outcome.PRIVATE_ADDRESS, url, detail=self.failure.detail)
            detail = f"{self.reason}; the page was not requested"
            return Download(url, self.failure.outcome, url, detail=detail)
        if self.verdict == "disallow-all":
            return Download(url, Outcome.ROBOTS_BLOCKED, url, detail=f"{self.reason}: treated as disallow all")
        if self.parser is not None and not self.parser.can_fetch(url, token):
            return Download(url, Outcome.ROBOTS_BLOCKED, url, detail=f"robots.txt disallows {_path(url)} for {token}")
        return None


def rules_from(url: str, download: Download, attempts: int = 1) -> RobotsRules:
    """Classify the answer to a robots.txt request (RFC 9309 2.3.1)."""
    status = download.http_status
    if download.outcome.got_no_answer or (status is None and download.outcome not in _DEAD_END):
        reason = f"robots.txt {url}: {download.outcome.value} {download.detail}".strip()
        return RobotsRules(url, "no-answer", reason, failure=download, attempts=attempts)
    if download.outcome is Outcome.OK:
        parser = Protego.parse(download.body.decode("utf-8-sig", errors="replace"))
        return RobotsRules(url, "rules", f"robots.txt {url}: {status}", parser=parser)
    if status is not None and (status >= 500 or status == 429):
        return RobotsRules(url, "disallow-all", f"robots.txt {url} answered {status}")
    what = f"answered {status}" if status is not None else download.outcome.value
    return RobotsRules(url, "allow-all", f"robots.txt {url} {what}")


@dataclass
class _Lock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # sources holding it or waiting for it


class RobotsGate:
    """The robots.txt cache and check of one engine (a run's, or a worker's for as
    long as it serves). `refusal(url)` is None when the URL may be requested; else
    the Download that stands for the page (robots-blocked, or the failure that
    kept robots.txt from answering)."""

    def __init__(
        self, downloader: Downloader, slots: Slots, settings: FetchSettings, sleep: Sleep,
        clock: Clock = time.monotonic,
    ):
        self._downloader = downloader
        self._slots = slots
        self._settings = settings
        self._sleep = sleep
        self.token = product_token(settings.user_agent)
        self._rules: Expiring[OriginKey, RobotsRules] = Expiring(clock)
        self._locks: dict[OriginKey, _Lock] = {}  # an origin's, while a source of it waits for its robots.txt

    async def refusal(self, url: str) -> Download | None:
        checked = await self.check(url)
        return checked[0] if checked is not None else None

    async def check(self, url: str) -> tuple[Download, int] | None:
        """As `refusal`, with the attempts to count for it: none for a page robots.txt
        disallows, those of the robots.txt request for a host that did not answer."""
        if self._settings.robots != "obey":
            return None
        rules = await self.rules_for(url)
        refused = rules.refusal(url, self.token)
        if refused is None:
            return None
        return refused, (0 if refused.outcome is Outcome.ROBOTS_BLOCKED else rules.attempts)

    async def rules_for(self, url: str) -> RobotsRules:
        """This origin's rules, fetched on first use and again once too old
        (RobotsRules.keep_for). Sources of the origin that come meanwhile wait
        for that one fetch; a waiter cancelled during it releases the lock and
        the next one fetches: no orphaned task."""
        key = origin_of(url)
        rules = self._rules.get(key)
        if rules is not None:
            return rules
        lock = self._locks.setdefault(key, _Lock())
        lock.users += 1
        try:
            async with lock.lock:
                rules = self._rules.get(key)
                if rules is None:
                    rules = await self._fetch(robots_url(url), key[1])
                    self._rules.put(key, rules, rules.keep_for)
        finally:
            lock.users -= 1
            if not lock.users:  # no one holds it or waits for it: not kept for every origin ever met
                del self._locks[key]
        return rules

    async def _fetch(self, url: str, host: str) -> RobotsRules:
        """The robots.txt request, its retries within one source's time limit
        (`source_deadline`), so a host that trickles it costs that once a run."""
        settings = self._settings
        download, attempts = await fetch_with_retries(
            lambda: self._downloader.get(url, max_bytes=ROBOTS_MAX_BYTES, keep_head=True),
            settings.retries, settings.max_retry_after, self._sleep, time_limit=settings.source_time_limit, url=url,
        )
        rules = rules_from(url, download, attempts)
        delay = rules.crawl_delay(self.token) or 0.0
        self._slots.crawl_delay(host, url, min(max(delay, 0.0), settings.max_crawl_delay))
        log.debug("%s: %s (%s)", url, rules.verdict, rules.reason)
        return rules


def _path(url: str) -> str:
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
