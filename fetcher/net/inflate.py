"""Undoing a Content-Encoding within a byte cap: a gzip bomb stops at the cap."""

from __future__ import annotations

import zlib


class OverCap(Exception):
    """The body went past the byte cap."""


class Incomplete(Exception):
    """The body ended before its encoding said it would."""


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
        self.within_cap = b""  # when OverCap is raised: the part of the last output that still fit
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
            raise OverCap()
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
            raise Incomplete("compressed body ended early")
        return self._take(self._inflate.flush())

    def gzip_file(self) -> bytes | None:
        """The raw bytes when they were exactly one complete gzip member, i.e. a
        valid .gz file of the body; None for any other encoding or shape."""
        if not self._gzip or self._inflate is None or not self._inflate.eof or self._members != 1 or self._tail:
            return None
        return b"".join(self._raw)

    def _take(self, data: bytes) -> bytes:
        if len(data) > self._room:
            self.within_cap, self._room = data[: self._room], -1
            raise OverCap()
        self._room -= len(data)
        return data
