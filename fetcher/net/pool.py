"""One origin's HTTP/1.1 connections, kept alive: the pool behind each host's
httpx transport (fetcher.net.connect.GuardedTransport).

httpcore's AsyncConnectionPool serves many origins, HTTP/2 and proxies: on every
request and every response it scans its connections and hands a connection over
through an anyio Event made per request (which also imports anyio's asyncio
backend on the first request, 36 ms). fetcher gives each origin a pool of its own
(fetcher.net.client.HostPools) and its downloader already keeps each host's
concurrency (fetcher.net.hosts), so a pool needs no queue: a list of idle
connections and a semaphore for `max_connections`.

The HTTP/1.1 exchange itself is httpcore's (AsyncHTTP11Connection over h11, on
the streams `backend` opens), so requests, responses, keep-alive and every
error (and its message) are as before; its state lock is an asyncio.Lock, not
an anyio one. TLS as httpcore does it: ALPN `http/1.1`, SNI from the request's
`sni_hostname` extension or the host, verified with the given context."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator

import httpcore


class OriginPool:
    """httpcore's request interface (handle_async_request, aclose) for one origin."""

    def __init__(
        self,
        backend: httpcore.AsyncNetworkBackend,
        tls: ssl.SSLContext,
        max_connections: int | None,
        max_keepalive: int | None,
        keepalive_expiry: float | None,
    ):
        self._backend = backend
        self._tls = tls
        self._slots = asyncio.Semaphore(max_connections or 1_000_000)
        self._keep = max_keepalive if max_keepalive is not None else 1_000_000
        self._expiry = keepalive_expiry
        self._idle: list[httpcore.AsyncHTTP11Connection] = []  # the most recently used last
        self._closed = False

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        timeouts = request.extensions.get("timeout", {})
        await self._acquire(timeouts.get("pool"))
        try:
            connection = await self._reuse() or await self._connect(request, timeouts.get("connect"))
            response = await connection.handle_async_request(request)  # on failure it closes the connection
        except BaseException:
            self._slots.release()
            raise
        content = _Returning(response.stream, connection, self)
        return httpcore.Response(response.status, headers=response.headers, content=content,
                                 extensions=response.extensions)

    async def _acquire(self, timeout: float | None) -> None:
        """A connection slot: at once when one is free (the usual case: the downloader
        keeps each host's concurrency below it), else within `timeout` (PoolTimeout)."""
        if not self._slots.locked():
            await self._slots.acquire()  # free: returns without waiting
            return
        try:
            async with asyncio.timeout(timeout):
                await self._slots.acquire()
        except TimeoutError as error:
            raise httpcore.PoolTimeout(f"no connection free within {timeout}s") from error

    async def _reuse(self) -> httpcore.AsyncHTTP11Connection | None:
        """The most recently used idle connection still open (the server may have closed it)."""
        while self._idle:
            connection = self._idle.pop()
            if not connection.has_expired():
                return connection
            await connection.aclose()
        return None

    async def _connect(self, request: httpcore.Request, timeout: float | None) -> httpcore.AsyncHTTP11Connection:
        origin = request.url.origin
        host = origin.host.decode("ascii")
        stream = await self._backend.connect_tcp(host, origin.port, timeout=timeout)
        if origin.scheme == b"https":
            self._tls.set_alpn_protocols(["http/1.1"])
            name = request.extensions.get("sni_hostname") or host
            try:
                stream = await stream.start_tls(self._tls, server_hostname=name, timeout=timeout)
            except BaseException:  # a failed handshake, or cancelled in it: the socket is not left open
                await stream.aclose()
                raise
        connection = httpcore.AsyncHTTP11Connection(origin, stream, keepalive_expiry=self._expiry)
        connection._state_lock = asyncio.Lock()  # type: ignore[assignment]  # httpcore's AsyncLock goes through anyio
        return connection

    async def _returned(self, connection: httpcore.AsyncHTTP11Connection) -> None:
        """A response is closed: keep its connection if it can take another request."""
        try:
            if connection.is_idle() and not self._closed and len(self._idle) < self._keep:
                self._idle.append(connection)
            else:
                await connection.aclose()
        finally:
            self._slots.release()

    async def __aenter__(self) -> OriginPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.aclose()


class _Returning:
    """A response's body stream that gives its connection back to the pool once closed."""

    def __init__(self, stream: object, connection: httpcore.AsyncHTTP11Connection, pool: OriginPool):
        self._stream = stream
        self._connection: httpcore.AsyncHTTP11Connection | None = connection
        self._pool = pool

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:  # type: ignore[attr-defined]
            yield chunk

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            await self._stream.aclose()  # type: ignore[attr-defined]  # the connection is idle again, or closed
        finally:
            await self._pool._returned(connection)
