"""The same commands give the same answers on SQLite and on PostgreSQL, and a
store copied SQLite -> PostgreSQL -> SQLite reads exactly as the original."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import psycopg
from click.testing import CliRunner

from fetcher.cli.main import cli
from fetcher.core.sources import resource_id
from tests.conftest import fetcher_command, write_config
from tests.origin import html, sequence

PAGE = "<html><head><title>{0}</title></head><body><article><p>" + "Findings of report {0}, in words. " * 30
PAGE += "</p></article></body></html>"


def fetcher(config: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--config", str(config), *args])
    assert result.exit_code in (0, 1), (args, result.output)
    return result.output


def sources(origin) -> list[str]:
    return [
        origin.route("/ok", html(PAGE.format("one"))),
        origin.route("/changes", sequence(html(PAGE.format("two")), html(PAGE.format("two, revised")))),
        origin.route("/gone", sequence(html(PAGE.format("three")), html("gone", status=404))),
        origin.route("/never", html("nothing here", status=500)),
    ]


def folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def two_refreshes(config: Path, queued: bool = False) -> None:
    """Two runs of every source; `queued` (a PostgreSQL store): each queued for,
    and fetched by, a worker that stops when the queue is empty."""
    for _ in range(2):
        if queued:
            fetcher(config, "refresh", "--all", "--no-wait")
            fetcher(config, "worker", "--once")
        else:
            fetcher(config, "refresh", "--all")


def readings(config: Path, urls: list[str]) -> dict[str, str]:
    """What a user reads: each source's show and history, the audit and the export (JSON)."""
    audit = json.loads(fetcher(config, "audit", "--format", "json"))
    del audit["generated_at"]  # when the audit was made
    export = fetcher(config, "export")
    out = {"audit": json.dumps(audit, indent=1), "export": export, "export, source by source": by_source(export)}
    for url in urls:
        out[f"show {url}"] = fetcher(config, "show", url, "--format", "json")
        out[f"history {url}"] = fetcher(config, "history", resource_id(url), "--json")
    return out


def by_source(export: str) -> str:
    """An export's fetches source by source, each source's in the order they were
    made, without their ids: a run stores its sources in the order they finish."""
    fetches = sorted(json.loads(export), key=lambda fetch: (fetch["resource_id"], fetch["fetch_id"]))
    return json.dumps([{key: value for key, value in fetch.items() if key != "fetch_id"} for fetch in fetches], indent=1)


_MOMENT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?")
_ELAPSED = re.compile(r'"(elapsed_ms|age_days)": [^,}\n]+')
_FETCH_ID = re.compile(r'"fetch_id": \d+')


def timeless(text: str) -> str:
    """The output with the moments of fetching (which differ between two runs) blanked."""
    return _ELAPSED.sub(r'"\1": _', _MOMENT.sub("T", text))


def test_refresh_show_history_audit_export_and_fetch_read_the_same_on_both_backends(tmp_path, origin, pg_url):
    urls = sources(origin)
    on_sqlite = write_config(folder(tmp_path / "sqlite"), urls, retries=0, concurrency=1)
    two_refreshes(on_sqlite)
    assert sources(origin) == urls  # the same pages, answering from the start again
    on_postgresql = write_config(folder(tmp_path / "postgresql"), urls, retries=0, concurrency=1, database=pg_url)
    two_refreshes(on_postgresql, queued=True)
    assert not (tmp_path / "postgresql" / "snapshots" / "fetcher.sqlite3").exists()
    sqlite_reads, postgresql_reads = readings(on_sqlite, urls), readings(on_postgresql, urls)
    assert json.loads(sqlite_reads["audit"])  # something was read
    for name, text in sqlite_reads.items():  # fetch ids follow the order a run's fetches were stored in
        if name != "export":  # (one download at a time, but the next one starts while one is stored)
            assert _FETCH_ID.sub("", timeless(postgresql_reads[name])) == _FETCH_ID.sub("", timeless(text)), name
    fetched = [fetcher(config, "fetch", urls[0], "--json") for config in (on_sqlite, on_postgresql)]
    assert '"changed": false' in fetched[0] and timeless(fetched[1]) == timeless(fetched[0])


