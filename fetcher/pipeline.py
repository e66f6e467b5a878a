"""The only module that knows the order: download (with retries) → extract → store.

A run fans out over `concurrency` workers pulling from one list interleaved by
host, so workers rarely queue behind one busy host; per-host slots in the
downloader keep each host's limits. Clock and sleep are injected for tests.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from itertools import zip_longest

from fetcher.config import Config
from fetcher.download import Downloader, make_client
from fetcher.extract import Extractor
from fetcher.hosts import Clock, HostSlots, Sleep
from fetcher.models import FetchResult, RunSummary, Snapshot, Source
from fetcher.outcomes import Outcome
from fetcher.retrying import fetch_with_retries
from fetcher.sources import host_of
from fetcher.store import Store

WallClock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


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
    ):
        self._config = config
        self._store = store
        self._processes = processes
        self._wall_clock = wall_clock
        self._clock = clock
        self._sleep = sleep

    async def __aenter__(self) -> Pipeline:
        settings = self._config.fetch
        self._client = make_client(settings)
        slots = HostSlots(settings.per_host_concurrency, settings.per_host_delay, self._clock, self._sleep)
        self._downloader = Downloader(self._client, settings, slots, self._wall_clock)
        self._extractor = Extractor(processes=self._processes)
        self._store_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._client.aclose()
        self._extractor.close()
        self._store_thread.shutdown(wait=True)

    async def fetch(self, source: Source) -> Snapshot:
        """Fetch one source live, extract its text and store the result."""
        settings = self._config.fetch
        started, fetched_at = self._clock(), self._wall_clock()
        download, attempts = await fetch_with_retries(
            lambda: self._downloader.get(source.url), settings.retries, settings.max_retry_after, self._sleep
        )
        extracted = None
        if download.outcome is Outcome.OK:
            extracted = await self._extractor.extract(download.body, download.content_type, download.final_url)
        result = FetchResult(
            source=source,
            fetched_at=fetched_at,
            origin="live",
            download=download,
            attempts=attempts,
            extracted=extracted,
            elapsed_ms=int((self._clock() - started) * 1000),
        )
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._store_thread, self._store.record, result)

    async def refresh(self, sources: Iterable[Source], on_done: Callable[[Snapshot], None] = lambda _: None) -> RunSummary:
        """Fetch every source, `concurrency` at a time; returns counts per outcome."""
        started = self._wall_clock()
        pending = interleave_by_host(sources)
        counts: Counter[str] = Counter()
        changed = unchanged = 0

        async def worker() -> None:
            nonlocal changed, unchanged
            for source in pending:
                snapshot = await self.fetch(source)
                counts[snapshot.outcome] += 1
                if snapshot.has_content:
                    changed += snapshot.changed
                    unchanged += not snapshot.changed
                on_done(snapshot)

        await asyncio.gather(*(worker() for _ in range(self._config.fetch.concurrency)))
        failed = sum(n for kind, n in counts.items() if not Outcome(kind).is_success)
        return RunSummary(started, self._wall_clock(), dict(counts), changed, unchanged, failed)


def interleave_by_host(sources: Iterable[Source]) -> Iterator[Source]:
    """Round-robin over hosts, keeping each host's own order."""
    by_host: dict[str, list[Source]] = defaultdict(list)
    for source in sources:
        by_host[host_of(source.url)].append(source)
    for row in zip_longest(*by_host.values()):
        yield from (source for source in row if source is not None)
