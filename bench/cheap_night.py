"""What a night on which nothing changed costs: the CPU of `fetcher refresh`'s
main process per unchanged check, and the TCP connections each host accepted;
and what the first night costs the main process per source.

    python -m bench.cheap_night [--sources 400] [--hosts 10] [--latency 0.05] [--runs 3] [--code DIR]...

SOURCES pages over HOSTS loopback hosts (127.0.0.2 …, HTTP, one server thread
per connection, each answer held LATENCY seconds) with an ETag each. Each of
RUNS rounds, on a fresh store: a first `refresh --all` downloads and extracts
them all; a second is an all-304 night (every check a conditional GET answered
304, robots.txt a 404); a third `refresh` finds nothing due. Reported, as
medians over the rounds:

- CPU of the all-304 refresh (user + system, from the kernel's rusage of the
  child; an all-304 night starts no extraction process, so this is the main
  process), per check;
- the same less the `refresh` that finds nothing due (the start-up: imports,
  config, store, due computation, run record), per check: the cost of a check;
- wall seconds, and the most connections any one host accepted during the run
  (aim: <= per_host_concurrency, 2);
- the first night: the main process's own CPU per source (its RUSAGE_SELF, all
  its threads, written by the child as it exits: its extraction processes are
  not in it), the same less start-up, and the whole run's CPU per source with
  the extraction processes.

Not a test: nothing fails; the aims (<= 1.5 ms of CPU per check, <= 2
connections per host) are reported as met or not. Nothing leaves loopback:
the archive is off. --code DIR measures the fetcher package in DIR instead
(repeatable: the checkouts take turns round by round, in one call). A warm-up
night per checkout first fills the children's bytecode cache.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bench.measure import bytecode_cached

ROOT = Path(__file__).resolve().parent.parent
PER_HOST = 2
AIM_CPU_MS = 1.5
WORDS = "A paragraph of plain words that a reader came to this page to read. " * 12


class _Host(ThreadingHTTPServer):
    daemon_threads = True
    accepted = 0
    latency = 0.0

    def get_request(self):  # type: ignore[no-untyped-def]
        connection = super().get_request()
        self.accepted += 1
        return connection

    def handle_error(self, request, client_address):  # type: ignore[no-untyped-def]
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client closing a kept-alive connection
            super().handle_error(request, client_address)


class _Page(BaseHTTPRequestHandler):
    """/page/N: an article with ETag "vN", a 304 when asked If-None-Match it; else 404."""

    protocol_version = "HTTP/1.1"
    server: _Host

    def do_GET(self) -> None:  # noqa: N802
        time.sleep(self.server.latency)
        if not self.path.startswith("/page/"):
            self._send(404, b"<html><body>Not found</body></html>")
            return
        etag = f'"v{self.path.rsplit("/", 1)[1]}"'
        if self.headers.get("If-None-Match") == etag:
            self._send(304, b"", etag)
            return
        body = f"<!doctype html><html><head><title>Page {self.path}</title></head><body><article>"
        body += f"<h1>Page {self.path}</h1>" + f"<p>{WORDS}</p>" * 6 + "</article></body></html>"
        self._send(200, body.encode(), etag)

    def _send(self, status: int, body: bytes, etag: str | None = None) -> None:
        self.send_response(status)
        if etag:
            self.send_header("ETag", etag)
        if status != 304:
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def _hosts(count: int, latency: float) -> Iterator[list[_Host]]:
    with ExitStack() as stack:
        servers = []
        for number in range(count):
            server = _Host((f"127.0.0.{number + 2}", 0), _Page)
            server.latency = latency
            threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
            stack.callback(server.server_close)
            stack.callback(server.shutdown)
            servers.append(server)
        yield servers


def _config(directory: Path, servers: list[_Host], sources: int) -> None:
    lines = [
        '[storage]\ndir = "snapshots"\n', "[fetch]", "allow_private_networks = true", "per_host_delay = 0",
        f"per_host_concurrency = {PER_HOST}", f"concurrency = {PER_HOST * len(servers)}", "",
        "[archive]\nenabled = false\n",
    ]
    for number in range(sources):
        host, port = servers[number % len(servers)].server_address[:2]
        lines += ["[[sources]]", f'url = "http://{host}:{port}/page/{number}"', ""]
    directory.mkdir(parents=True)
    (directory / "config.toml").write_text("\n".join(lines), encoding="utf-8")


# Runs `python -m fetcher ARGS…` and, as it exits, writes the process's own rusage (user +
# system of all its threads, not of its extraction children) to the file named by argv[1].
_SELF_CPU = (
    "import atexit, resource, runpy, sys\n"
    "out = sys.argv.pop(1)\n"
    "def note():\n"
    "    usage = resource.getrusage(resource.RUSAGE_SELF)\n"
    "    open(out, 'w').write(repr(usage.ru_utime + usage.ru_stime))\n"
    "atexit.register(note)\n"
    "sys.argv[0] = 'fetcher'\n"
    "runpy.run_module('fetcher', run_name='__main__', alter_sys=True)\n"
)


def _refresh(directory: Path, code: Path, *arguments: str) -> tuple[float, float, float, dict]:
    """CPU seconds of the whole refresh (the kernel's rusage of the child and its
    extraction processes), CPU seconds of its main process alone (its own
    RUSAGE_SELF, written as it exits), wall seconds, and its JSON summary.
    Python's bytecode cache is on (measure.bytecode_cached), as for an installed fetcher, even
    where PYTHONDONTWRITEBYTECODE is set: else every run compiles fetcher's sources again."""
    env = bytecode_cached({**os.environ, "PYTHONPATH": str(code)})
    own = directory.parent / "main-cpu"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", _SELF_CPU, str(own), "refresh", "--json", *arguments],
        cwd=directory, env=env, capture_output=True, text=True, timeout=600,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"refresh exited {result.returncode}: {result.stderr.strip()[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, float(own.read_text()), wall, json.loads(result.stdout)


