"""The store keeps a dated history, one copy per distinct body, and survives bad input."""

from __future__ import annotations

import gzip
import hashlib
import sqlite3

import pytest

from fetcher.store.sqlite import Store, StoreError
from tests.conftest import run_fetcher, stored_body, write_config
from tests.origin import html, respond, sequence

ONE = "<html><body><article><p>" + "First version of the report text, with findings. " * 20 + "</p></article></body></html>"
TWO = ONE.replace("First version", "Second version")


def count(store: Store, table: str) -> int:
    return store._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def body_files(store: Store) -> list:
    return sorted(store.body_store.names())


@pytest.fixture
def run(run_on):
    """Each test here runs on SQLite and on PostgreSQL."""
    return run_on


def test_unchanged_body_records_a_check_without_a_second_copy(origin, run):
    url = origin.route("/r", html(ONE))
    r = run()
    first, second = r.fetch(url), r.fetch(url)
    assert first.changed and not second.changed
    assert first.sha256 == second.sha256
    assert count(r.store, "contents") == 1 and len(body_files(r.store)) == 1
    assert [s.fetch_id for s in r.store.history(first.resource_id)] == [second.fetch_id, first.fetch_id]


def test_changed_body_is_a_new_snapshot_and_history_is_kept(origin, run):
    url = origin.route("/r", sequence(html(ONE), html("gone", status=404), html(TWO)))
    r = run(retries=0)
    first, failed, third = r.fetch(url), r.fetch(url), r.fetch(url)
    assert (first.outcome, failed.outcome, third.outcome) == ("ok", "http-404", "ok")
    assert third.changed and "Second version" in third.text
    history = r.store.history(first.resource_id)
    assert [h.outcome for h in history] == ["ok", "http-404", "ok"]
    assert count(r.store, "contents") == 2 and len(body_files(r.store)) == 2


def test_latest_content_survives_a_later_failure(origin, run):
    url = origin.route("/r", sequence(html(ONE), html("gone", status=410)))
    r = run(retries=0)
    good = r.fetch(url)
    r.fetch(url)
    assert r.store.latest(good.resource_id).outcome == "http-410"
    assert r.store.latest_with_content(good.resource_id).fetch_id == good.fetch_id


def test_a_sources_title_is_the_last_one_given_and_a_fetch_without_one_keeps_it(origin, run):
    """A stored fetch of a source the store knows writes its row only for a new
    title (the check of a known source reads the title with its health)."""
    import asyncio

    from fetcher.core.sources import make_source
    from fetcher.run.pipeline import Pipeline

    url = origin.route("/r", html(ONE))
    r = run()

    def fetch_titled(title: str | None) -> list[tuple[object, ...]]:
        async def go() -> None:
            async with Pipeline(r.config, r.store, processes=False, sleep=r.sleep) as pipeline:
                await pipeline.fetch(make_source(url, title=title))

        asyncio.run(go())
        return [tuple(row) for row in r.store.database.execute("SELECT title FROM resources").fetchall()]

    assert fetch_titled(None) == [(None,)]
    assert fetch_titled("Old") == [("Old",)]
    assert fetch_titled("Old") == [("Old",)]
    assert fetch_titled("New") == [("New",)]
    assert fetch_titled(None) == [("New",)]
    assert count(r.store, "fetches") == 5


def test_raw_body_is_kept_compressed_and_matches_its_hash(origin, run):
    url = origin.route("/r", html(ONE))
    r = run()
    snap = r.fetch(url)
    stored = gzip.decompress(r.store.body(snap.sha256))
    assert stored == ONE.encode() and hashlib.sha256(stored).hexdigest() == snap.sha256
    assert stored_body(r.store, snap.sha256) == stored


