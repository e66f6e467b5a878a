"""A throwaway PostgreSQL cluster for the tests: Debian's `postgresql` package,
`initdb` into a temporary directory, the server on 127.0.0.1 at a free port and
on a Unix socket in that directory, `trust` authentication for loopback only.
Stopped (and its directory removed) at the end of the test session.

`.ci/run` installs the package when it is missing. Elsewhere, without it, the
tests that need PostgreSQL skip with a message; under CI (CI=true) they fail.

As root (as CI runs), the server runs as the `postgres` user the package made:
PostgreSQL refuses to run as root."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


def _binaries() -> Path | None:
    """The newest installed PostgreSQL's bin directory (Debian keeps them off PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("postgres")
    return Path(on_path).parent if on_path else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Cluster:
    """A running throwaway cluster; `database()` makes a fresh, empty database."""

    directory: Path
    port: int

    def url(self, name: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def database(self) -> str:
        """A new empty database's URL: each test gets its own."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _as_postgres() -> list[str]:
    """The prefix that runs a command as the `postgres` user when we are root."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]


def start_cluster() -> Iterator[Cluster]:
    """Make, start, yield, stop and remove a cluster (see the module docstring)."""
    binaries = _binaries()
    if binaries is None:
        message = "PostgreSQL is not installed (apt-get install postgresql)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    directory = Path(tempfile.mkdtemp(prefix="fetcher-pg-"))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    data, port = directory / "data", _free_port()
    prefix = _as_postgres()
    subprocess.run(
        [*prefix, str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
         "--encoding=UTF8", "--locale=C", "--no-sync"],
        check=True, capture_output=True,
    )
    options = (f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={directory}"
               " -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
    subprocess.run(
        [*prefix, str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(directory / "log"),
         "-w", "-t", "60", "start"],
        check=True, capture_output=True,
    )
    try:
        yield Cluster(directory, port)
    finally:
        subprocess.run([*prefix, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True)
        shutil.rmtree(directory, ignore_errors=True)
