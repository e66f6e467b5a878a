"""The benchmark's origin: one asyncio process serving a workload from memory on
many loopback addresses (127.0.0.2 ...), all on one port.

    python -m bench.origin --workload mixed --sources 2000 --hosts 40 [--latency 0.1] [--tls DIR]

With `--tls DIR` it serves HTTPS with DIR/server.pem and DIR/server-key.pem (bench/tls.py
makes them, signed by a CA made for the run); without it, plain HTTP.

Prints `READY <port>` on stdout when listening. Every response (200 and 304
alike) waits `latency` seconds before its headers, without blocking others.
HTML is sent gzip-compressed when the client accepts gzip (a per-page deflate
prefix is precomputed; each source's own suffix is compressed on the fly from a
copy of the compressor state, so the CPU cost per response stays tiny). PDFs go
uncompressed. A matching If-None-Match gets a bodiless 304.

Control paths on any host: GET /__night/N (switch night), GET /__stats (JSON
counters: statuses, bytes, most requests in flight per host and overall, the
server's own CPU time since the last reset, and connection reuse: connections that
served a request, requests, and TLS handshakes, full or resumed, counted on each
connection's first request), GET /__reset (zero the counters). Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import socket
import ssl
import struct
import sys
import time
import zlib
from collections import Counter

from bench import workload

GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"


class Page:
    """A page's body, with the deflate state after it ready to be continued."""

    def __init__(self, body: bytes):
        self.body = body
        self.crc = zlib.crc32(body)
        compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.prefix = GZIP_HEADER + compressor.compress(body) + compressor.flush(zlib.Z_SYNC_FLUSH)
        self._compressor = compressor

    def gzipped(self, tail: bytes) -> bytes:
        compressor = self._compressor.copy()
        end = compressor.compress(tail) + compressor.flush()
        trailer = struct.pack("<II", zlib.crc32(tail, self.crc), (len(self.body) + len(tail)) & 0xFFFFFFFF)
        return self.prefix + end + trailer


