"""One classified HTTP GET on the shared httpx client.

Redirects are followed here (not by httpx) so the chain is recorded, loops are
caught and every hop goes through the per-host slots. The body is streamed raw
and inflated by a bounded decompressor, so neither a huge body nor a gzip bomb
can take more than max_bytes of memory. Every failure becomes an Outcome.
"""

from __future__ import annotations

import asyncio
import email.utils
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from urllib.parse import urljoin

import httpx

from fetcher.core.config import FetchSettings
from fetcher.core.errors import Stopped
from fetcher.core.models import Download, Hop
from fetcher.core.outcomes import Outcome, outcome_for_status
from fetcher.core.sources import BadURL, check_url, host_of
from fetcher.core.timestamps import WallClock, utc_now
from fetcher.net.classify import classify_error
from fetcher.net.client import LOCATION, TRUSTED, Endpoint, FetchClient, endpoint_of
from fetcher.net.hosts import Slots
from fetcher.net.inflate import Incomplete, Inflater, OverCap

MAX_REDIRECTS = 10
DRAIN_MAX = 64 * 1024  # an answer's unwanted body up to this is read and dropped, keeping its connection
DRAIN_SECONDS = 1.0  # … if it comes within this long (and before the deadline): a slow one is not waited for
_NO_BODY = (204, 304)  # answers that have no body, whatever their headers say (RFC 9110)
_URL_ERRORS = (httpx.InvalidURL, UnicodeError, ValueError)
Gate = Callable[[str], Awaitable[Download | None]]  # a URL about to be requested -> a refusal, or None


@dataclass(frozen=True)
class _Redirect:
    status: int
    location: str


@dataclass(frozen=True)
class _Cap:
    limit: int  # bytes of body allowed (raw and inflated)
    keep_head: bool = False  # True: a longer body is cut at `limit`, not refused


class Downloader:
    def __init__(
        self,
        client: FetchClient,
        settings: FetchSettings,
        slots: Slots,
        wall_clock: WallClock = utc_now,
        trusted: frozenset[Endpoint] = frozenset(),
        stopping: Callable[[], bool] = lambda: False,
    ):
        """`trusted`: endpoints (the configured archives') that may be private:
        a request to one, and the redirects that stay on them, is not checked
        against the address policy. Trust is not passed on: once a chain of
        redirects leaves the trusted endpoints, or if it started elsewhere (a
        public page redirecting to the archive's host), every hop is checked."""
        self._client = client
        self._settings = settings
        self._slots = slots
        self._wall_clock = wall_clock
        self._trusted = trusted
        self._stopping = stopping

    async def get(
        self,
        url: str,
        headers: dict[str, str] | None = None,
        *,
        max_bytes: int | None = None,
        keep_head: bool = False,
        gate: Gate | None = None,
    ) -> Download:
        """GET url, following redirects; always returns a classified Download.
        `max_bytes` caps this call's body below `FetchSettings.max_bytes`; with
        `keep_head` a longer body is cut at the cap (outcome ok, the detail says
        so) instead of being `too-large`. `gate`, if given, is asked about every
        redirect target before it is requested: a Download it returns ends the
        fetch (robots.txt uses this). Raises Stopped instead of starting a
        request once the run is stopping."""
        limit = min(max_bytes, self._settings.max_bytes) if max_bytes is not None else self._settings.max_bytes
        hops: list[Hop] = []
        seen = {url}
        current = url
        trusted = True  # every hop so far was to a trusted endpoint
        for _ in range(MAX_REDIRECTS + 1):
            trusted = trusted and endpoint_of(current) in self._trusted
            refused = await gate(current) if gate is not None and hops else None
            if refused is not None:
                return replace(refused, url=url, final_url=current, redirects=tuple(hops))
            async with self._slots.slot(host_of(current)):
                if self._stopping():
                    raise Stopped(f"not requesting {current}: the run is stopping")
                answer = await self._hop(url, current, headers, trusted, _Cap(limit, keep_head))
            if isinstance(answer, Download):
                return replace(answer, redirects=tuple(hops))
            hops.append(Hop(current, answer.status))
            target, failure = _redirect_target(url, current, answer.location, seen, tuple(hops))
            if failure is not None:
                return failure
            seen.add(target)
            current = target
        return _failed(url, current, Outcome.REDIRECT_LOOP, f"more than {MAX_REDIRECTS} redirects", tuple(hops))

    async def _hop(
        self, url: str, current: str, headers: dict[str, str] | None, trusted: bool, cap: _Cap
    ) -> Download | _Redirect:
        try:
            request = self._client.build_get(current, headers, {TRUSTED: True} if trusted else None)
        except _URL_ERRORS as error:  # httpx.InvalidURL (a DEL byte, over 64 KB), idna's UnicodeError
            return _failed(url, current, Outcome.BAD_CONTENT, f"unusable URL: {type(error).__name__}: {error}")
        try:
            async with asyncio.timeout(self._settings.deadline) as deadline:
                response = await self._client.send_get(request)
                try:
                    answer = await self._answer(url, current, response, cap)
                    if not response.is_stream_consumed:
                        await _drain(response, deadline.when())
                    return answer
                finally:
                    await response.aclose()
        except TimeoutError:
            detail = f"no complete answer within the {self._settings.deadline:g}s deadline"
            return _failed(url, current, Outcome.TIMEOUT, detail)
        except httpx.HTTPError as error:
            outcome, detail = classify_error(error)
            return _failed(url, current, outcome, detail)

    async def _answer(self, url: str, current: str, response: httpx.Response, cap: _Cap) -> Download | _Redirect:
        status = response.status_code
        location = response.headers.get(LOCATION)
        if 300 <= status < 400 and status != 304 and location:
            return _Redirect(status, location)
        found = Download(
            url=url,
            outcome=outcome_for_status(status),
            final_url=current,
            http_status=status,
            content_type=response.headers.get("content-type"),
            retry_after=parse_retry_after(response.headers.get("retry-after"), self._wall_clock()),
            etag=response.headers.get("etag"),
            last_modified=response.headers.get("last-modified"),
            headers=_archive_headers(response.headers),
        )
        if found.outcome is not Outcome.OK:
            return found
        return await self._read_body(found, response, cap)

    async def _read_body(self, found: Download, response: httpx.Response, cap: _Cap) -> Download:
        limit = cap.limit
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit and not cap.keep_head:
            return replace(found, outcome=Outcome.TOO_LARGE, detail=f"Content-Length {declared} > {limit} bytes")
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        try:
            inflater = Inflater(encoding, limit)
        except ValueError as error:
            return replace(found, outcome=Outcome.DECODE_ERROR, detail=str(error))
        chunks = []
        try:
            async for chunk in response.aiter_raw():
                chunks.append(inflater.feed(chunk))
            chunks.append(inflater.finish())
        except OverCap:
            if cap.keep_head:
                head = b"".join(chunks) + inflater.within_cap
                return replace(found, body=head, detail=f"body cut at its first {limit} bytes")
            return replace(found, outcome=Outcome.TOO_LARGE, detail=f"body over {limit} bytes")
        except Incomplete as error:
            return replace(found, outcome=Outcome.TRUNCATED, detail=str(error))
        except zlib.error as error:
            return replace(found, outcome=Outcome.DECODE_ERROR, detail=f"bad {encoding} stream: {error}")
        return replace(found, body=b"".join(chunks), gzipped=inflater.gzip_file())


