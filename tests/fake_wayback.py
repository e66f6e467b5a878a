"""A fake of the Internet Archive's Wayback Machine, written to its documented
formats, on a loopback address:

- CDX API `/cdx/search/cdx`: `output=json` gives an array of arrays, header row
  first, every value a string; `[]` when nothing matches; `filter=statuscode:N`,
  `closest=` with `sort=closest`, and `limit` honoured.
- Replay `/web/{timestamp}id_/{url}`: the capture's original bytes. A timestamp
  that is not exactly a capture is redirected (302, relative Location) to the
  nearest one, as IA does. Answers carry `Memento-Datetime` and the original
  headers as `X-Archive-Orig-*`. Without `id_`, the toolbar page (never content).
- Save Page Now `/save/{url}`.
- Failures on demand: the next N requests to a prefix answer a status (429 with
  Retry-After, 5xx).
"""

from __future__ import annotations

import email.utils
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from tests.origin import QuietServer

TOOLBAR = (
    "<html><head><title>Wayback Machine</title></head><body><!-- BEGIN WAYBACK TOOLBAR INSERT -->"
    '<div id="wm-ipp-base">About this capture COLLECTED BY Collection: Save Page Now Outlinks TIMESTAMPS</div>'
    "<!-- END WAYBACK TOOLBAR INSERT --><iframe src='{raw}'></iframe></body></html>"
)


@dataclass
class Archived:
    timestamp: str
    status: int
    mime: str
    body: bytes


@dataclass(frozen=True)
class Hit:
    kind: str  # "cdx", "replay", "toolbar", "save"
    path: str
    at: float  # the clock given to the fake (so tests can count per minute in fake time)


class FakeWayback:
    def __init__(self, ip: str = "127.0.0.1", clock: Callable[[], float] = time.monotonic, honour_filter: bool = True):
        self.ip = ip
        self.clock = clock
        self.honour_filter = honour_filter
        self.captures: dict[str, list[Archived]] = {}
        self.hits: list[Hit] = []
        self.replay_chrome = False  # misbehave: serve the toolbar page even in id_ mode
        self._failures: list[list] = []  # [prefix, status, remaining, headers]
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                fake._serve(self)

            def log_message(self, *args: object) -> None:
                pass

        self._server = QuietServer((ip, 0), Handler)
        self.port = self._server.server_address[1]
        self.base = f"http://{ip}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> FakeWayback:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def settings(self) -> dict[str, object]:
        """The [archive] endpoints that point at this fake."""
        return {
            "name": "Wayback Machine",
            "cdx_url": f"{self.base}/cdx/search/cdx",
            "replay_url": f"{self.base}/web",
            "save_url": f"{self.base}/save",
        }

    def add(self, url: str, timestamp: str, body: bytes, status: int = 200, mime: str = "text/html") -> None:
        self.captures.setdefault(url, []).append(Archived(timestamp, status, mime, body))

    def fail(self, prefix: str, status: int, times: int, **headers: str) -> None:
        self._failures.append([prefix, status, times, {k.replace("_", "-"): v for k, v in headers.items()}])

    def count(self, kind: str) -> int:
        return sum(1 for hit in self.hits if hit.kind == kind)

    # -- serving -------------------------------------------------------------

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path
        kind = "cdx" if path.startswith("/cdx/") else "save" if path.startswith("/save/") else (
            "replay" if "id_/" in path else "toolbar")
        with self._lock:
            self.hits.append(Hit(kind, path, self.clock()))
            failure = next((f for f in self._failures if path.startswith(f[0]) and f[2] > 0), None)
            if failure:
                failure[2] -= 1
        if failure:
            return _send(handler, failure[1], b"<html><body>Slow down</body></html>", "text/html", failure[3])
        if kind == "cdx":
            return self._cdx(handler, parse_qs(urlsplit(path).query))
        if kind == "save":
            return _send(handler, 200, b"<html>Saving page now</html>", "text/html")
        return self._replay(handler, path, raw=kind == "replay")

    def _cdx(self, handler: BaseHTTPRequestHandler, query: dict[str, list[str]]) -> None:
        url = query["url"][0]
        rows = list(self.captures.get(url, []))
        for spec in query.get("filter", []) if self.honour_filter else []:
            field, _, wanted = spec.partition(":")
            if field == "statuscode":
                rows = [r for r in rows if str(r.status) == wanted]
        if "closest" in query:
            target = int(query["closest"][0].ljust(14, "0"))
            rows.sort(key=lambda r: abs(_seconds(r.timestamp) - _seconds(str(target))))
        rows = rows[: int(query.get("limit", ["1000"])[0])]
        header = ["urlkey", "timestamp", "original", "mimetype", "statuscode", "digest", "length"]
        table = [header] + [
            [_surt(url), r.timestamp, url, r.mime, str(r.status), "SHA1DIGEST", str(len(r.body))] for r in rows
        ]
        body = json.dumps(table if rows else []).encode()
        _send(handler, 200, body, "application/json")

    def _replay(self, handler: BaseHTTPRequestHandler, path: str, raw: bool) -> None:
        stamp, _, url = path[len("/web/"):].partition("/")
        stamp = stamp.removesuffix("id_")
        captures = self.captures.get(url, [])
        if not captures:
            return _send(handler, 404, b"<html>Wayback Machine has not archived that URL.</html>", "text/html")
        nearest = min(captures, key=lambda r: abs(_seconds(r.timestamp) - _seconds(stamp.ljust(14, "0"))))
        if nearest.timestamp != stamp:
            suffix = "id_" if raw else ""
            return _send(handler, 302, b"", "text/plain", {"Location": f"/web/{nearest.timestamp}{suffix}/{url}"})
        memento = email.utils.format_datetime(_datetime(nearest.timestamp), usegmt=True)
        headers = {
            "Memento-Datetime": memento,
            "X-Archive-Orig-content-type": nearest.mime,
            "X-Archive-Orig-date": memento,
            "Link": f'<{url}>; rel="original"',
        }
        if not raw or self.replay_chrome:
            toolbar = TOOLBAR.format(raw=f"/web/{nearest.timestamp}id_/{url}").encode()
            return _send(handler, 200, toolbar, "text/html; charset=utf-8", headers)
        _send(handler, nearest.status, nearest.body, nearest.mime, headers)


def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes, mime: str, headers: dict | None = None) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", mime)
    handler.send_header("Content-Length", str(len(body)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


def _datetime(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)


def _seconds(stamp: str) -> float:
    return _datetime(stamp).timestamp()


def _surt(url: str) -> str:
    parts = urlsplit(url)
    host = ",".join(reversed((parts.hostname or "").split(".")))
    return f"{host}){parts.path or '/'}"