class Origin:
    def __init__(self, sources: list[workload.Source], latency: float, marked: bool):
        self.sources = sources
        self.latency = latency
        self.marked = marked
        self.night = 1
        self.pages: dict[str, Page] = {}
        for source in sources:
            if source.doc.kind == "html" and source.doc.key not in self.pages:
                self.pages[source.doc.key] = Page(source.doc.body)
        self.reset()

    def reset(self) -> None:
        self.statuses: Counter[int] = Counter()
        self.bytes_sent = 0
        self.in_flight: Counter[str] = Counter()
        self.max_in_flight: Counter[str] = Counter()
        self.total_in_flight = 0
        self.max_total_in_flight = 0
        self.connections: Counter[str] = Counter()  # per host: connections that served a request
        self.requests: Counter[str] = Counter()
        self.handshakes: Counter[str] = Counter()  # "full" / "resumed" (TLS only)
        self.first_request_at: float | None = None  # time.monotonic() (the machine's clock, as the bench's)
        self.last_answer_at: float | None = None
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.cpu_at_reset = usage.ru_utime + usage.ru_stime

    def stats(self) -> dict:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "night": self.night,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "bytes_sent": self.bytes_sent,
            "max_in_flight_per_host": max(self.max_in_flight.values(), default=0),
            "max_in_flight": self.max_total_in_flight,
            "connections": sum(self.connections.values()),
            "max_connections_per_host": max(self.connections.values(), default=0),
            "requests": sum(self.requests.values()),
            "tls_full_handshakes": self.handshakes["full"],
            "tls_resumed_handshakes": self.handshakes["resumed"],
            "max_requests_per_host": max(self.requests.values(), default=0),
            "first_request_at": self.first_request_at,
            "last_answer_at": self.last_answer_at,
            "server_cpu_seconds_since_reset": round(usage.ru_utime + usage.ru_stime - self.cpu_at_reset, 3),
            "server_max_rss_mb": round(usage.ru_maxrss / 1024, 1),
        }

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host = writer.get_extra_info("sockname")[0]
        counted = False
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                parts = lines[0].split(" ")
                if len(parts) != 3:
                    return
                method, target, _ = parts
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                keep = headers.get("connection", "").lower() != "close"
                if not target.startswith("/__"):
                    self.requests[host] += 1
                    if self.first_request_at is None:
                        self.first_request_at = time.monotonic()
                    if not counted:
                        counted = True
                        self.count_connection(host, writer)
                await self.respond(writer, host, method, target, headers, keep)
                if not keep:
                    return
        except (ConnectionError, OSError):
            return
        finally:
            writer.close()

    def count_connection(self, host: str, writer: asyncio.StreamWriter) -> None:
        """A connection's first request (control calls are not counted)."""
        self.connections[host] += 1
        tls = writer.get_extra_info("ssl_object")
        if tls is not None:
            self.handshakes["resumed" if tls.session_reused else "full"] += 1

    async def respond(self, writer, host, method, target, headers, keep) -> None:
        path = target.split("?", 1)[0]
        if path.startswith("/__"):
            await self.control(writer, path)
            return
        self.in_flight[host] += 1
        self.total_in_flight += 1
        self.max_in_flight[host] = max(self.max_in_flight[host], self.in_flight[host])
        self.max_total_in_flight = max(self.max_total_in_flight, self.total_in_flight)
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            status, extra, body = self.answer(path, headers)
            self.statuses[status] += 1
            self.bytes_sent += len(body) if method != "HEAD" else 0
            reason = {200: "OK", 304: "Not Modified", 404: "Not Found"}[status]
            out = [f"HTTP/1.1 {status} {reason}"]
            out += [f"{k}: {v}" for k, v in extra.items()]
            if status != 304:
                out.append(f"Content-Length: {len(body)}")
            out.append("Connection: keep-alive" if keep else "Connection: close")
            writer.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1"))
            if method != "HEAD" and status != 304:
                writer.write(body)
            await writer.drain()
            self.last_answer_at = time.monotonic()
        finally:
            self.in_flight[host] -= 1
            self.total_in_flight -= 1

    def answer(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        try:
            index = int(path.removeprefix("/s/"))
            source = self.sources[index]
        except (ValueError, IndexError):
            return 404, {"Content-Type": "text/html"}, b"<html><body><h1>Not Found</h1></body></html>"
        extra = {"Content-Type": workload.content_type(source.doc)}
        tag = workload.etag(source, self.night)
        if tag:
            extra["ETag"] = tag
            wanted = headers.get("if-none-match")
            if wanted is not None and tag in {t.strip().removeprefix("W/") for t in wanted.split(",")}:
                return 304, extra, b""
        tail = workload.suffix(source, self.night, self.marked)
        if source.doc.kind == "html" and "gzip" in headers.get("accept-encoding", ""):
            extra["Content-Encoding"] = "gzip"
            return 200, extra, self.pages[source.doc.key].gzipped(tail)
        return 200, extra, source.doc.body + tail

    async def control(self, writer, path: str) -> None:
        if path.startswith("/__night/"):
            self.night = int(path.removeprefix("/__night/"))
        elif path == "/__reset":
            self.reset()
        body = json.dumps(self.stats()).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\nConnection: keep-alive\r\n\r\n" + body)
        await writer.drain()


def listen(ips: list[str]) -> tuple[int, list[socket.socket]]:
    """One listening socket per address, all on the same free port. Made as TCP
    sockets (IPPROTO_TCP, as asyncio.start_server(host, port) makes them): asyncio
    sets TCP_NODELAY only on connections of such a socket, and without it an
    answer's body, written after its head, waited for the client's delayed ACK
    (40 ms) behind Nagle's algorithm, which HTTP servers turn off."""
    for _ in range(50):
        first = tcp_socket()
        first.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        first.bind((ips[0], 0))
        port = first.getsockname()[1]
        sockets = [first]
        try:
            for ip in ips[1:]:
                sock = tcp_socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((ip, port))
                sockets.append(sock)
        except OSError:
            for sock in sockets:
                sock.close()
            continue
        for sock in sockets:
            sock.listen(1024)
            sock.setblocking(False)
        return port, sockets
    raise RuntimeError("no common free port on the loopback addresses")


def tcp_socket() -> socket.socket:
    return socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)


async def serve(args: argparse.Namespace) -> None:
    corpus = workload.load_corpus()
    sources = workload.build(args.workload, corpus, args.sources, args.hosts)
    origin = Origin(sources, args.latency, marked=args.workload != "quality")
    ips = workload.host_ips(args.hosts)
    assert all(ip.startswith("127.") for ip in ips)  # loopback only, always
    port, sockets = listen(ips)
    tls = None
    if args.tls:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(f"{args.tls}/server.pem", f"{args.tls}/server-key.pem")
    servers = [await asyncio.start_server(origin.handle, sock=sock, limit=1 << 16, ssl=tls) for sock in sockets]
    print(f"READY {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(sys.stdin.fileno(), stop.set)  # parent closes our stdin (or dies): stop
    deadline = time.monotonic() + args.max_seconds
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            await asyncio.wait_for(stop.wait(), timeout=1.0)
        except TimeoutError:
            pass
    for server in servers:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="mixed", choices=("mixed", "quality"))
    parser.add_argument("--sources", type=int, default=2000)
    parser.add_argument("--hosts", type=int, default=40)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--tls", default=None, help="serve HTTPS with DIR/server.pem and DIR/server-key.pem")
    parser.add_argument("--max-seconds", type=float, default=3 * 3600, help="stop by itself after this long")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
