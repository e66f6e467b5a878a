"""A real HTTP origin on a loopback address that misbehaves on demand.

Each route is a function that writes the raw response through the handler, so a
test can trickle a body, cut it short, lie about its length or send a gzip bomb.
The server records every request and the most requests it had in flight at once.
A path with no route gets a plain 404, or the origin's `default` route if it has one
(a site that answers every unknown path itself).
"""

from __future__ import annotations

import email.utils
import gzip
import re
import sys
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Route = Callable[[BaseHTTPRequestHandler], None]
SOFT_404_PROBE = re.compile(r"/[0-9a-f]{32}")  # the made-up path fetcher asks each host for once a run


class QuietServer(ThreadingHTTPServer):
    """A threaded HTTP server that does not print a traceback when a client drops
    a kept-alive connection (it would land in whatever stderr a test captures)."""

    daemon_threads = True
    accepted = 0  # TCP connections accepted (set per instance on the first one)

    def get_request(self) -> tuple[object, object]:
        connection = super().get_request()
        self.accepted += 1  # the serving thread is the only one accepting
        return connection

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@dataclass(frozen=True)
class Seen:
    path: str
    host: str
    started: float
    headers: dict[str, str]
    peer: tuple[str, int] = ("", 0)  # the client's address and port: one per TCP connection


class Origin:
    def __init__(self, ip: str = "127.0.0.1", latency: float = 0.0, default: Route | None = None):
        self.ip = ip
        self.latency = latency
        self.routes: dict[str, Route] = {}
        self.default = default  # answers every path with no route; None: a plain 404
        self.requests: list[Seen] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.bytes_sent = 0
        self._lock = threading.Lock()
        origin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                origin._serve(self)

            def log_message(self, *args: object) -> None:
                pass

        self._server = QuietServer((ip, 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> Origin:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def url(self, path: str) -> str:
        return f"http://{self.ip}:{self.port}{path}"

    def route(self, path: str, route: Route) -> str:
        self.routes[path] = route
        return self.url(path)

    def hits(self, path: str) -> int:
        return sum(1 for seen in self.requests if seen.path == path)

    @property
    def connections(self) -> int:
        """TCP connections the server has accepted so far."""
        return self._server.accepted

    def unrouted(self) -> list[str]:
        """The paths asked for that have no route, in order (each time it was asked),
        robots.txt aside (a run asks for it once per host before the first page)."""
        return [seen.path for seen in self.requests if seen.path not in self.routes and seen.path != "/robots.txt"]

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.requests.append(Seen(handler.path, self.ip, time.monotonic(), dict(handler.headers), handler.client_address))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency:
                time.sleep(self.latency)
            route = self.routes.get(handler.path) or self.default or respond(404, _NOT_FOUND)
            route(handler)
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True
        finally:
            with self._lock:
                self.in_flight -= 1


_NOT_FOUND = b"<html><body><h1>Not Found</h1></body></html>"


def _head(handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str]) -> None:
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.end_headers()


def respond(status: int = 200, body: bytes = b"", headers: dict[str, str] | None = None) -> Route:
    def route(handler: BaseHTTPRequestHandler) -> None:
        all_headers = {"Content-Type": "text/html; charset=utf-8", **(headers or {})}
        all_headers.setdefault("Content-Length", str(len(body)))
        _head(handler, status, all_headers)
        handler.wfile.write(body)

    return route


def html(body: bytes | str, status: int = 200, **headers: str) -> Route:
    data = body.encode("utf-8") if isinstance(body, str) else body
    return respond(status, data, {k.replace("_", "-"): v for k, v in headers.items()})


def redirect(to: str, status: int = 301) -> Route:
    return respond(status, b"", {"Location": to})


def sequence(*routes: Route) -> Route:
    """Answer with each route in turn, then keep answering with the last."""
    calls = iter(routes)
    last = [routes[-1]]
    lock = threading.Lock()

    def route(handler: BaseHTTPRequestHandler) -> None:
        with lock:
            chosen = next(calls, last[0])
        chosen(handler)

    return route


def trickle(body: bytes, chunk: int, interval: float) -> Route:
    """Send `chunk` bytes every `interval` seconds: each read is quick, the whole is slow."""

    def route(handler: BaseHTTPRequestHandler) -> None:
        _head(handler, 200, {"Content-Type": "text/html", "Content-Length": str(len(body))})
        for start in range(0, len(body), chunk):
            handler.wfile.write(body[start : start + chunk])
            handler.wfile.flush()
            time.sleep(interval)

    return route


def truncated(body: bytes, claimed: int) -> Route:
    """Promise `claimed` bytes, send `body`, hang up."""

    def route(handler: BaseHTTPRequestHandler) -> None:
        _head(handler, 200, {"Content-Type": "text/html", "Content-Length": str(claimed)})
        handler.wfile.write(body)
        handler.close_connection = True

    return route


_BOMBS: dict[int, bytes] = {}


def gzip_bomb(inflated: int) -> Route:
    """A small gzip body that inflates to `inflated` bytes of zeros."""
    if inflated not in _BOMBS:
        squeezer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        block = bytes(1 << 20)
        parts = [squeezer.compress(block) for _ in range(inflated >> 20)]
        _BOMBS[inflated] = b"".join(parts) + squeezer.flush()
    return respond(200, _BOMBS[inflated], {"Content-Type": "text/html", "Content-Encoding": "gzip"})


def gzipped(body: bytes, content_type: str = "text/html; charset=utf-8") -> Route:
    return respond(200, gzip.compress(body), {"Content-Type": content_type, "Content-Encoding": "gzip"})


def conditional(
    origin: Origin, body: bytes | str, etag: str | None = None, last_modified: str | None = None, honour: bool = True
) -> Route:
    """A page with validators (ETag, Last-Modified) that answers a matching
    If-None-Match / If-Modified-Since with a bodiless 304, as RFC 9110 says
    (If-None-Match wins when both are sent); honour=False ignores them and always
    sends the page. Body bytes written are added to origin.bytes_sent."""
    data = body.encode("utf-8") if isinstance(body, str) else body

    def route(handler: BaseHTTPRequestHandler) -> None:
        validators = {name: value for name, value in (("ETag", etag), ("Last-Modified", last_modified)) if value}
        if honour and _not_modified(handler, etag, last_modified):
            _head(handler, 304, validators)
            return
        _head(handler, 200, {"Content-Type": "text/html; charset=utf-8", "Content-Length": str(len(data)), **validators})
        handler.wfile.write(data)
        with origin._lock:
            origin.bytes_sent += len(data)

    return route


def _not_modified(handler: BaseHTTPRequestHandler, etag: str | None, last_modified: str | None) -> bool:
    if_none_match = handler.headers.get("If-None-Match")
    if if_none_match is not None:  # weak comparison: W/"x" matches "x"
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return etag is not None and ("*" in tags or etag.removeprefix("W/") in tags)
    if_modified_since = handler.headers.get("If-Modified-Since")
    if if_modified_since is None or last_modified is None:
        return False
    try:
        return email.utils.parsedate_to_datetime(last_modified) <= email.utils.parsedate_to_datetime(if_modified_since)
    except (TypeError, ValueError):
        return False
