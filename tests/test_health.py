"""A source's health on its own: how one live check changes it (next_health),
what a fetch says as a check (check_of), the one state classifier, and the store
writing what it is handed — the fetch and the health row in one transaction."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from fetcher.core.config import RefreshPolicy
from fetcher.core.health import Check, Health, check_of, classify, next_health, state_counts
from fetcher.core.models import Capture, Download, Extracted, FetchResult, Hop, Snapshot, Source
from fetcher.core.outcomes import Outcome
from fetcher.core.states import STATES, State, Transition
from fetcher.run.storing import store_result
from fetcher.store.rows import RunRecord, snapshot_query
from fetcher.store.sqlite import Store
from fetcher.views.runs import recorded_runs, shown
from tests.conftest import fetch_count

UTC = timezone.utc
DAY0 = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
RID = "a6ec2c2fe408fea3"
URL = "https://example.org/report"
NEW = Health(RID)
FINE = Health(RID, last_checked=DAY0, last_ok=DAY0, last_outcome=Outcome.OK, etag='"v1"',
              last_modified="Mon, 23 Nov 2026 03:00:00 GMT", content_sha256="a" * 64, last_status=200)
BROKEN = replace(FINE, last_checked=DAY0 + timedelta(days=1), last_outcome=Outcome.HTTP_404, last_status=404,
                 failures_in_a_row=2, failing_since=DAY0, last_detail="Not Found")


def day(n: float) -> datetime:
    return DAY0 + timedelta(days=n)


def ok(n: float, **fields: object) -> Check:
    return Check(day(n), Outcome.OK, 200, **fields)  # type: ignore[arg-type]


def gone(n: float) -> Check:
    return Check(day(n), Outcome.HTTP_404, 404, "Not Found")


# -- next_health: a table of cases ---------------------------------------------------------

CASES = [
    pytest.param(
        NEW, ok(0, live_content="b" * 64, etag='"v2"'),
        dict(last_checked=day(0), last_ok=day(0), failures_in_a_row=0, content_sha256="b" * 64, etag='"v2"',
             last_outcome=Outcome.OK, last_status=200), None, id="first-check-ok"),
    pytest.param(
        NEW, gone(0),
        dict(last_checked=day(0), last_ok=None, failures_in_a_row=1, failing_since=day(0), last_detail="Not Found",
             last_outcome=Outcome.HTTP_404, last_status=404), Transition.NEWLY_FAILING, id="first-check-failing"),
    pytest.param(
        FINE, gone(1),
        dict(failures_in_a_row=1, failing_since=day(1), last_ok=DAY0, etag='"v1"', content_sha256="a" * 64),
        Transition.NEWLY_FAILING, id="ok-to-failing-is-newly-failing"),
    pytest.param(
        BROKEN, ok(3, live_content="c" * 64),
        dict(failures_in_a_row=0, failing_since=None, last_ok=day(3), last_detail="", content_sha256="c" * 64),
        Transition.RECOVERED, id="failing-to-ok-is-recovered"),
    pytest.param(
        BROKEN, gone(4),
        dict(failures_in_a_row=3, failing_since=DAY0, last_checked=day(4), last_ok=DAY0), None,
        id="failing-to-failing-counts-up-and-keeps-failing-since"),
    pytest.param(
        FINE, ok(1, live_content="a" * 64, moved_to="https://example.org/new"),
        dict(moved_to="https://example.org/new"), None, id="moved-to-from-permanent-redirects"),
    pytest.param(
        replace(FINE, moved_to="https://example.org/new"), ok(1, live_content="a" * 64),
        dict(moved_to=None), None, id="moved-to-cleared-when-no-longer-redirected"),
    pytest.param(
        replace(FINE, moved_to="https://example.org/new"), gone(1),
        dict(moved_to="https://example.org/new"), Transition.NEWLY_FAILING, id="a-failure-keeps-moved-to"),
    pytest.param(
        FINE, ok(1, live_content="d" * 64, etag='"v9"', last_modified=None),
        dict(etag='"v9"', last_modified=FINE.last_modified, content_sha256="d" * 64), None,
        id="validators-from-live-content-missing-ones-kept"),
    pytest.param(
        FINE, ok(1, etag='"v9"', last_modified="Tue, 24 Nov 2026 03:00:00 GMT"),
        dict(etag='"v1"', last_modified=FINE.last_modified, content_sha256="a" * 64), None,
        id="validators-kept-only-from-live-content"),
    pytest.param(
        FINE, Check(day(1), Outcome.NOT_MODIFIED, 304, live_content="a" * 64),
        dict(failures_in_a_row=0, last_ok=day(1), last_outcome=Outcome.NOT_MODIFIED, last_status=304), None,
        id="not-modified-is-a-success"),
    pytest.param(
        BROKEN, Check(day(3), Outcome.DNS_ERROR, None, "no such host"),
        dict(failures_in_a_row=3, last_status=None, last_detail="no such host", etag='"v1"'), None,
        id="an-archived-copys-check-is-the-live-failure"),
]


@pytest.mark.parametrize(("before", "check", "expected", "transition"), CASES)
def test_next_health(before, check, expected, transition):
    after, changed = next_health(before, check)
    assert {name: getattr(after, name) for name in expected} == expected
    assert changed is transition
    assert after.resource_id == before.resource_id and after.last_checked == check.at


# -- check_of: what a stored fetch says about the source's health -----------------------------

SOURCE = Source(URL, RID)


def live_result(download: Download, extracted: Extracted | None = None) -> FetchResult:
    outcome = extracted.outcome if extracted and download.outcome is Outcome.OK else download.outcome
    return FetchResult(SOURCE, DAY0, "live", download, 1, extracted, live_status=download.http_status,
                       live_outcome=outcome)


def test_a_live_page_with_content_gives_its_validators_and_where_it_moved():
    moved = "https://example.org/report-2026"
    download = Download(URL, Outcome.OK, moved, 200, "text/html", b"<p>text</p>", (Hop(URL, 301),), etag='"e"')
    check = check_of(live_result(download, Extracted(Outcome.OK, "html", "text")))
    assert check == Check(DAY0, Outcome.OK, 200, "", download.sha256, '"e"', None, moved)


def test_a_page_that_fails_extraction_is_a_failed_check_without_content():
    download = Download(URL, Outcome.OK, URL, 200, "text/html", b"<p>404</p>", etag='"e"')
    check = check_of(live_result(download, Extracted(Outcome.BAD_CONTENT, "html", detail="soft 404: error page")))
    assert check == Check(DAY0, Outcome.BAD_CONTENT, 200, "soft 404: error page")


def test_an_archived_copy_says_what_the_live_attempt_got_and_keeps_no_validators():
    capture = Capture("Wayback Machine", "20240101000000", URL, "https://web.archive.org/x", DAY0, "text/html")
    download = Download(URL, Outcome.OK, capture.raw_url, 200, "text/html", b"<p>old</p>", etag='"archive"')
    result = FetchResult(SOURCE, DAY0, "archive", download, 1, Extracted(Outcome.OK, "html", "old"),
                         live_status=404, live_outcome=Outcome.HTTP_404, live_detail="Not Found", capture=capture,
                         archive_outcome=Outcome.OK)
    assert check_of(result) == Check(DAY0, Outcome.HTTP_404, 404, "Not Found")


def test_an_archive_only_fetch_is_no_check():
    failed = Download(URL, Outcome.ARCHIVE_MISS, URL, detail="no capture")
    assert check_of(FetchResult(SOURCE, DAY0, "archive", failed, 0, archive_outcome=Outcome.ARCHIVE_MISS)) is None


# -- the one classifier ---------------------------------------------------------------------

POLICY = RefreshPolicy()


@pytest.mark.parametrize(("health", "state"), [
    (None, State.UNCHECKED),
    (NEW, State.UNCHECKED),
    (FINE, State.OK),
    (replace(FINE, moved_to="https://example.org/new"), State.REDIRECTED),
    (replace(BROKEN, last_outcome=Outcome.HTTP_403), State.BLOCKED),
    (replace(BROKEN, last_outcome=Outcome.ROBOTS_BLOCKED, failures_in_a_row=9, last_checked=day(30)), State.BLOCKED),
    (replace(BROKEN, last_outcome=Outcome.BAD_CONTENT, last_detail="soft 404: parked domain"), State.SOFT_404),
    (replace(BROKEN, last_outcome=Outcome.BAD_CONTENT, last_detail="not a page"), State.FAILING),
    (BROKEN, State.FAILING),
    (replace(BROKEN, failures_in_a_row=3, last_checked=day(2)), State.FAILING),  # three, but within two days
    (replace(BROKEN, failures_in_a_row=3, last_checked=day(3)), State.DEAD),
])
def test_classify(health, state):
    assert classify(health, POLICY) is state


def test_states_are_their_strings_worst_first():
    assert [s.value for s in STATES] == ["dead", "soft-404", "failing", "blocked", "redirected", "unchecked", "ok"]
    assert [t.value for t in Transition] == ["newly-failing", "recovered"]
    sources = [Source(f"https://example.org/{n}", f"{n:016x}") for n in range(4)]
    healths = {sources[0].resource_id: FINE, sources[1].resource_id: replace(BROKEN, failures_in_a_row=3,
                                                                             last_checked=day(3))}
    assert state_counts(sources, healths, POLICY) == {State.DEAD: 1, State.UNCHECKED: 2, State.OK: 1}


# -- the store writes what the engine hands it -------------------------------------------------

def page_result(when: datetime, body: bytes, status: int = 200) -> FetchResult:
    outcome = Outcome.OK if status == 200 else Outcome.HTTP_404
    download = Download(URL, outcome, URL, status, "text/html", body if status == 200 else b"")
    extracted = Extracted(Outcome.OK, "html", body.decode(), "Report") if status == 200 else None
    return replace(live_result(download, extracted), fetched_at=when)


def test_the_fetch_and_its_health_are_stored_together_and_read_back_typed(tmp_path):
    store = Store(tmp_path)
    try:
        first = store_result(store, page_result(day(0), b"<p>report</p>"))
        failed = store_result(store, page_result(day(1), b"", status=404))
        assert (first.outcome, first.transition, failed.outcome, failed.transition) == (
            Outcome.OK, None, Outcome.HTTP_404, Transition.NEWLY_FAILING)
        assert isinstance(failed.live_outcome, Outcome) and failed.archive_outcome is None
        health = store.health(RID)
        assert (health.last_outcome, health.failures_in_a_row, health.failing_since) == (Outcome.HTTP_404, 1, day(1))
        assert health.content_sha256 == first.sha256 and store.all_health() == {RID: health}
    finally:
        store.close()


def test_a_transaction_that_raises_stores_nothing(tmp_path):
    store = Store(tmp_path)
    result = page_result(day(0), b"<p>report</p>")
    try:
        with pytest.raises(RuntimeError), store.transaction() as writer:
            after, _ = next_health(writer.health(RID), check_of(result))
            writer.record(result, after, None)
            raise RuntimeError("the engine stopped halfway")
        assert (fetch_count(tmp_path), store.health(RID)) == (0, Health(RID))
    finally:
        store.close()
    with closing(sqlite3.connect(tmp_path / "fetcher.sqlite3")) as db:
        assert db.execute("SELECT COUNT(*) FROM health").fetchone() == (0,)


def test_snapshots_are_read_by_column_name():
    columns = [part.rsplit(" AS ", 1)[1] for part in snapshot_query().split(" FROM ")[0][7:].split(", ")]
    assert columns == [name for name in Snapshot.__dataclass_fields__]


# -- a run whose process is gone -----------------------------------------------------------------

def test_a_run_recorded_as_running_whose_process_is_gone_did_not_finish(tmp_path):
    store = Store(tmp_path)
    try:
        run_id = store.start_run(DAY0, "refresh")
        assert [run.status for run in recorded_runs(store)] == ["running"]  # this process: alive
        with closing(sqlite3.connect(tmp_path / "fetcher.sqlite3")) as db, db:
            db.execute("UPDATE runs SET pid = ? WHERE id = ?", (2**22 + 12345, run_id))  # no such process
        [stored] = store.runs()
        assert stored.status == "running"  # the store says what it holds
        assert [run.status for run in recorded_runs(store)] == ["did not finish"]  # the reader decides
    finally:
        store.close()
    finished = RunRecord(1, DAY0, day(0.01), "completed", "refresh", 2**22 + 12345, None)
    assert shown(finished) == finished and recorded_runs(None) == []