def test_a_file_that_is_not_a_store_is_refused_and_left_alone(tmp_path):
    config = write_config(tmp_path, ["http://127.0.0.1:9/x"])
    (tmp_path / "snapshots").mkdir()
    bogus = tmp_path / "snapshots" / "fetcher.sqlite3"
    bogus.write_bytes(b"this is not a database, it is somebody's notes" * 20)
    before = bogus.read_bytes()
    with pytest.raises(StoreError):
        Store(tmp_path / "snapshots")
    done = run_fetcher(tmp_path, "--config", str(config), "refresh")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error:") and "Traceback" not in done.stderr
    assert bogus.read_bytes() == before


def test_a_store_from_a_newer_version_is_refused(tmp_path):
    Store(tmp_path).close()
    with sqlite3.connect(tmp_path / "fetcher.sqlite3") as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="newer"):
        Store(tmp_path)


def test_a_gzip_body_is_kept_exactly_as_the_server_compressed_it(origin, run):
    sent = gzip.compress(ONE.encode(), compresslevel=9, mtime=1234567890)
    url = origin.route("/gz", respond(200, sent, {"Content-Type": "text/html", "Content-Encoding": "gzip"}))
    plain = origin.route("/plain", html(TWO))
    r = run()
    snap = r.fetch(url)
    assert r.store.body(snap.sha256) == sent  # no second compression
    assert stored_body(r.store, snap.sha256) == ONE.encode() and hashlib.sha256(ONE.encode()).hexdigest() == snap.sha256
    other = r.fetch(plain)
    assert stored_body(r.store, other.sha256) == TWO.encode()


def test_a_text_with_a_nul_character_is_stored(run):
    """PostgreSQL's text cannot hold U+0000: there it becomes U+FFFD; the fetch is stored either way."""
    from datetime import datetime, timezone

    from fetcher.core.models import Download, Extracted, FetchResult
    from fetcher.core.outcomes import Outcome
    from fetcher.core.sources import make_source
    from fetcher.run.storing import store_result

    r = run()
    source = make_source("https://example.org/odd")
    body = b"words\x00 and more words"
    download = Download(source.url, Outcome.OK, source.url, 200, "text/plain", body)
    extracted = Extracted(Outcome.OK, "text", "words\x00 and more words", "odd\x00title", "en")
    result = FetchResult(source, datetime(2026, 1, 1, tzinfo=timezone.utc), "live", download, 1, extracted,
                         live_status=200, live_outcome=Outcome.OK)
    stored = store_result(r.store, result)
    latest = r.store.latest(source.resource_id)
    assert latest.fetch_id == stored.fetch_id and latest.outcome == "ok"
    assert latest.text.replace("\ufffd", "\x00") == "words\x00 and more words"


def test_a_fetch_read_back_without_its_text_differs_from_the_stored_one_by_its_text_alone(run):
    """What a run gets back for each fetch (it counts and logs them): every field
    as stored but the page's text, which stays in the store."""
    from dataclasses import replace
    from datetime import datetime, timedelta, timezone

    from fetcher.core.models import Download, Extracted, FetchResult
    from fetcher.core.outcomes import Outcome
    from fetcher.core.sources import make_source
    from fetcher.run.storing import store_result

    r = run()
    source = make_source("https://example.org/report")
    when = datetime(2026, 1, 1, tzinfo=timezone.utc)
    body = ONE.encode()
    download = Download(source.url, Outcome.OK, source.url, 200, "text/html", body, etag='"v1"')
    extracted = Extracted(Outcome.OK, "html", "First version of the report text. " * 50, "Report", "en")
    first = FetchResult(source, when, "live", download, 1, extracted, live_status=200, live_outcome=Outcome.OK)
    check = FetchResult(source, when + timedelta(days=1), "live",
                        Download(source.url, Outcome.NOT_MODIFIED, source.url, 304), 1,
                        live_status=304, live_outcome=Outcome.NOT_MODIFIED, reused_sha256=download.sha256)
    for result in (first, check):
        without = store_result(r.store, result, with_text=False)
        stored = r.store.latest(source.resource_id)
        assert without.text is None and stored.text == extracted.text
        assert without.text_chars == len(extracted.text) and without.title == "Report"
        assert without == replace(stored, text=None)
