"""The only module that knows the order: download (with retries) → extract → store.

A run fans out over `concurrency` workers, each taking the next source of a host
with a free turn (fetcher.run.hostqueue), so no worker queues behind one busy
host while another has work; per-host slots in the downloader keep each host's
limits. Clock and sleep are injected for tests.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from typing import ParamSpec, TypeVar

from fetcher.net.archive import ArchiveClient, Lookup, left_alone
from fetcher.extract.soft404 import soft_404_reason
from fetcher.core.config import Config
from fetcher.net.client import make_client, trusted_endpoints
from fetcher.net.download import Downloader
from fetcher.extract.extractor import Extractor
from fetcher.core.health import Health
from fetcher.net.hosts import Clock, HostSlots, RateLimiter, Sleep, Slots
from fetcher.core.models import Download, Extracted, FetchResult, RunSummary, Snapshot, Source
from fetcher.core.outcomes import Outcome
from fetcher.net.retrying import fetch_with_retries
from fetcher.net.robots import RobotsGate
from fetcher.run.probes import HostProbes
from fetcher.run.rendering import RenderStep
from fetcher.core.errors import Stopped
from fetcher.core.timestamps import WallClock, utc_now
from fetcher.run.options import FetchOptions
from fetcher.run.batching import CheckBatches
from fetcher.run.storing import batchable, store_result
from fetcher.net.places import download_over, holding, run_places
from fetcher.run.hostqueue import HostQueue
from fetcher.run.tally import Tally
from fetcher.run.timing import FetchTiming, fetch_timing, request_hook
from fetcher.store.sqlite import Store, StoreError

log = logging.getLogger("fetcher")
P = ParamSpec("P")
T = TypeVar("T")


class Pipeline:
    """Use as `async with Pipeline(config, store) as pipeline:`."""

    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        processes: bool = True,
        wall_clock: WallClock = utc_now,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        slots: Slots | None = None,
    ):
        """`slots`: the per-host limits to keep (default: this process's own
        HostSlots; `fetcher worker` passes limits shared by every worker)."""
        self._config = config
        self._slots = slots
        self._store = store
        self._processes = processes
        self._wall_clock = wall_clock
        self._clock = clock
        self._sleep = sleep

    async def __aenter__(self) -> Pipeline:
        settings = self._config.fetch
        self._stopping = False
        self._client = make_client(settings)
        self._client.event_hooks["request"].append(request_hook(self._clock, self._wall_clock))
        slots = self._slots or HostSlots(settings.per_host_concurrency, settings.per_host_delay, self._clock, self._sleep)
        trusted = trusted_endpoints(self._config.archives)  # a self-hosted archive may be on localhost
        self._downloader = Downloader(
            self._client, settings, slots, self._wall_clock, trusted, stopping=lambda: self._stopping
        )
        self._robots = RobotsGate(self._downloader, slots, settings, self._sleep, self._clock)
        self._extractor = Extractor(
            processes=self._processes, timeout=settings.extract_timeout, memory=settings.extract_memory
        )
        self._render = RenderStep(self._config, self._client, slots, self._extractor)
        self._probes = HostProbes(self._downloader, self._extractor, gate=self._robots.refusal, clock=self._clock)
        self._store_thread = ThreadPoolExecutor(max_workers=self._store.database.threads, thread_name_prefix="store")
        self._checks = CheckBatches(self._store, self._in_store)
        self._archives = [
            ArchiveClient(
                archive,
                self._downloader,
                RateLimiter(archive.requests_per_minute, self._clock, self._sleep),
                settings.retries,
                settings.max_retry_after,
                self._sleep,
                self._clock,
            )
            for archive in self._config.archives
        ] if self._config.archive.enabled else []
        self._save_limiter = RateLimiter(self._config.archive.saves_per_minute, self._clock, self._sleep)
        self._saves: set[asyncio.Task[None]] = set()  # Save Page Now requests not done yet
        self._saved: dict[int | None, int] = {}  # those begun, per run (FetchOptions.run_id)
        self._known: dict[str, Health] = {}  # health read for a whole run at once (refresh), taken once each
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._stopping:  # Save Page Now requests still waiting their turn are not worth a stop's grace
            for save in self._saves:
                save.cancel()
        try:
            await asyncio.gather(*self._saves, return_exceptions=True)
        finally:
            await self._render.close()
            await self._client.aclose()
            self._extractor.close()
            self._store_thread.shutdown(wait=True)

    def stop(self) -> None:
        """Start no new source and no new request: sources in flight finish with
        what they already have, or are abandoned (Stopped) at their next request."""
        self._stopping = True

    @property
    def stopping(self) -> bool:
        return self._stopping

    async def fetch(self, source: Source, options: FetchOptions = FetchOptions()) -> Snapshot:
        """Fetch one source (live, then an archived copy if the live one is unusable),
        extract its text and store the result.

        Its `fetched_at` is when the first request for the page (or, archive only,
        to the archive) was sent, after any wait for the host's turn; `elapsed_ms`
        runs from then until the result is stored. A fetch that sent no request
        (robots.txt said no, an archived copy already held) counts from its start.

        Whatever goes wrong with this one source — a bug, a library raising on a
        page it cannot handle — is stored as an `internal-error` fetch (its traceback
        logged) and the source follows the failure backoff; only a store that cannot
        be written (StoreError) and a stopping run (Stopped) get past this."""
        with fetch_timing(self._clock, self._wall_clock) as began:
            try:
                return await self._fetch(source, options, began)
            except (StoreError, Stopped):
                raise
            except Exception as error:  # noqa: BLE001 - the point: one source cannot stop the run
                log.error("internal error on %s (%s): %s: %s", source.resource_id, source.url, type(error).__name__,
                          error, exc_info=True)
                return await self._record(internal_error(source, began.began_at, error), began, options)

    async def _fetch(self, source: Source, options: FetchOptions, timing: FetchTiming) -> Snapshot:
        live, fetched_at = None, timing.began_at
        if options.live:
            live = await self._live(source, fetched_at, timing, options)
            if not (options.archive and self._falls_back(live.outcome)):
                snapshot = await self._record(live, timing, options)
                if snapshot.changed:
                    self._save_later(source.url, options.run_id)
                return snapshot
        timing.armed = True
        download_over()  # the host's turn and the run's place: the archive's requests take places of their own
        return await self._record(await self._archived(source, live, fetched_at, options), timing, options)

    async def _live(self, source: Source, fetched_at: datetime, timing: FetchTiming, options: FetchOptions) -> FetchResult:
        """One live fetch, conditional when we hold its content: a 304, or a body
        whose hash we already have, is recorded as a check with no extraction.
        An HTML page is rendered in a browser when the render step says so."""
        refused = await self._robots.check(source.url)
        if refused is not None:  # robots.txt said no, or its host did not answer: the page is not requested
            return FetchResult(source, fetched_at, "live", *refused, live_outcome=refused[0].outcome)
        timing.armed = True
        health = self._known.pop(source.resource_id, None) or options.health
        if health is None:
            health = await self._in_store(self._store.health, source.resource_id)
        download, attempts = await self._download(source, conditional_headers(health))
        download_over()  # the host's turn and the run's place go on while this one is extracted and stored
        result = FetchResult(source, fetched_at, "live", download, attempts)
        known = health.content_sha256
        if download.outcome is Outcome.NOT_MODIFIED and known:
            result = replace(result, reused_sha256=known)
        elif download.outcome is Outcome.OK and known and download.sha256 == known:
            result = replace(result, reused_sha256=known)
        elif download.outcome is Outcome.OK:
            extracted = await self._extractor.extract(download.body, download.content_type, download.final_url)
            download, extracted, note = await self._render.apply(source, download, extracted, options.render)
            reason = extracted.outcome is Outcome.OK and (
                soft_404_reason(source.url, download.final_url, extracted.title, extracted.text)
                or await self._probes.soft_404_reason(source.url, download, extracted)
            )
            if reason:
                extracted = replace(extracted, outcome=Outcome.BAD_CONTENT, detail=reason)
            result = replace(result, download=download, extracted=extracted, render=note)
        return replace(result, live_status=download.http_status, live_outcome=result.outcome)

    async def _download(self, source: Source, headers: dict[str, str] | None) -> tuple[Download, int]:
        """The live download with its retries, all within the source's time limit
        (`source_deadline`): a trickling or ever-failing source cannot hold a worker
        for retries × deadline."""
        settings = self._config.fetch
        limit = settings.source_time_limit
        return await fetch_with_retries(
            lambda: self._downloader.get(source.url, headers, gate=self._robots.refusal),
            settings.retries, settings.max_retry_after, self._sleep, time_limit=limit, url=source.url,
        )

    def _falls_back(self, outcome: Outcome) -> bool:
        policy = self._config.archive
        return bool(self._archives) and (
            outcome.wants_archive
            or (policy.fallback_on_blocked and outcome in (Outcome.HTTP_401, Outcome.HTTP_403))
            or (policy.fallback_on_rate_limited and outcome is Outcome.HTTP_429)
        )

    async def _archived(
        self, source: Source, live: FetchResult | None, fetched_at: datetime, options: FetchOptions
    ) -> FetchResult:
        """The first archive's capture that yields text; else the live failure, annotated."""
        misses, outcome = [], Outcome.ARCHIVE_MISS
        for client in self._archives:
            lookup, stored_sha = await self._lookup(client, source, fetched_at, options.recheck_archive)
            if lookup.capture is None:
                misses.append(lookup.detail)
                outcome = lookup.outcome if lookup.outcome is Outcome.ARCHIVE_ERROR else outcome
                continue
            if stored_sha is not None:  # replayed on an earlier run: captures never change, none is asked for
                reused = Download(source.url, Outcome.OK, lookup.capture.raw_url, None, lookup.capture.mime)
                return self._from_archive(source, live, fetched_at, reused, None, lookup, stored_sha)
            download, served = await client.replay(lookup.capture)
            extracted = None
            if download.outcome is Outcome.OK:
                extracted = await self._extractor.extract(download.body, download.content_type or served.mime, source.url)
            if extracted is not None and extracted.outcome is Outcome.OK:
                return self._from_archive(source, live, fetched_at, download, extracted, Lookup(Outcome.OK, served))
            problem = extracted.outcome.value if extracted else download.outcome.value
            misses.append(f"{client.settings.name} capture {served.timestamp}: {problem} {download.detail}".strip())
            outcome = Outcome.ARCHIVE_ERROR
        detail = "; ".join(misses) or "no archive configured"
        if live is None:
            failed = Download(source.url, outcome, source.url, detail=detail)
            return FetchResult(source, fetched_at, "archive", failed, 0, archive_outcome=outcome)
        annotated = replace(live.download, detail=f"{live.download.detail}; archive: {detail}".lstrip("; "))
        return replace(live, download=annotated, archive_outcome=outcome)

    def _from_archive(
        self,
        source: Source,
        live: FetchResult | None,
        fetched_at: datetime,
        download: Download,
        extracted: Extracted | None,
        lookup: Lookup,
        stored_sha: str | None = None,
    ) -> FetchResult:
        return FetchResult(
            source, fetched_at, "archive", download, 0 if stored_sha else 1, extracted,
            live_status=live.live_status if live else None,
            live_outcome=live.live_outcome if live else None,
            live_detail=live.own_detail if live else "",
            capture=lookup.capture,
            archive_outcome=Outcome.OK,
            reused_sha256=stored_sha,
        )

    async def _lookup(
        self, client: ArchiveClient, source: Source, fetched_at: datetime, recheck: bool
    ) -> tuple[Lookup, str | None]:
        """A lookup from the cache (captures never change; misses are kept a while), else the archive's CDX."""
        name = client.settings.name
        cached = await self._in_store(self._store.cached_lookup, source.resource_id, name)
        if cached is not None and not recheck:
            if cached.capture is not None:
                return Lookup(Outcome.OK, cached.capture), cached.sha256
            fresh_for = timedelta(days=self._config.archive.recheck_misses_after_days)
            if fetched_at - cached.looked_up_at < fresh_for:
                return Lookup(Outcome.ARCHIVE_MISS, detail=f"no capture in {name} (looked up {cached.looked_up_at:%Y-%m-%d})"), None
        if client.stopped:
            return Lookup(Outcome.ARCHIVE_ERROR, detail=left_alone(name)), None
        wanted = await self._in_store(self._store.last_alive, source.resource_id) or fetched_at
        lookup = await client.lookup(source.url, wanted)
        if lookup.outcome is not Outcome.ARCHIVE_ERROR:
            await self._in_store(self._store.remember_lookup, source, name, fetched_at, lookup.capture)
        return lookup, None

    def _save_later(self, url: str, run: int | None) -> None:
        """Save Page Now for a changed page, in the background, within the run's
        budget (`max_saves_per_run`; a worker's engine serves many runs, each with
        its own budget: the last few runs' counts are kept)."""
        policy = self._config.archive
        begun = self._saved.get(run, 0)
        if not (policy.save and self._archives) or begun >= policy.max_saves_per_run:
            return
        if run not in self._saved and len(self._saved) >= 8:
            del self._saved[next(iter(self._saved))]  # the oldest run's
        self._saved[run] = begun + 1
        task = asyncio.create_task(self._save(self._archives[0], url))
        self._saves.add(task)
        task.add_done_callback(self._saves.discard)

    async def _save(self, client: ArchiveClient, url: str) -> None:
        """One save; however it fails, it fails no fetch and no run (a warning)."""
        try:
            await self._save_limiter.acquire()
            answer = await client.save(url)
        except Exception as error:  # noqa: BLE001 - in the background, after the page was stored
            log.warning("save page now for %s failed: %r", url, error)
            return
        if answer.outcome is not Outcome.OK:
            log.warning("save page now for %s failed: %s %s", url, answer.outcome.value, answer.detail)

    async def _record(self, result: FetchResult, timing: FetchTiming, options: FetchOptions) -> Snapshot:
        """Store the result, dated when its first request was sent (else when the
        fetch began), its elapsed time measured on the store's thread as it is
        stored. A run's fetches that bring no new body go in batches
        (fetcher.run.batching); the rest, and a one-off's, each on its own."""
        sent, sent_at = timing.start

        def timed() -> FetchResult:
            return replace(result, fetched_at=sent_at, elapsed_ms=int((self._clock() - sent) * 1000))

        if not options.with_text and batchable(result):
            return await self._checks.store(result.source.resource_id, timed, options.also_in_transaction)
        return await self._in_store(
            lambda: store_result(self._store, timed(), options.also_in_transaction, options.with_text))

    async def _in_store(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Store calls run on the store's own thread (a few, each its own connection: Database.threads)."""
        call = functools.partial(function, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._store_thread, call)

    async def refresh(
        self,
        sources: Iterable[Source],
        on_done: Callable[[Snapshot], None] = lambda _: None,
        options: FetchOptions = FetchOptions(),
        tally: Tally | None = None,
        health: dict[str, Health] | None = None,
    ) -> RunSummary:
        """Fetch every source, `concurrency` downloads at a time, until done or
        stop(). A source's place goes to the next source once its download is
        over; as many again may be past their download at once, being extracted
        or stored (what bounds the bodies a run holds: 2 × `concurrency`).
        Counts are by the live outcome (the source's health); `archived` counts
        copies from an archive. `tally` (if given) is kept up to date as sources
        finish, so a run cancelled midway still knows what it did. `health`: every
        source's health as the store holds it now (else it is read here, once),
        which gives each source's validators without a store read of its own.
        The snapshots it counts and hands to `on_done` come without their text."""
        tally = tally if tally is not None else Tally(self._wall_clock())
        options = replace(options, with_text=False)  # a run counts and logs its fetches: no page's text is read back
        queue = HostQueue(sources, self._config.fetch.per_host_concurrency)
        self._known = dict(health) if health is not None else await self._in_store(self._store.all_health)

        concurrency = self._config.fetch.concurrency
        places = asyncio.Semaphore(concurrency)
        own_places = run_places.set(places)  # seen by the workers' tasks and the tasks they start (probes, saves)

        async def worker() -> None:
            while not self._stopping:
                await places.acquire()
                taken = None
                try:
                    taken = await queue.take()
                finally:
                    if taken is None:  # every source taken, or cancelled while waiting: the place goes back
                        places.release()
                if taken is None:
                    return
                source, turn = taken
                turn.hold_place(places.release)
                holding.set(turn)  # this worker's task's own context
                try:
                    if self._stopping:
                        return
                    snapshot = await self.fetch(source, options)
                except Stopped:
                    return
                finally:
                    turn.give_back()
                tally.add(snapshot)
                on_done(snapshot)

        try:
            await asyncio.gather(*(worker() for _ in range(2 * concurrency)))  # as many again past their download
        finally:
            run_places.reset(own_places)
        return tally.summary(self._wall_clock())


def internal_error(source: Source, fetched_at: datetime, error: Exception) -> FetchResult:
    """A fetch that our own code could not finish, as a stored failure of the source."""
    detail = f"{type(error).__name__}: {error}"
    detail = detail if len(detail) <= 500 else detail[:500] + "…"
    failed = Download(source.url, Outcome.INTERNAL_ERROR, source.url, detail=detail)
    return FetchResult(source, fetched_at, "live", failed, 1, live_outcome=Outcome.INTERNAL_ERROR)


def conditional_headers(health: Health) -> dict[str, str] | None:
    """If-None-Match / If-Modified-Since from the validators of the content we hold."""
    if not health.content_sha256:
        return None
    headers = {}
    if health.etag:
        headers["If-None-Match"] = health.etag
    if health.last_modified:
        headers["If-Modified-Since"] = health.last_modified
    return headers or None
