"""A raw-socket server on a loopback address for behaviours an HTTP library
would not let a server have: garbage status lines, resets, headers that never
end, broken chunking, oversized headers, silence.

Each behaviour is a function given the connected socket (the request already
read) and writes whatever bytes it likes. Paths choose behaviours; the server
records every request path and when it arrived (time.monotonic()).
"""

from __future__ import annotations

import gzip
import socket
import struct
import threading
import time
from collections.abc import Callable

Behaviour = Callable[[socket.socket], None]
PAGE = (
    "<html><head><title>An ordinary report</title></head><body><article><h1>An ordinary report</h1>"
    + "".join(f"<p>Paragraph {n} of the report says something worth keeping about the subject.</p>" for n in range(12))
    + "</article></body></html>"
).encode()


class RawServer:
    def __init__(self, ip: str = "127.0.0.1"):
        self.ip = ip
        self.behaviours: dict[str, Behaviour] = {}
        self.requests: list[tuple[str, float]] = []
        self._listener = socket.create_server((ip, 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._lock = threading.Lock()

    def __enter__(self) -> RawServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._thread.join(timeout=2)
        self._listener.close()

    def url(self, path: str) -> str:
        return f"http://{self.ip}:{self.port}{path}"

    def route(self, path: str, behaviour: Behaviour) -> str:
        self.behaviours[path] = behaviour
        return self.url(path)

    def hits(self, path: str) -> int:
        return sum(1 for seen, _ in self.requests if seen == path)

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._handle, args=(connection,), daemon=True).start()

    def _handle(self, connection: socket.socket) -> None:
        with connection:
            connection.settimeout(10)
            try:
                head = _read_head(connection)
                if head is None:
                    return
                path = head.split(b" ", 2)[1].decode("latin-1")
                with self._lock:
                    self.requests.append((path, time.monotonic()))
                behaviour = self.behaviours.get(path) or self.behaviours.get(path.split("?")[0])
                (behaviour or answer(404, b"not here"))(connection)
            except OSError:
                pass


def _read_head(connection: socket.socket) -> bytes | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            return None
        data += chunk
    return data


# -- behaviours ---------------------------------------------------------------------------


def raw(data: bytes) -> Behaviour:
    """Send these bytes, then close."""
    return lambda connection: connection.sendall(data)


def answer(status: int, body: bytes = b"", content_type: str = "text/html; charset=utf-8", **headers: str) -> Behaviour:
    lines = [f"HTTP/1.1 {status} X", f"Content-Type: {content_type}", f"Content-Length: {len(body)}",
             "Connection: close"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return raw(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)


def redirect_to(location: str, status: int = 302) -> Behaviour:
    head = f"HTTP/1.1 {status} Found\r\nContent-Length: 0\r\nConnection: close\r\nLocation: "
    return raw(head.encode() + location.encode("latin-1", "replace") + b"\r\n\r\n")


def close_at_once(connection: socket.socket) -> None:
    """Accept, read the request, say nothing, hang up."""


def reset(connection: socket.socket) -> None:
    """Hang up with a TCP RST (SO_LINGER 0) instead of a FIN."""
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def reset_mid_body(connection: socket.socket) -> None:
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 100000\r\n\r\n" + PAGE[:500])
    time.sleep(0.05)
    reset(connection)


def silent(seconds: float) -> Behaviour:
    """Read the request, then say nothing for `seconds`."""
    return lambda connection: time.sleep(seconds)


def trickle_headers(seconds: float) -> Behaviour:
    """A status line, then one header byte at a time: never a complete head in time."""

    def behave(connection: socket.socket) -> None:
        connection.sendall(b"HTTP/1.1 200 OK\r\n")
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            connection.sendall(b"X")
            time.sleep(0.05)

    return behave


def chunked(*chunks: bytes, content_type: str = "text/html; charset=utf-8") -> Behaviour:
    """A chunked body written exactly as given (so a test can break the framing)."""
    head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    return raw(head.encode() + b"".join(chunks))


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def close_delimited(body: bytes) -> Behaviour:
    """HTTP/1.0 style: no length, the body ends when the connection closes."""
    return raw(b"HTTP/1.0 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + body)


def gzip_garbage(connection: socket.socket) -> None:
    body = b"\x1f\x8b\x08\x00" + bytes(range(256)) * 4
    answer(200, body, Content_Encoding="gzip")(connection)


def gzip_cut(connection: socket.socket) -> None:
    body = gzip.compress(PAGE)[:-40]
    answer(200, body, Content_Encoding="gzip")(connection)
