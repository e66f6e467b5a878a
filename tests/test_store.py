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


def _nights(source, when, body, extracted):
    """A source's fetches over five nights: content, a 304, a 404, the same body
    again (a 200), and a 404 found under a new title."""
    from dataclasses import replace
    from datetime import timedelta

    from fetcher.core.models import Download, FetchResult
    from fetcher.core.outcomes import Outcome

    download = Download(source.url, Outcome.OK, source.url, 200, "text/html", body, etag='"v1"')
    first = FetchResult(source, when, "live", download, 1, extracted, live_status=200, live_outcome=Outcome.OK)
    check = FetchResult(source, when + timedelta(days=1), "live",
                        Download(source.url, Outcome.NOT_MODIFIED, source.url, 304, etag='"v1"'), 1,
                        live_status=304, live_outcome=Outcome.NOT_MODIFIED, reused_sha256=download.sha256)
    gone = FetchResult(source, when + timedelta(days=2), "live",
                       Download(source.url, Outcome.HTTP_404, source.url, 404, detail="HTTP 404"), 2,
                       live_status=404, live_outcome=Outcome.HTTP_404)
    again = FetchResult(source, when + timedelta(days=3), "live", download, 1, extracted,
                        live_status=200, live_outcome=Outcome.OK, reused_sha256=download.sha256)
    retitled = replace(gone, source=replace(source, title="A new title"), fetched_at=when + timedelta(days=4))
    return [first, check, gone, again, retitled]


def test_fetches_stored_in_a_batch_are_stored_as_one_by_one(run, monkeypatch):
    """A run stores the fetches that bring no new body in batches (fetcher.run.batching):
    the history, health and titles that come out are those of storing each alone,
    on both engines, for a source the store knew and for one it did not."""
    from dataclasses import replace
    from datetime import datetime, timezone

    from fetcher.core.models import Extracted
    from fetcher.core.outcomes import Outcome
    from fetcher.core.sources import make_source
    from fetcher.run import storing
    from fetcher.run.storing import batchable, store_checks, store_result

    alone_too: list[object] = []  # a batch that fell back to storing each alone
    monkeypatch.setattr(storing, "store_result", lambda *a, **k: alone_too.append(a) or store_result(*a, **k))
    r = run()
    when = datetime(2026, 1, 1, tzinfo=timezone.utc)
    extracted = Extracted(Outcome.OK, "html", "Report text. " * 40, "Report", "en")
    alone = [make_source(f"https://example.org/alone/{n}", title=f"Report {n}") for n in range(3)]
    together = [make_source(f"https://example.org/together/{n}", title=f"Report {n}") for n in range(3)]
    nights = {source: _nights(source, when, ONE.encode() + bytes([n]), extracted)
              for sources in (alone, together) for n, source in enumerate(sources)}
    new_failing = {
        source: [replace(nights[alone[0]][2], source=source)]
        for source in (make_source("https://example.org/alone/new"), make_source("https://example.org/together/new"))
    }
    alone.append(next(iter(new_failing)))
    together.append(list(new_failing)[1])
    nights.update(new_failing)
    for night in range(5):
        for sources in (alone, together):
            results = [nights[source][night] for source in sources if night < len(nights[source])]
            if sources is alone or not all(map(batchable, results)):
                stored = [store_result(r.store, result, with_text=False) for result in results]
            else:
                stored = store_checks(r.store, [(result, None) for result in results])
            assert [s.resource_id for s in stored] == [result.source.resource_id for result in results]

    def seen(source):
        history = [replace(s, fetch_id=0, resource_id="", url="", final_url="")
                   for s in r.store.history(source.resource_id)]
        health = replace(r.store.health(source.resource_id), resource_id="")
        title = r.store.database.execute("SELECT title FROM resources WHERE resource_id = ?",
                                         (source.resource_id,)).fetchone()[0]
        return history, health, title

    assert alone_too == []
    for one, other in zip(alone, together):
        assert seen(one) == seen(other)
    assert len(r.store.history(together[0].resource_id)) == 5
    assert r.store.health(together[0].resource_id).failures_in_a_row == 1
    assert seen(together[1])[2] == "A new title" and seen(together[3])[2] is None
