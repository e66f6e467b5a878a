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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from urllib.parse import urljoin, urlsplit

import httpx

from fetcher.net.addresses import Policy, refusal
from fetcher.core.config import ArchiveSettings, FetchSettings
from fetcher.net.connect import GuardedBackend, GuardedTransport, PrivateAddressRefused
from fetcher.core.errors import Stopped
from fetcher.net.hosts import HostSlots
from fetcher.core.models import Download, Hop
from fetcher.core.outcomes import Outcome, outcome_for_status
from fetcher.core.sources import BadURL, check_url, host_of

MAX_REDIRECTS = 10
_URL_ERRORS = (httpx.InvalidURL, UnicodeError, ValueError)
ACCEPT = "text/html,application/xhtml+xml,application/pdf;q=0.9,text/plain;q=0.8,*/*;q=0.5"
WallClock = Callable[[], datetime]
Gate = Callable[[str], Awaitable[Download | None]]  # a URL about to be requested -> a refusal, or None


TRUSTED = "fetcher.trusted"  # request extension: a request to a configured archive endpoint (see Downloader)
Endpoint = tuple[str, int]  # (host, port) as a URL names them


def make_client(settings: FetchSettings, policy: Policy = refusal) -> httpx.AsyncClient:
    """The one shared client: TLS verified, no automatic redirects or decoding,
    a small connection pool per host. Unless `allow_private_networks`, every
    connection is opened by a GuardedBackend that refuses the addresses `policy`
    refuses (tests pass a policy that calls one loopback address public);
    requests marked TRUSTED get pools of their own that connect unguarded."""
    timeout = httpx.Timeout(
        connect=settings.connect_timeout,
        read=settings.read_timeout,
        write=settings.read_timeout,
        pool=settings.deadline,
    )
    tls = httpx.create_ssl_context(verify=True)  # built once, shared by every host's pool
    limits = httpx.Limits(max_connections=settings.concurrency, max_keepalive_connections=settings.per_host_concurrency)

    def plain() -> httpx.AsyncBaseTransport:
        return httpx.AsyncHTTPTransport(verify=tls, limits=limits)

    backend = GuardedBackend(policy)

    def guarded() -> httpx.AsyncBaseTransport:
        return GuardedTransport(backend, tls, limits)

    make_pool = plain if settings.allow_private_networks else guarded
    transport = HostPools(make_pool, keep=settings.concurrency, make_trusted_pool=plain)
    headers = {"User-Agent": settings.user_agent, "Accept": ACCEPT, "Accept-Encoding": "gzip, deflate"}
    return httpx.AsyncClient(timeout=timeout, transport=transport, headers=headers, follow_redirects=False)


_PoolKey = tuple[bytes, str, int | None, bool]  # scheme, host, port, trusted


class HostPools(httpx.AsyncBaseTransport):
    """One small connection pool per origin (scheme, host, port), as scrapy keeps
    a download slot per host. httpcore 1.0.9's pool scans all its connections,
    quadratically, on every request and every response (encode/httpcore#1035):
    with one pool of up to 160 connections over 40 hosts, the benchmark's main
    process used 8.3 s of CPU for 1,800 pages; with a pool per host, 6.3 s.
    Beyond `keep` pools, the least recently used pools with no response open
    are closed, so idle sockets stay bounded however many hosts a run visits.
    Requests carrying the TRUSTED extension use pools of their own, made by
    `make_trusted_pool`, so a connection opened for one is never reused by a
    request that is not trusted."""

    def __init__(
        self,
        make_pool: Callable[[], httpx.AsyncBaseTransport],
        keep: int,
        make_trusted_pool: Callable[[], httpx.AsyncBaseTransport] | None = None,
    ):
        self._make_pool = make_pool
        self._make_trusted_pool = make_trusted_pool or make_pool
        self._keep = max(1, keep)
        self._pools: dict[_PoolKey, httpx.AsyncBaseTransport] = {}  # oldest use first
        self._open: dict[_PoolKey, int] = {}  # responses not yet closed, per pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        trusted = bool(request.extensions.get(TRUSTED))
        key = (request.url.raw_scheme, request.url.host, request.url.port, trusted)
        pool = self._pools.pop(key, None)
        fresh = pool is None
        if pool is None:
            pool = (self._make_trusted_pool if trusted else self._make_pool)()
        self._pools[key] = pool  # now the most recently used
        self._open[key] = self._open.get(key, 0) + 1
        try:
            if fresh:
                await self._close_idle_pools()
            response = await pool.handle_async_request(request)
        except BaseException:
            self._closed(key)
            raise
        stream = _OnClose(response.stream, lambda: self._closed(key))
        headers = _hide_location(response.status_code, response.headers)
        return httpx.Response(response.status_code, headers=headers, stream=stream, extensions=response.extensions)

    def _closed(self, key: _PoolKey) -> None:
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


LOCATION = "x-fetcher-location"


def _hide_location(status: int, headers: httpx.Headers) -> httpx.Headers:
    """A redirect's Location under another name. httpx builds the next request
    for every 3xx even with redirects off, and raises on a Location it cannot
    use (`javascript:`, `http://[::1`, 70 KB long) before we see the answer; we
    follow redirects ourselves (Downloader.get) and judge the target there."""
    if not 300 <= status < 400 or "location" not in headers:
        return headers
    kept = [(name, value) for name, value in headers.raw if name.lower() != b"location"]
    return httpx.Headers(kept + [(LOCATION.encode(), value) for value in headers.get_list("location")])


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
            extensions = {TRUSTED: True} if trusted else None
            request = self._client.build_request("GET", current, headers=headers, extensions=extensions)
        except _URL_ERRORS as error:  # httpx.InvalidURL (a DEL byte, over 64 KB), idna's UnicodeError
            return _failed(url, current, Outcome.BAD_CONTENT, f"unusable URL: {type(error).__name__}: {error}")
        try:
            async with asyncio.timeout(self._settings.deadline):
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
    refused = next((cause for cause in _causes(error) if isinstance(cause, PrivateAddressRefused)), None)
    if refused is not None:
        return Outcome.PRIVATE_ADDRESS, str(refused)
    detail = f"{type(error).__name__}: {error}".strip()
    if isinstance(error, httpx.TimeoutException):
        return Outcome.TIMEOUT, detail
    if isinstance(error, httpx.ConnectError):
        return _classify_connect(error), detail
    if isinstance(error, httpx.RemoteProtocolError) and _looks_truncated(str(error)):
        return Outcome.TRUNCATED, detail
    if isinstance(error, httpx.RemoteProtocolError) and _looks_oversized(str(error)):
        return Outcome.BAD_CONTENT, f"{detail} (a header too large to read)"
    if isinstance(error, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
        return Outcome.BAD_CONTENT, detail
    return Outcome.NETWORK_ERROR, detail


def _looks_truncated(message: str) -> bool:
    message = message.lower()
    return "incomplete" in message or "complete message body" in message


def _looks_oversized(message: str) -> bool:
    """h11's words for a status line or headers over its 64 KiB limit."""
    return "receive buffer too long" in message.lower()


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


def endpoint_of(url: str) -> Endpoint:
    """(host, port) of an http(s) URL, the port filled in from the scheme."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return (parts.hostname or "", port or (443 if parts.scheme.lower() == "https" else 80))


def trusted_endpoints(archives: Iterable[ArchiveSettings]) -> frozenset[Endpoint]:
    """The endpoints of the archives the operator configured: trusted even when private."""
    return frozenset(
        endpoint_of(url) for archive in archives for url in (archive.cdx_url, archive.replay_url, archive.save_url)
    )


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
