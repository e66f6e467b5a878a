"""One classified HTTP GET on the shared httpx client.

Redirects are followed here (not by httpx) so the chain is recorded, loops are
caught and every hop goes through the per-host slots. The body is streamed raw
and inflated by a bounded decompressor, so neither a huge body nor a gzip bomb
can take more than max_bytes of memory. Every failure becomes an Outcome.
"""

from __future__ import annotations

import asyncio
import email.utils
import errno
import socket
import ssl
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from urllib.parse import urljoin

import httpx

from fetcher.config import FetchSettings
from fetcher.hosts import HostSlots
from fetcher.models import Download, Hop
from fetcher.outcomes import Outcome, outcome_for_status
from fetcher.sources import BadURL, check_url, host_of

MAX_REDIRECTS = 10
ACCEPT = "text/html,application/xhtml+xml,application/pdf;q=0.9,text/plain;q=0.8,*/*;q=0.5"
WallClock = Callable[[], datetime]
Gate = Callable[[str], Awaitable[Download | None]]  # a URL about to be requested -> a refusal, or None


def make_client(settings: FetchSettings) -> httpx.AsyncClient:
    """The one shared client: TLS verified, no automatic redirects or decoding,
    a small connection pool per host."""
    timeout = httpx.Timeout(
        connect=settings.connect_timeout,
        read=settings.read_timeout,
        write=settings.read_timeout,
        pool=settings.deadline,
    )
    tls = httpx.create_ssl_context(verify=True)  # built once, shared by every host's pool
    limits = httpx.Limits(max_connections=settings.concurrency, max_keepalive_connections=settings.per_host_concurrency)
    transport = HostPools(lambda: httpx.AsyncHTTPTransport(verify=tls, limits=limits), keep=settings.concurrency)
    headers = {"User-Agent": settings.user_agent, "Accept": ACCEPT, "Accept-Encoding": "gzip, deflate"}
    return httpx.AsyncClient(timeout=timeout, transport=transport, headers=headers, follow_redirects=False)


class HostPools(httpx.AsyncBaseTransport):
    """One small connection pool per origin (scheme, host, port), as scrapy keeps
    a download slot per host. httpcore 1.0.9's pool scans all its connections,
    quadratically, on every request and every response (encode/httpcore#1035):
    with one pool of up to 160 connections over 40 hosts, the benchmark's main
    process used 8.3 s of CPU for 1,800 pages; with a pool per host, 6.3 s.
    Beyond `keep` pools, the least recently used pools with no response open
    are closed, so idle sockets stay bounded however many hosts a run visits."""

    def __init__(self, make_pool: Callable[[], httpx.AsyncBaseTransport], keep: int):
        self._make_pool = make_pool
        self._keep = max(1, keep)
        self._pools: dict[tuple[bytes, str, int | None], httpx.AsyncBaseTransport] = {}  # oldest use first
        self._open: dict[tuple[bytes, str, int | None], int] = {}  # responses not yet closed, per pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        key = (request.url.raw_scheme, request.url.host, request.url.port)
        pool = self._pools.pop(key, None)
        fresh = pool is None
        self._pools[key] = pool = pool or self._make_pool()  # now the most recently used
        self._open[key] = self._open.get(key, 0) + 1
        try:
            if fresh:
                await self._close_idle_pools()
            response = await pool.handle_async_request(request)
        except BaseException:
            self._closed(key)
            raise
        stream = _OnClose(response.stream, lambda: self._closed(key))
        return httpx.Response(response.status_code, headers=response.headers, stream=stream, extensions=response.extensions)

    def _closed(self, key: tuple[bytes, str, int | None]) -> None:
        self._open[key] -= 1
        if not self._open[key]:
            del self._open[key]

    async def _close_idle_pools(self) -> None:
        while len(self._pools) > self._keep:
            key = next((key for key in self._pools if key not in self._open), None)
            if key is None:
                return
            await self._pools.pop(key).aclose()  # popped before the await: no one else can pick it

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()


