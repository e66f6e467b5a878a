"""What rendering costs: one rendered page (wall, CPU, peak memory (PSS) of the browser's
process tree), and a run of N sources of which 5% need rendering against the
same run with those 5% served as ordinary static pages.

    python -m bench.render [--sources 400] [--share 0.05] [--pages 5]

Everything is served on loopback (127.0.0.10 … 127.0.0.29, one origin thread
each; private networks allowed in the generated config, archive off). Each
measurement is a fresh Pipeline over a fresh store, extraction in worker
processes as in a real run. CPU is this process's and its reaped children's
(extraction workers, the Playwright driver and, through it, Chromium); memory (PSS) is
sampled every 50 ms over the browser's processes (fetcher/net/proctree.py).
One run of each: figures are medians where there are several pages. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from fetcher.core.config import load_config
from fetcher.core.sources import make_source
from fetcher.net.proctree import browser_pids, resident_bytes
from fetcher.run.pipeline import Pipeline
from fetcher.store.sqlite import Store

HOSTS = [f"127.0.0.{n}" for n in range(10, 30)]
RENDER_CONCURRENCY = 2  # --render-concurrency
PARA = ("The regional authority published its {n}th monitoring report on water quality, covering nitrate, "
        "phosphate and heavy metals in the northern basin, with figures for each of the {n} measuring stations. ")
APP_JS = ("fetch('/api/' + location.pathname.split('/').pop() + '.json').then(r => r.json()).then(a => {"
          "document.getElementById('root').innerHTML = '<article><h1>' + a.title + '</h1>' +"
          " a.paras.map(p => '<p>' + p + '</p>').join('') + '</article>'; });")


def article(n: int) -> dict[str, object]:
    return {"title": f"Report {n}", "paras": [PARA.format(n=n + k) for k in range(6)]}


def static_page(n: int) -> bytes:
    body = "".join(f"<p>{p}</p>" for p in article(n)["paras"])  # type: ignore[union-attr]
    return f"<html><head><title>Report {n}</title></head><body><article><h1>Report {n}</h1>{body}</article></body></html>".encode()


def app_page(n: int) -> bytes:
    return (f'<html><head><title>Portal</title></head><body><nav><a href="/">Home</a></nav><div id="root"></div>'
            f'<noscript>You need to enable JavaScript to run this app.</noscript><script src="/app.js"></script>'
            f"</body></html>").encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802
        path = self.path
        if path == "/app.js":
            body, kind = APP_JS.encode(), "text/javascript"
        elif path.startswith("/api/"):
            body, kind = json.dumps(article(int(path[5:].split(".")[0]))).encode(), "application/json"
        elif path.startswith("/app/"):
            body, kind = app_page(int(path[5:])), "text/html; charset=utf-8"
        elif path.startswith("/page/"):
            body, kind = static_page(int(path[6:])), "text/html; charset=utf-8"
        else:
            body, kind = b"not found", "text/plain"
            self.send_response(404)
        if kind != "text/plain":
            self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that drops a kept-alive connection is not news


@contextmanager
def origins() -> Iterator[list[int]]:
    servers = [QuietServer((host, 0), Handler) for host in HOSTS]
    for server in servers:
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield [server.server_address[1] for server in servers]
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


class PeakMemory:
    """Samples the browser tree's resident memory in a thread."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, resident_bytes(browser_pids()))

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run(urls: list[str], work: Path, name: str) -> dict[str, float]:
    """One refresh of `urls` over a fresh store: wall, CPU, browser peak PSS, per-page wall times."""
    directory = work / name
    directory.mkdir()
    lines = ["[storage]", 'dir = "snapshots"', "[fetch]", "allow_private_networks = true", "per_host_delay = 0",
             "[archive]", "enabled = false", "[render]", f"concurrency = {RENDER_CONCURRENCY}"] + [f"[[sources]]\nurl = {json.dumps(url)}" for url in urls]
    (directory / "config.toml").write_text("\n".join(lines) + "\n")
    config = load_config(directory / "config.toml")
    store = Store(config.storage_dir)
    rendered: list[float] = []

    async def go() -> None:
        async with Pipeline(config, store) as pipeline:
            snaps = []
            await pipeline.refresh(config.sources, on_done=snaps.append)
        bad = [s for s in snaps if s.outcome.value != "ok"]
        assert not bad, [(s.url, s.outcome, s.detail) for s in bad[:3]]
        rendered.extend(s.elapsed_ms / 1000 for s in snaps if s.render and s.render.value == "rendered")

    began_cpu, began = cpu(), time.perf_counter()
    with PeakMemory() as rss:
        asyncio.run(go())
    wall, used = time.perf_counter() - began, cpu() - began_cpu
    store.close()
    return {"wall": wall, "cpu": used, "rss_mb": rss.peak / 2**20, "rendered": len(rendered),
            "page_median": statistics.median(rendered) if rendered else 0.0}


