"""How long a person waits for the commands they type: the median wall time of
`fetcher --help`, `fetcher show ID` on a one-source store, and a one-off
`fetcher fetch URL` of one page served on loopback, each started RUNS times
(after one run not counted) as a fresh process, the way a shell starts it.

    python -m bench.startup [--runs 10] [--code DIR]...

--code DIR times the fetcher package found in DIR instead of this one; given
twice (before and after a change), both are timed in turns. Not a test: nothing fails; the aims
(<= 0.25 s for --help and show, <= 0.6 s for fetch) are reported as met or not.
The page's body changes on every request, so each fetch downloads, extracts and
stores it in full (no 304, no same-content shortcut). The generated config
sets per_host_delay = 0, so the fetch's time is not its politeness waits (1 s
by default before each further request to the host: robots.txt, the page, the
soft-404 probe); the archive is off, so nothing leaves loopback.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AIMS = {"--help": 0.25, "show": 0.25, "fetch": 0.6}
CONFIG = (  # the archive off: nothing leaves loopback
    '[storage]\ndir = "snapshots"\n\n[fetch]\nallow_private_networks = true\n'
    "per_host_delay = 0  # no politeness wait between robots.txt, the page and its soft-404 probe\n\n"
    "[archive]\nenabled = false\n"
)
WORDS = "A paragraph of plain words that a reader came to this page to read. " * 12


class _Page(BaseHTTPRequestHandler):
    """/page: an article whose body differs on every request; anything else 404."""

    served = itertools.count(1)

    def do_GET(self) -> None:
        if self.path != "/page":
            self.send_error(404)
            return
        paragraphs = "".join(f"<p>{WORDS}</p>" for _ in range(8))
        body = (
            f"<!doctype html><html><head><title>Bench page {next(self.served)}</title></head>"
            f"<body><article><h1>Bench page</h1>{paragraphs}</article></body></html>"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def _origin() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/page"
    finally:
        server.shutdown()
        server.server_close()


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Wall seconds of one run of `command`, which must succeed."""
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command[2:])} exited {result.returncode}: {result.stderr.strip()}")
    return elapsed


def _prepare(directory: Path, code: Path, url: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    """A config and a store holding the page, in `directory`: the environment
    that runs `code`'s fetcher, and the three commands to time."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    directory.mkdir()
    (directory / "config.toml").write_text(CONFIG, encoding="utf-8")
    fetcher = [sys.executable, "-m", "fetcher"]
    first = subprocess.run([*fetcher, "fetch", url], cwd=directory, env=env, capture_output=True, text=True)
    if "Resource ID:" not in first.stdout:
        raise SystemExit(f"the first fetch with {code} failed: {first.stderr.strip()}")
    resource = first.stdout.rsplit("Resource ID:", 1)[-1].split()[0]
    return env, {"--help": [*fetcher, "--help"], "show": [*fetcher, "show", resource], "fetch": [*fetcher, "fetch", url]}


def measure(codes: list[Path], runs: int) -> dict[Path, dict[str, list[float]]]:
    """Each command of each checkout, `runs` times after one uncounted round;
    taken in turns (every command of every checkout once a round), so a machine
    that slows down or speeds up meanwhile weighs on all figures alike."""
    times: dict[Path, dict[str, list[float]]] = {code: {name: [] for name in AIMS} for code in codes}
    with tempfile.TemporaryDirectory(prefix="fetcher-startup-") as work, _origin() as url:
        setups = {code: _prepare(Path(work) / str(number), code, url) for number, code in enumerate(codes)}
        for round_ in range(runs + 1):
            for code, (env, commands) in setups.items():
                for name, command in commands.items():
                    elapsed = _run(command, Path(work) / str(codes.index(code)), env)
                    if round_:
                        times[code][name].append(elapsed)
    return times


def report(figures: dict[Path, dict[str, list[float]]], runs: int) -> str:
    lines = [
        f"fetcher start-up: wall seconds, {runs} runs each, {os.cpu_count()} cores, Python {sys.version.split()[0]}",
        "",
        "| code | command | median | min | max | aim | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for code, commands in figures.items():
        for name, times in commands.items():
            median = statistics.median(times)
            met = "yes" if median <= AIMS[name] else "no"
            lines.append(
                f"| {code} | `fetcher {name}` | {median:.3f} | {min(times):.3f} | {max(times):.3f} | {AIMS[name]} | {met} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs per command (default 10)")
    parser.add_argument(
        "--code", type=Path, action="append", help="a checkout whose fetcher is timed (repeatable; default: this one)"
    )
    arguments = parser.parse_args(argv)
    codes = [code.resolve() for code in arguments.code or [ROOT]]
    print(report(measure(codes, arguments.runs), arguments.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
