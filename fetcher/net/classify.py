"""Which outcome an httpx exception is: httpx raises ConnectError for a DNS
failure, a refused connection and a TLS failure alike; the cause chain tells."""

from __future__ import annotations

import errno
import socket
import ssl
from collections.abc import Iterator

import httpx

from fetcher.core.outcomes import Outcome
from fetcher.net.connect import PrivateAddressRefused


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
