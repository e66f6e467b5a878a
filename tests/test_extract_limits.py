"""Bounded extraction: a document that takes too long or needs too much memory is
extract-failed with the reason, its worker is replaced, and the documents other
workers hold at the same time, and the run, carry on. Also the cheap bounds that
apply before trafilatura (a one-off fetch's thread cannot be killed).

Limits are small here (2 s, 300 MiB) so the tests are quick; each pathological
document still costs a test a few seconds of wall time, which is what is tested."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from pathlib import Path

from fetcher.core.config import load_config
from fetcher.extract.extractor import Extractor
from fetcher.core.models import Extracted
from fetcher.run.pipeline import Pipeline
from fetcher.core.sources import resource_id
from fetcher.store.sqlite import Store
from tests.conftest import corpus_pages, write_config
from tests.origin import Origin, html, respond
from tests.test_refresh import article, marker

MIB = 1 << 20
# ~90,000 elements: under the element bound, so trafilatura reads it all (about 5 s on 2 cores)
SLOW = ("<html><body>" + "<p>a</p>" * 90_000 + "</body></html>").encode()
# the page that took 61 s and 724 MB before: even its plain text needs more than 300 MiB
HUGE = ("<html><body>" + "<p>a</p>" * 400_000 + "</body></html>").encode()
PAGE = corpus_pages()[0]


def extract_all(extractor: Extractor, *bodies: bytes) -> list[Extracted]:
    async def go() -> list[Extracted]:
        return await each(extractor, *bodies)

    return asyncio.run(go())


async def each(extractor: Extractor, *bodies: bytes) -> list[Extracted]:
    return await asyncio.gather(*(extractor.extract(body, "text/html", "http://x.test/") for body in bodies))


def workers() -> set[int]:
    return {child.pid for child in multiprocessing.active_children()}


def test_a_slow_document_is_stopped_at_the_time_limit_and_the_pool_carries_on():
    extractor = Extractor(processes=True, workers=2, timeout=2, memory=None)

    async def scenario() -> tuple:
        [warm] = await each(extractor, PAGE.html)  # one worker started: the slow page goes to it
        before = workers()
        started = time.monotonic()
        slow, normal, also_normal = await each(extractor, SLOW, PAGE.html, PAGE.html)
        took = time.monotonic() - started
        [after] = await each(extractor, PAGE.html)
        return warm, before, slow, normal, also_normal, took, after, workers()

    try:
        warm, before, slow, normal, also_normal, took, after, now = asyncio.run(scenario())
    finally:
        extractor.close()
    assert (slow.outcome.value, slow.detail, slow.kind) == ("extract-failed", "extraction took more than 2 s", "html")
    assert took < 6, took  # the limit, plus a worker's start; unbounded it is about 5 s
    assert normal.outcome.value == also_normal.outcome.value == after.outcome.value == "ok"
    assert normal.text == warm.text == after.text
    assert len(before) == 1 and not before & now  # the busy worker was killed
    assert 1 <= len(now) <= 2  # another does the work (a new one starts when needed)
    assert workers() == set()  # close() leaves no worker behind


def test_a_document_over_the_memory_limit_fails_with_the_reason_and_the_next_one_is_fine():
    extractor = Extractor(processes=True, workers=2, timeout=30, memory=300 * MIB)

    async def scenario() -> tuple:
        huge, normal = await each(extractor, HUGE, PAGE.html)
        [after] = await each(extractor, PAGE.html)
        return huge, normal, after

    try:
        huge, normal, after = asyncio.run(scenario())
    finally:
        extractor.close()
    assert (huge.outcome.value, huge.detail) == ("extract-failed", "extraction needed more than 300 MiB")
    assert normal.outcome.value == after.outcome.value == "ok"
    assert normal.text == after.text


def test_a_one_off_fetch_reads_a_page_with_absurdly_many_elements_as_plain_text_quickly():
    """The thread of a one-off fetch cannot be killed: the element bound is what
    keeps it short (this page took 61 s and 724 MB before). About 2 s."""
    started = time.monotonic()
    [result] = extract_all(Extractor(processes=False), b"<title>Many</title>" + HUGE)
    assert time.monotonic() - started < 15
    assert (result.outcome.value, result.title) == ("ok", "Many")
    assert result.text.split("\n") == ["a"] * 400_000


def test_a_huge_attribute_is_dropped_before_extraction():
    """A 10 MB attribute took 11 s; it holds no text, so it goes first."""
    page = article(1).encode()
    blob = page.replace(b"<main>", b'<main data-state="' + b"x" * 10_000_000 + b'">')
    started = time.monotonic()
    plain, with_blob = extract_all(Extractor(processes=False), page, blob)
    assert time.monotonic() - started < 4
    assert with_blob.outcome.value == "ok" and marker(1) in with_blob.text
    assert with_blob.text == plain.text


def test_a_refresh_with_a_pathological_page_stores_every_source_and_the_others_are_ok(tmp_path: Path):
    with Origin("127.0.0.1") as origin:
        urls = [origin.route(f"/bulletins/{n}", html(article(n))) for n in range(6)]
        slow_url = origin.route("/slow", respond(200, SLOW, {"Content-Type": "text/html"}))
        urls.insert(3, slow_url)
        config = load_config(write_config(tmp_path, urls, extract_timeout=2, extract_memory=300 * MIB, retries=0))
        store = Store(config.storage_dir)
        try:
            summary = asyncio.run(refresh(config, store))
            latest = {url: store.latest(resource_id(url)) for url in urls}
        finally:
            store.close()
    assert all(snapshot is not None for snapshot in latest.values())
    slow = latest.pop(slow_url)
    assert (slow.outcome, slow.detail) == ("extract-failed", "extraction took more than 2 s")
    for n, (url, snapshot) in enumerate(latest.items()):
        assert snapshot.outcome == "ok" and marker(n) in snapshot.text, url
    assert summary.counts == {"ok": 6, "extract-failed": 1}


async def refresh(config, store):
    async with Pipeline(config, store, processes=True) as pipeline:
        return await pipeline.refresh(config.sources)