def one_page(ports: list[int], work: Path, pages: int) -> None:
    """Rendered pages fetched one at a time (the first starts the browser) against static ones."""
    for kind in ("app", "page"):
        url = f"http://{HOSTS[0]}:{ports[0]}/{kind}/1"
        first = run([url], work, f"one-{kind}")
        walls = []
        for n in range(pages):
            walls.append(run([f"http://{HOSTS[0]}:{ports[0]}/{kind}/{n + 2}"], work, f"one-{kind}-{n}"))
        print(f"one {'rendered' if kind == 'app' else 'static'} page (a fresh run each, browser start included): "
              f"wall {statistics.median(w['wall'] for w in walls):.2f} s median of {pages} "
              f"(first {first['wall']:.2f} s), CPU {statistics.median(w['cpu'] for w in walls):.2f} s, "
              f"browser peak PSS {max(w['rss_mb'] for w in walls):.0f} MB")
    one = run([f"http://{HOSTS[1]}:{ports[1]}/app/100"], work, "warm-1")
    many = run([f"http://{HOSTS[n % 10]}:{ports[n % 10]}/app/{200 + n}" for n in range(1 + 2 * pages)], work, "warm-n")
    print(f"each further rendered page in a running browser ([render] concurrency {RENDER_CONCURRENCY}): "
          f"wall {(many['wall'] - one['wall']) / (2 * pages):.2f} s, CPU {(many['cpu'] - one['cpu']) / (2 * pages):.2f} s "
          f"({1 + 2 * pages} pages: {many['wall']:.2f} s against 1: {one['wall']:.2f} s)")


def mixed(ports: list[int], work: Path, sources: int, share: float) -> None:
    every = round(1 / share)

    def urls(with_apps: bool) -> list[str]:
        found = []
        for n in range(sources):
            host = n % len(HOSTS)
            kind = "app" if with_apps and n % every == 0 else "page"
            found.append(f"http://{HOSTS[host]}:{ports[host]}/{kind}/{n}")
        return found

    plain = run(urls(False), work, "mixed-static")
    apps = run(urls(True), work, "mixed-apps")
    print(f"{sources} sources, static only: wall {plain['wall']:.1f} s, CPU {plain['cpu']:.1f} s")
    print(f"{sources} sources, {apps['rendered']:.0f} rendered: wall {apps['wall']:.1f} s, CPU {apps['cpu']:.1f} s, "
          f"browser peak PSS {apps['rss_mb']:.0f} MB, a rendered source's median elapsed {apps['page_median']:.2f} s")
    print(f"ratio: wall {apps['wall'] / plain['wall']:.2f}x, CPU {apps['cpu'] / plain['cpu']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=int, default=400)
    parser.add_argument("--share", type=float, default=0.05)
    parser.add_argument("--pages", type=int, default=5)
    parser.add_argument("--render-concurrency", type=int, default=2)
    args = parser.parse_args()
    global RENDER_CONCURRENCY
    RENDER_CONCURRENCY = args.render_concurrency
    make_source(f"http://{HOSTS[0]}/")  # the URLs are valid
    with tempfile.TemporaryDirectory() as tmp, origins() as ports:
        one_page(ports, Path(tmp), args.pages)
        mixed(ports, Path(tmp), args.sources, args.share)


if __name__ == "__main__":
    main()
