"""The one shared HTTP client: TLS verified, no automatic redirects or decoding,
a small connection pool per host, connections opened only to vetted addresses
(net/connect.py) unless private networks are allowed, and the configured archive
endpoints trusted as configured."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

import httpx

from fetcher.core.config import ArchiveSettings, FetchSettings
from fetcher.net.addresses import Policy, refusal
from fetcher.net.connect import GuardedBackend, GuardedTransport
from fetcher.net.streams import AsyncioBackend

ACCEPT = "text/html,application/xhtml+xml,application/pdf;q=0.9,text/plain;q=0.8,*/*;q=0.5"
TRUSTED = "fetcher.trusted"  # request extension: a request to a configured archive endpoint (see Downloader)
Endpoint = tuple[str, int]  # (host, port) as a URL names them


def make_client(settings: FetchSettings, policy: Policy = refusal) -> FetchClient:
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
    tls = trust(settings)  # built once, shared by every host's pool
    limits = httpx.Limits(max_connections=settings.concurrency, max_keepalive_connections=settings.per_host_concurrency)

    direct = AsyncioBackend()

    def plain() -> httpx.AsyncBaseTransport:
        return GuardedTransport(direct, tls, limits)

    backend = GuardedBackend(policy, direct)

    def guarded() -> httpx.AsyncBaseTransport:
        return GuardedTransport(backend, tls, limits)

    make_pool = plain if settings.allow_private_networks else guarded
    transport = HostPools(make_pool, keep=settings.concurrency, make_trusted_pool=plain)
    headers = {"User-Agent": settings.user_agent, "Accept": ACCEPT, "Accept-Encoding": "gzip, deflate"}
    return FetchClient(timeout=timeout, transport=transport, headers=headers, follow_redirects=False)


class FetchClient(httpx.AsyncClient):
    """httpx's AsyncClient, with a short way for fetcher's GETs (`build_get`,
    `send_get`): what `send(build_request("GET", url, …), stream=True)` does,
    less what fetcher never uses — a base URL, query parameters, auth, httpx's
    redirect machinery (Downloader follows redirects itself), the `elapsed`
    timer and httpx's own "HTTP Request" log line. Kept: the client's headers
    under the request's, its timeouts, its cookie jar (a Set-Cookie is kept and
    sent back, as before), its request and response hooks, a closed client
    refusing. On a bare client that machinery was a quarter of the CPU of a
    request answered 304 (0.55 against 0.41 ms)."""

    def __init__(self, *, transport: httpx.AsyncBaseTransport, **kwargs: Any):
        super().__init__(transport=transport, **kwargs)
        self._direct = transport
        self._timeouts = self.timeout.as_dict()

    def build_get(self, url: str, headers: dict[str, str] | None, extensions: dict[str, Any] | None) -> httpx.Request:
        """The GET `build_request` would make (httpx.InvalidURL and the like for a URL it cannot send)."""
        merged = httpx.Headers(self.headers)
        if headers:
            merged.update(headers)
        request = httpx.Request("GET", url, headers=merged, extensions={**(extensions or {}), "timeout": self._timeouts})
        if self.cookies:
            httpx.Cookies(self.cookies).set_cookie_header(request)
        return request

    async def send_get(self, request: httpx.Request) -> httpx.Response:
        """The response, its body not yet read (`send(request, stream=True)`)."""
        if self.is_closed:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        for hook in self.event_hooks["request"]:
            await hook(request)
        response = await self._direct.handle_async_request(request)
        response.request = request
        if "set-cookie" in response.headers:
            self.cookies.extract_cookies(response)
        try:
            for hook in self.event_hooks["response"]:
                await hook(response)
        except BaseException:
            await response.aclose()
            raise
        return response


def trust(settings: FetchSettings) -> ssl.SSLContext:
    """The TLS context every pool verifies with: the CAs of `[fetch] ca_bundle` if
    it is set, else httpx's default (SSL_CERT_FILE or SSL_CERT_DIR from the
    environment when set, else certifi's bundle)."""
    if settings.ca_bundle:
        return ssl.create_default_context(cafile=settings.ca_bundle)
    return httpx.create_ssl_context(verify=True)


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
        assert isinstance(response.stream, httpx.AsyncByteStream)  # an async transport's
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
    moved = [(LOCATION.encode(), value) for name, value in headers.raw if name.lower() == b"location"]
    return httpx.Headers(kept + moved)


class _OnClose(httpx.AsyncByteStream):
    """A response stream that calls `closed` once when it is closed."""

    def __init__(self, stream: httpx.AsyncByteStream, closed: Callable[[], None]):
        self._stream = stream
        self._closed: Callable[[], None] | None = closed

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