async def _drain(response: httpx.Response, deadline: float | None) -> None:
    """Read and drop the body of an answer whose body is not wanted (a 304, a
    redirect, an error page), so httpcore puts its connection back in the pool
    for the next request to the host instead of closing it (a new TCP and TLS
    handshake per check). Only a body of at most DRAIN_MAX bytes, read within
    DRAIN_SECONDS and before the request's deadline: a longer or slower one, or one that breaks,
    is left unread and its connection closed. Never changes the answer. It waits
    DRAIN_SECONDS at most (the host's slot is held meanwhile)."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > DRAIN_MAX:
        return
    now = asyncio.get_running_loop().time()
    until = now + DRAIN_SECONDS
    if deadline is not None:
        until = min(until, deadline - min(0.1, (deadline - now) / 10))
    read = 0
    try:
        async with asyncio.timeout_at(None if response.status_code in _NO_BODY else until):  # none: nothing to wait for
            async for chunk in response.aiter_raw():
                read += len(chunk)
                if read > DRAIN_MAX:
                    return
    except (TimeoutError, httpx.HTTPError):
        return


def _archive_headers(headers: httpx.Headers) -> dict[str, str]:
    """The headers a Wayback-compatible archive uses to say what it served."""
    return {
        name: value
        for name, value in headers.items()
        if name in ("memento-datetime", "content-location") or name.startswith("x-archive-orig-")
    }


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - now).total_seconds())


def _redirect_target(
    url: str, current: str, location: str, seen: set[str], hops: tuple[Hop, ...]
) -> tuple[str, Download | None]:
    """Where a redirect leads, or the failure it is (a loop, or a target we cannot fetch)."""
    try:
        target = urljoin(current, location)
        check_url(target)
        httpx.URL(target)  # what httpx cannot send (over 64 KB, bad IDNA) is not worth a robots.txt
    except (BadURL, *_URL_ERRORS) as error:  # urljoin raises ValueError on "http://[::1"
        shown = location if len(location) <= 200 else f"{location[:200]}… ({len(location)} characters)"
        return location, _failed(
            url, current, Outcome.BAD_CONTENT, f"redirect to an unusable URL {shown!r}: {error}"[:1000], hops
        )
    if target in seen:
        return target, _failed(url, target, Outcome.REDIRECT_LOOP, f"redirect loop back to {target}", hops)
    return target, None


def _failed(url: str, current: str, outcome: Outcome, detail: str, hops: tuple[Hop, ...] = ()) -> Download:
    return Download(url=url, outcome=outcome, final_url=current, detail=detail, redirects=hops)