class _OnClose(httpx.AsyncByteStream):
    """A response stream that calls `closed` once when it is closed."""

    def __init__(self, stream: httpx.AsyncByteStream, closed: Callable[[], None]):
        self._stream, self._closed = stream, closed

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            closed, self._closed = self._closed, None
            if closed is not None:
                closed()


@dataclass(frozen=True)
class _Redirect:
    status: int
    location: str


@dataclass(frozen=True)
class _Cap:
    limit: int  # bytes of body allowed (raw and inflated)
    keep_head: bool = False  # True: a longer body is cut at `limit`, not refused


class _Limit(Exception):
    """The body went past the byte cap."""


class _Incomplete(Exception):
    """The body ended before its encoding said it would."""


class Downloader:
    def __init__(
        self,
        client: httpx.AsyncClient,
        settings: FetchSettings,
        slots: HostSlots,
        wall_clock: WallClock = lambda: datetime.now(timezone.utc),
    ):
        self._client = client
        self._settings = settings
        self._slots = slots
        self._wall_clock = wall_clock

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
        fetch (robots.txt uses this)."""
        limit = min(max_bytes, self._settings.max_bytes) if max_bytes is not None else self._settings.max_bytes
        hops: list[Hop] = []
        seen = {url}
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            refused = await gate(current) if gate is not None and hops else None
            if refused is not None:
                return replace(refused, url=url, final_url=current, redirects=tuple(hops))
            async with self._slots.slot(host_of(current)):
                answer = await self._hop(url, current, headers, _Cap(limit, keep_head))
            if isinstance(answer, Download):
                return replace(answer, redirects=tuple(hops))
            hops.append(Hop(current, answer.status))
            target = urljoin(current, answer.location)
            failure = _bad_redirect(url, current, target, seen, tuple(hops))
            if failure is not None:
                return failure
            seen.add(target)
            current = target
        return _failed(url, current, Outcome.REDIRECT_LOOP, f"more than {MAX_REDIRECTS} redirects", tuple(hops))

    async def _hop(self, url: str, current: str, headers: dict[str, str] | None, cap: _Cap) -> Download | _Redirect:
        try:
            async with asyncio.timeout(self._settings.deadline):
                request = self._client.build_request("GET", current, headers=headers)
                response = await self._client.send(request, stream=True)
                try:
                    return await self._answer(url, current, response, cap)
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
        location = response.headers.get("location")
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
        except _Limit:
            if cap.keep_head:
                head = b"".join(chunks) + inflater.within_cap
                return replace(found, body=head, detail=f"body cut at its first {limit} bytes")
            return replace(found, outcome=Outcome.TOO_LARGE, detail=f"body over {limit} bytes")
        except _Incomplete as error:
            return replace(found, outcome=Outcome.TRUNCATED, detail=str(error))
        except zlib.error as error:
            return replace(found, outcome=Outcome.DECODE_ERROR, detail=f"bad {encoding} stream: {error}")
        return replace(found, body=b"".join(chunks), gzipped=inflater.gzip_file())


class Inflater:
    """Undo a Content-Encoding without ever holding more than `limit` bytes of output.
    A gzip body may hold several members (RFC 1952): all are inflated; bytes after
    the last member that do not start another one are ignored, as gzip(1) does."""

    def __init__(self, encoding: str, limit: int):
        self._room = limit
        self._raw_room = limit
        self._gzip = encoding in ("gzip", "x-gzip")
        self._raw: list[bytes] = []  # gzip only: what came over the wire
        self._members = 1
        self._tail = b""  # bytes after a complete member, not (yet) known to start another
        self.within_cap = b""  # when _Limit is raised: the part of the last output that still fit
        if encoding in ("identity", ""):
            self._inflate = None
        elif self._gzip:
            self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._inflate = zlib.decompressobj()
        else:
            raise ValueError(f"unsupported Content-Encoding {encoding!r}")

    def feed(self, data: bytes) -> bytes:
        if self._inflate is None:
            return self._take(data)  # raw = output: one cap
        self._raw_room -= len(data)
        if self._raw_room < 0:
            raise _Limit()
        if self._gzip:
            self._raw.append(data)
        out = []
        while data:
            if not self._inflate.eof:
                out.append(self._take(self._inflate.decompress(data, self._room + 1)))
                data = self._inflate.unused_data if self._inflate.eof else b""
                continue
            self._tail += data
            data = b""
            if self._gzip and self._tail[:2] == b"\x1f\x8b":
                data, self._tail = self._tail, b""
                self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
                self._members += 1
        return b"".join(out)

    def finish(self) -> bytes:
        if self._inflate is None:
            return b""
        if not self._inflate.eof:
            raise _Incomplete("compressed body ended early")
        return self._take(self._inflate.flush())

    def gzip_file(self) -> bytes | None:
        """The raw bytes when they were exactly one complete gzip member, i.e. a
        valid .gz file of the body; None for any other encoding or shape."""
        if not self._gzip or not self._inflate.eof or self._members != 1 or self._tail:
            return None
        return b"".join(self._raw)

    def _take(self, data: bytes) -> bytes:
        if len(data) > self._room:
            self.within_cap, self._room = data[: self._room], -1
            raise _Limit()
        self._room -= len(data)
        return data


def classify_error(error: httpx.HTTPError) -> tuple[Outcome, str]:
    """Map an httpx exception to an outcome kind, looking through its cause chain."""
    detail = f"{type(error).__name__}: {error}".strip()
    if isinstance(error, httpx.TimeoutException):
        return Outcome.TIMEOUT, detail
    if isinstance(error, httpx.ConnectError):
        return _classify_connect(error), detail
    if isinstance(error, httpx.RemoteProtocolError) and _looks_truncated(str(error)):
        return Outcome.TRUNCATED, detail
    if isinstance(error, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
        return Outcome.BAD_CONTENT, detail
    return Outcome.NETWORK_ERROR, detail


def _looks_truncated(message: str) -> bool:
    message = message.lower()
    return "incomplete" in message or "complete message body" in message


def _classify_connect(error: BaseException) -> Outcome:
    for cause in _causes(error):
        if isinstance(cause, socket.gaierror):
            return Outcome.CONNECT_ERROR if cause.errno == socket.EAI_AGAIN else Outcome.DNS_ERROR
        if isinstance(cause, ConnectionRefusedError):
            return Outcome.CONNECT_REFUSED
        if isinstance(cause, ssl.SSLError):
            return Outcome.TLS_ERROR
        if isinstance(cause, OSError) and cause.errno == errno.ECONNREFUSED:
            return Outcome.CONNECT_REFUSED
    text = str(error).lower()
    if "name or service not known" in text or "nodename nor servname" in text or "no address associated" in text:
        return Outcome.DNS_ERROR
    if "ssl" in text or "certificate" in text:
        return Outcome.TLS_ERROR
    if "refused" in text:
        return Outcome.CONNECT_REFUSED
    return Outcome.CONNECT_ERROR


def _causes(error: BaseException) -> Iterator[BaseException]:
    seen = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


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


def _bad_redirect(url: str, current: str, target: str, seen: set[str], hops: tuple[Hop, ...]) -> Download | None:
    if target in seen:
        return _failed(url, target, Outcome.REDIRECT_LOOP, f"redirect loop back to {target}", hops)
    try:
        check_url(target)
    except BadURL as error:
        return _failed(url, current, Outcome.BAD_CONTENT, f"redirect to an unusable URL: {error}", hops)
    return None


def _failed(url: str, current: str, outcome: Outcome, detail: str, hops: tuple[Hop, ...] = ()) -> Download:
    return Download(url=url, outcome=outcome, final_url=current, detail=detail, redirects=hops)