def measure(codes: list[Path], sources: int, hosts: int, latency: float, runs: int) -> dict[Path, dict[str, float]]:
    """Per checkout: the all-304 figures, and the first night's (every source new,
    its body extracted): its main process's CPU per source, and the whole run's.
    The checkouts take turns, run by run, so a change in the machine's load
    falls on them alike."""
    seen: dict[Path, dict[str, list[float]]] = {code: collections.defaultdict(list) for code in codes}
    with _hosts(hosts, latency) as servers, tempfile.TemporaryDirectory(prefix="fetcher-cheap-night-") as base:
        for number, code in enumerate(codes):  # fills the bytecode cache; not measured
            _config(Path(base) / f"warm-up-{number}", servers, min(sources, 20))
            _refresh(Path(base) / f"warm-up-{number}", code, "--all")
        for run in range(runs):
            for number, code in enumerate(codes):
                _night(seen[code], Path(base) / f"run-{run}-{number}", code, servers, sources)
    return {code: _figures(lists, sources) for code, lists in seen.items()}


def _night(seen: dict[str, list[float]], directory: Path, code: Path, servers: list[_Host], sources: int) -> None:
    """A first night on a fresh store, then an all-304 night and a nothing-due refresh on it."""
    _config(directory, servers, sources)
    total, main, wall, _ = _refresh(directory, code, "--all")
    seen["first_main"].append(main), seen["first_total"].append(total), seen["first_wall"].append(wall)
    accepted = [server.accepted for server in servers]
    cpu, _main, wall, summary = _refresh(directory, code, "--all")
    if summary["unchanged"] != sources:
        raise SystemExit(f"expected {sources} unchanged checks, got {summary}")
    seen["cpu"].append(cpu), seen["wall"].append(wall)
    seen["connections"].append(max(server.accepted - was for server, was in zip(servers, accepted)))
    seen["idle"].append(_refresh(directory, code)[0])  # nothing is due: start-up and bookkeeping only
    shutil.rmtree(directory)


def _figures(seen: dict[str, list[float]], sources: int) -> dict[str, float]:
    median = {name: statistics.median(values) for name, values in seen.items()}
    cpu, start, first = median["cpu"], median["idle"], median["first_main"]
    return {
        "cpu_ms_per_check": cpu / sources * 1000,
        "cpu_ms_per_check_less_startup": (cpu - start) / sources * 1000,
        "startup_cpu_s": start,
        "wall_s": median["wall"],
        "connections_per_host": max(seen["connections"]),
        "first_main_ms_per_source": first / sources * 1000,
        "first_main_ms_less_startup": (first - start) / sources * 1000,
        "first_total_ms_per_source": median["first_total"] / sources * 1000,
        "first_wall_s": median["first_wall"],
    }


def report(figures: dict[Path, dict[str, float]], sources: int, hosts: int, latency: float, runs: int) -> str:
    lines = [
        f"all-304 night: {sources} sources over {hosts} hosts, {latency * 1000:g} ms per answer, "
        f"medians of {runs} runs, {os.cpu_count()} cores, Python {sys.version.split()[0]}",
        "",
        "| code | CPU ms / check | less start-up | start-up CPU s | wall s | connections / host (max) | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for code, f in figures.items():
        met = "yes" if f["cpu_ms_per_check_less_startup"] <= AIM_CPU_MS and f["connections_per_host"] <= PER_HOST else "no"
        lines.append(
            f"| {code} | {f['cpu_ms_per_check']:.2f} | {f['cpu_ms_per_check_less_startup']:.2f} | "
            f"{f['startup_cpu_s']:.2f} | {f['wall_s']:.2f} | {f['connections_per_host']:.0f} | {met} |"
        )
    lines += [
        "",
        f"first night (every page new and extracted), medians of {runs} runs on fresh stores:",
        "",
        "| code | main process CPU ms / source | less start-up | whole run (with extraction) CPU ms / source | wall s |",
        "|---|---|---|---|---|",
    ]
    for code, f in figures.items():
        lines.append(
            f"| {code} | {f['first_main_ms_per_source']:.2f} | {f['first_main_ms_less_startup']:.2f} | "
            f"{f['first_total_ms_per_source']:.2f} | {f['first_wall_s']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cheap_night", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=int, default=400)
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds each answer is held (default 0.05)")
    parser.add_argument("--runs", type=int, default=3, help="all-304 nights measured (default 3)")
    parser.add_argument("--code", type=Path, action="append", help="a checkout whose fetcher is measured (repeatable)")
    a = parser.parse_args(argv)
    codes = [code.resolve() for code in a.code or [ROOT]]
    figures = measure(codes, a.sources, a.hosts, a.latency, a.runs)
    print(report(figures, a.sources, a.hosts, a.latency, a.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