def test_a_store_copied_to_postgresql_and_back_reads_exactly_the_same(tmp_path, origin, pg_url):
    urls = sources(origin)
    original = write_config(folder(tmp_path / "original"), urls, retries=0)
    two_refreshes(original)
    before = readings(original, urls)

    copied = fetcher(original, "store", "copy", "--to", pg_url)
    assert "counts checked" in copied and "fetches 8" in copied
    again = fetcher(original, "store", "copy", "--to", pg_url)  # as after an interruption: nothing new
    assert "counts checked" in again and "(0 written)" in again
    on_postgresql = write_config(folder(tmp_path / "postgresql"), urls, retries=0, concurrency=1, database=pg_url)
    assert readings(on_postgresql, urls) == before

    back = tmp_path / "back"
    assert "counts checked" in fetcher(on_postgresql, "store", "copy", "--to", str(back / "snapshots"))
    returned = write_config(folder(back), urls, retries=0)
    assert readings(returned, urls) == before
    assert sorted(p.name for p in (back / "snapshots" / "bodies").rglob("*.gz")) == \
        sorted(p.name for p in (tmp_path / "original" / "snapshots" / "bodies").rglob("*.gz"))


def test_a_copy_killed_in_the_middle_completes_when_run_again(tmp_path, origin, pg_url):
    """`store copy` SIGKILLed in the middle, its connection gone with it (its first
    write to `fetches` waiting on a lock this test holds): what it committed
    stays, nothing half-written shows, and the same command run again completes
    the copy."""
    urls = sources(origin)
    original = write_config(folder(tmp_path / "original"), urls, retries=0)
    two_refreshes(original)
    before = readings(original, urls)
    on_postgresql = write_config(folder(tmp_path / "postgresql"), urls, retries=0, concurrency=1, database=pg_url)
    fetcher(on_postgresql, "store", "migrate")

    with psycopg.connect(pg_url) as holder:
        holder.execute("LOCK TABLE fetches IN SHARE MODE")  # reads go on; the copy's insert waits
        copying = subprocess.Popen(fetcher_command() + ["--config", str(original), "store", "copy", "--to", pg_url],
                                   cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            while not holder.execute("SELECT count(*) FROM pg_locks WHERE relation = 'fetches'::regclass"
                                     " AND NOT granted").fetchone()[0]:
                assert copying.poll() is None and time.monotonic() < deadline, copying.stderr.read()
                time.sleep(0.05)
        finally:
            copying.kill()
            copying.wait()
        # Its connection goes with it (the batch it sent, COMMIT included, waits for the lock on the server).
        holder.execute("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE relation = 'fetches'::regclass"
                       " AND NOT granted")
        holder.rollback()
    with psycopg.connect(pg_url) as db:
        left = {table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                for table in ("bodies", "resources", "contents", "fetches", "health")}
    assert left["bodies"] > 0 and left["resources"] == 4 and left["contents"] > 0
    assert left["fetches"] == left["health"] == 0  # killed in the middle: the rest never came

    again = fetcher(original, "store", "copy", "--to", pg_url)
    assert "counts checked" in again and "fetches 8" in again
    assert readings(on_postgresql, urls) == before


def test_writers_on_many_connections_never_interleave_one_sources_health(pg_url, tmp_path):
    """Four stores (as four workers would hold) record 25 failures each of one
    source at once: each transaction reads the health and writes the next under
    the source's lock, so the count of failures in a row is all 100 of them."""
    import threading
    from dataclasses import replace
    from datetime import datetime, timedelta, timezone

    from fetcher.core.config import load_config
    from fetcher.core.models import Download, FetchResult
    from fetcher.core.outcomes import Outcome
    from fetcher.core.sources import make_source
    from fetcher.run.storing import store_result
    from fetcher.store.opening import open_store

    config = replace(load_config(write_config(tmp_path)), database=pg_url)
    source, start = make_source("https://example.org/report"), datetime(2026, 1, 1, tzinfo=timezone.utc)
    stores = [open_store(config) for _ in range(4)]

    def worker(number: int) -> None:
        for n in range(25):
            when = start + timedelta(seconds=number * 100 + n)
            download = Download(source.url, Outcome.HTTP_5XX, source.url, 500, "text/html")
            store_result(stores[number], FetchResult(source, when, "live", download, 1, live_status=500,
                                                     live_outcome=Outcome.HTTP_5XX))

    threads = [threading.Thread(target=worker, args=(number,)) for number in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert stores[0].health(source.resource_id).failures_in_a_row == 100
    assert len(stores[0].history(source.resource_id)) == 100
    for store in stores:
        store.close()


def test_a_database_that_cannot_be_reached_is_one_line_without_the_password(tmp_path):
    config = write_config(folder(tmp_path), ["https://example.org/a"], database="postgresql://kb:s3cret@127.0.0.1:9/kb")
    for args in (("show", "https://example.org/a"), ("refresh",), ("store", "migrate")):
        result = CliRunner().invoke(cli, ["--config", str(config), "--log-level", "debug", *args])
        assert result.exit_code == 2, (args, result.output)
        lines = result.output.strip().splitlines()
        assert lines[-1].startswith("error: postgresql://kb:***@127.0.0.1:9/kb: cannot connect")
        assert "s3cret" not in result.output and "Traceback" not in result.output


def test_one_refresh_at_a_time_on_postgresql_too(tmp_path, origin, pg_url):
    """While another process's run holds the database's run lock, a refresh exits 3
    and fetches nothing; once it is released, the refresh runs."""
    from datetime import datetime, timezone

    from fetcher.core.config import load_config
    from fetcher.store.opening import open_store

    urls = sources(origin)
    config = write_config(folder(tmp_path), urls, retries=0, database=pg_url)
    holder = open_store(load_config(config))  # another process's connection, as far as the server knows
    lock = holder.run_lock()
    lock.acquire(datetime.now(timezone.utc), "refresh")
    result = CliRunner().invoke(cli, ["--config", str(config), "refresh"])
    assert result.exit_code == 3 and "another run holds" in result.output and "Traceback" not in result.output
    assert origin.requests == []
    lock.release()
    queued = CliRunner().invoke(cli, ["--config", str(config), "refresh", "--no-wait"])  # the workers fetch
    assert queued.exit_code == 0 and "queued: 4 sources" in queued.output, queued.output
    holder.close()


def test_a_database_lost_while_reading_is_one_line(tmp_path, origin, pg_url):
    """The server ends the reading command's connection (a restart, a failover): the
    command says so in one line, with no traceback and no password."""
    import psycopg

    from fetcher.core.config import load_config
    from fetcher.core.errors import StoreLost
    from fetcher.store.opening import open_existing

    config = write_config(tmp_path, sources(origin)[:1], database=pg_url, retries=0)
    fetcher(config, "refresh", "--no-wait")  # on PostgreSQL the run is queued, and a worker fetches it
    fetcher(config, "worker", "--once")
    store = open_existing(load_config(config))
    assert store is not None
    assert store.latest(resource_id(sources(origin)[0])) is not None
    with psycopg.connect(pg_url, autocommit=True) as admin:  # what a server restart does to it
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                      " WHERE datname = current_database() AND pid <> pg_backend_pid()")
    try:
        store.latest(resource_id(sources(origin)[0]))
    except StoreLost as error:
        assert "lost the connection to the database" in str(error) and "\n" not in str(error)
    else:
        raise AssertionError("a lost connection went unnoticed")
