"""Connections that open only to vetted addresses: SSRF protection at connect time.

httpcore asks its network backend to open a TCP connection to (host, port).
GuardedBackend resolves the host itself (with the event loop's getaddrinfo),
checks every address the name resolves to against the address policy
(fetcher/addresses.py), and connects to a vetted address literal. The address
checked is the address connected to, so a DNS answer that changes between a
check and the connection (DNS rebinding) has nothing to slip through, and the
check covers every connection the shared client opens: the source, each
redirect hop, robots.txt. httpcore then starts TLS on that stream with the
URL's host name, so SNI and certificate verification are unchanged.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import typing
from ipaddress import ip_address

import httpcore
import httpx

from fetcher.net.addresses import Address, Policy, refusal
from fetcher.net.pool import OriginPool

HINT = "refused; set [fetch] allow_private_networks = true to allow"


class PrivateAddressRefused(httpcore.ConnectError):
    """No connection was opened: the host is, or resolves to, a refused address.
    A ConnectError, so httpx maps it to httpx.ConnectError with this as its cause."""


def refused_message(host: str, address: Address, reason: str) -> str:
    """E.g. "127.0.0.1 is a loopback address (refused; …)" or
    "rebind.example resolves to 127.0.0.1, a loopback address (refused; …)"."""
    if _literal(host) == address:
        return f"{address} is {reason} ({HINT})"
    return f"{host} resolves to {address}, {reason} ({HINT})"


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's asyncio backend, connecting only to addresses `policy` allows.
    A name with any refused address is refused whole: a public site does not
    publish private addresses, and a mixed answer is the shape of a rebinding attack."""

    def __init__(self, policy: Policy = refusal, inner: httpcore.AsyncNetworkBackend | None = None):
        self._policy = policy
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        ends = None if timeout is None else loop.time() + timeout
        addresses = await self._vetted(host, port, timeout)
        error: httpcore.ConnectError | None = None
        for address in addresses:  # in the resolver's order, as the default backend does
            left = None if ends is None else max(0.001, ends - loop.time())
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout=left, local_address=local_address, socket_options=socket_options
                )
            except httpcore.ConnectError as failure:
                error = failure
        assert error is not None  # _vetted never returns an empty list
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not used by fetcher")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)

    async def _vetted(self, host: str, port: int, timeout: float | None) -> list[Address]:
        """Every address `host` resolves to, each allowed by the policy; else PrivateAddressRefused."""
        addresses = await _resolve(host, port, timeout)
        for address in addresses:
            reason = self._policy(address)
            if reason is not None:
                raise PrivateAddressRefused(refused_message(host, address, reason))
        return addresses


async def _resolve(host: str, port: int, timeout: float | None) -> list[Address]:
    """The distinct addresses of `host` (an address literal stands for itself),
    resolved with the running loop's getaddrinfo. Failures are httpcore errors
    whose cause is the resolver's own (socket.gaierror), so they classify as before."""
    literal = _literal(host)
    if literal is not None:
        return [literal]
    try:
        async with asyncio.timeout(timeout):
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError as error:
        raise httpcore.ConnectTimeout(f"resolving {host} took over {timeout:g}s") from error
    except OSError as error:
        raise httpcore.ConnectError(str(error)) from error
    found: list[Address] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ip_address(sockaddr[0])
        if address not in found:
            found.append(address)
    if not found:
        raise httpcore.ConnectError(f"{host} resolves to no address")
    return found


def _literal(host: str) -> Address | None:
    try:
        return ip_address(host.strip("[]"))
    except ValueError:
        return None


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport, its connections those of one OriginPool
    (fetcher.net.pool) opened by `backend`.

    httpx 0.28's AsyncHTTPTransport takes no network_backend argument, but keeps
    the httpcore pool it wraps in `self._pool`. Replacing that pool keeps all of
    httpx's request/response conversion and exception mapping, which a
    transport of our own would have to copy from httpx's private modules. If a
    later httpx stops keeping its pool there, this fails loudly at start-up
    rather than connecting unguarded (and the private-network tests fail too)."""

    def __init__(self, backend: httpcore.AsyncNetworkBackend, verify: ssl.SSLContext, limits: httpx.Limits):
        super().__init__(verify=verify, limits=limits)
        if not isinstance(getattr(self, "_pool", None), httpcore.AsyncConnectionPool):
            raise RuntimeError("httpx.AsyncHTTPTransport no longer keeps an httpcore pool in _pool: update GuardedTransport")
        self._pool = OriginPool(  # type: ignore[assignment]
            backend, verify, limits.max_connections, limits.max_keepalive_connections, limits.keepalive_expiry
        )
