"""A thin client for Wayback-compatible archives (the Internet Archive, pywb, …):
CDX lookup of the capture closest to a date, raw `id_` replay of its bytes, and
Save Page Now. Every request goes through the shared Downloader (one HTTP stack),
paced by a rate limiter below the archive's published limits; a 429 pauses every
caller for its Retry-After, and repeated 429s leave the archive alone for an hour
(ARCHIVE_REST). In a run, each request holds one of the run's places while in
flight (fetcher.net.places), taken before its turn.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import re
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from urllib.parse import urlencode

from fetcher.core.config import ArchiveSettings
from fetcher.net.download import Downloader
from fetcher.net.hosts import Clock, RateLimiter, Sleep
from fetcher.net.places import in_flight
from fetcher.core.models import Capture, Download
from fetcher.core.outcomes import Outcome
from fetcher.net.retrying import fetch_with_retries
from fetcher.core.errors import CdxFormatError

CDX_LIMIT = 10
DEFAULT_PAUSE = 60.0  # a 429 without Retry-After pauses the archive this long
MAX_TROUBLE_IN_A_ROW = 3  # 429s or unreachable-archive answers before the archive is left alone
ARCHIVE_REST = 3600.0  # seconds it is then left alone: the rest of a run; a worker asks again after it


def left_alone(name: str) -> str:
    """What a source's fetch says when the archive was not asked for it: the archive
    rate-limited us or was unreachable MAX_TROUBLE_IN_A_ROW times in a row."""
    return (f"{name} rate-limited us or was unreachable {MAX_TROUBLE_IN_A_ROW} times in a row;"
            f" not asked again for {ARCHIVE_REST / 3600:g} hour")


_TROUBLE = frozenset(
    {Outcome.HTTP_429, Outcome.DNS_ERROR, Outcome.CONNECT_REFUSED, Outcome.CONNECT_ERROR, Outcome.TLS_ERROR,
     Outcome.TIMEOUT, Outcome.HTTP_5XX}
)
_TIMESTAMP = re.compile(r"^\d{14}$")
_RAW_TIMESTAMP = re.compile(r"/(\d{14})id_/")
# Markers of an archive's own page around a capture (toolbar, banner, rewriting).
_CHROME_BYTES = (
    b"<!-- BEGIN WAYBACK TOOLBAR INSERT -->",
    b'id="wm-ipp',
    b"__wm.init(",
    b"_wb_wombat",
    b"wombat.js",
    b"/_static/js/bundle-playback.js",
)
_CHROME_TEXT = ("About this capture", "COLLECTED BY")


@dataclass(frozen=True)
class Lookup:
    """What a CDX lookup found: a capture (outcome ok), or archive-miss / archive-error."""

    outcome: Outcome
    capture: Capture | None = None
    detail: str = ""


class ArchiveClient:
    def __init__(
        self,
        settings: ArchiveSettings,
        downloader: Downloader,
        limiter: RateLimiter,
        retries: int,
        max_retry_after: float,
        sleep: Sleep,
        clock: Clock = time.monotonic,
    ):
        self.settings = settings
        self._downloader = downloader
        self._limiter = limiter
        self._retries = retries
        self._max_retry_after = max_retry_after
        self._sleep = sleep
        self._clock = clock
        self._trouble_in_a_row = 0
        self._resting_until = float("-inf")
        self._left_alone = asyncio.Event()  # set when it is: wakes every caller waiting for a turn
        # A request takes its place in the run (fetcher.net.places) before its turn,
        # so that it goes out at its turn (a place taken after it bunched requests
        # up beyond the archive's rate); one caller at a time waits so, holding a
        # place: the others wait in line without one.
        self._line = asyncio.Lock()

    @property
    def stopped(self) -> bool:
        """True for ARCHIVE_REST seconds once the archive has rate-limited us or
        been unreachable several times in a row: not asked meanwhile (for the rest
        of a run; `fetcher worker`, whose engine serves run after run, asks again
        after it)."""
        return self._clock() < self._resting_until

    async def lookup(self, url: str, wanted: datetime) -> Lookup:
        query = urlencode(
            {
                "url": url,
                "output": "json",
                "filter": "statuscode:200",
                "closest": wanted.strftime("%Y%m%d%H%M%S"),
                "sort": "closest",
                "limit": CDX_LIMIT,
            }
        )
        answer = await self._get(f"{self.settings.cdx_url}?{query}")
        if answer.outcome is not Outcome.OK:
            return Lookup(Outcome.ARCHIVE_ERROR, detail=f"CDX query: {answer.outcome.value} {answer.detail}".strip())
        try:
            rows = parse_cdx(answer.body)
        except CdxFormatError as error:
            return Lookup(Outcome.ARCHIVE_ERROR, detail=f"CDX query: {error}")
        capture = self._closest(rows, wanted)
        if capture is None:
            return Lookup(Outcome.ARCHIVE_MISS, detail=f"no capture with status 200 in {self.settings.name}")
        return Lookup(Outcome.OK, capture)

    async def replay(self, capture: Capture) -> tuple[Download, Capture]:
        """The capture's original bytes, and the capture that was actually served."""
        download = await self._get(capture.raw_url)
        if download.outcome is not Outcome.OK:
            return download, capture
        served = _served_capture(download, capture)
        original_type = download.headers.get("x-archive-orig-content-type")
        if original_type and not download.content_type:
            download = replace(download, content_type=original_type)
        if looks_like_chrome(download.body):
            detail = f"{self.settings.name} served its own page around the capture, not the capture"
            return Download(
                url=download.url, outcome=Outcome.BAD_CONTENT, final_url=download.final_url,
                http_status=download.http_status, detail=detail,
            ), served
        return download, served

    async def save(self, url: str) -> Download:
        return await self._get(f"{self.settings.save_url}/{url}")

    def raw_url(self, timestamp: str, url: str) -> str:
        return f"{self.settings.replay_url}/{timestamp}id_/{url}"

    async def _get(self, url: str) -> Download:
        async def attempt() -> Download:
            async with AsyncExitStack() as place:
                async with self._line:
                    if not self.stopped:  # (else no turn comes, and no place is needed)
                        await place.enter_async_context(in_flight())
                    turn = await self._turn()
                if not turn:
                    return Download(url=url, outcome=Outcome.ARCHIVE_ERROR, final_url=url, detail=left_alone(self.settings.name))
                answer = await self._downloader.get(url)
            if answer.outcome is Outcome.HTTP_429:
                self._limiter.pause(answer.retry_after if answer.retry_after is not None else DEFAULT_PAUSE)
            self._trouble_in_a_row = self._trouble_in_a_row + 1 if answer.outcome in _TROUBLE else 0
            if self._trouble_in_a_row >= MAX_TROUBLE_IN_A_ROW and not self.stopped:
                self._trouble_in_a_row = 0
                self._resting_until = self._clock() + ARCHIVE_REST
                self._left_alone.set()  # wakes every caller still waiting for a turn
            return answer

        answer, _ = await fetch_with_retries(attempt, self._retries, self._max_retry_after, self._sleep)
        return answer

    async def _turn(self) -> bool:
        """Wait for the rate limiter's turn; False at once, without waiting, when the
        archive is (or while waiting becomes) left alone (ARCHIVE_REST)."""
        if self.stopped:
            return False
        if self._left_alone.is_set():  # its rest is over: asked again, from a clean slate
            self._left_alone = asyncio.Event()
            self._trouble_in_a_row = 0
        turn = asyncio.ensure_future(self._limiter.acquire())
        given_up = asyncio.ensure_future(self._left_alone.wait())
        try:
            await asyncio.wait({turn, given_up}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            given_up.cancel()
            if not turn.done():
                turn.cancel()
        return turn.done() and not turn.cancelled() and not self.stopped

    def _closest(self, rows: list[dict[str, object]], wanted: datetime) -> Capture | None:
        best: Capture | None = None
        for row in rows:
            capture = self._capture(row)
            if capture is not None and (best is None or _distance(capture, wanted) < _distance(best, wanted)):
                best = capture
        return best

    def _capture(self, row: dict[str, object]) -> Capture | None:
        """The capture a CDX row describes, or None for a row we must not use: not
        status 200, a fuzzy match, or a field of the wrong shape (a timestamp that is
        a JSON number, month 13, an original URL that is not a string)."""
        timestamp = _text(row.get("timestamp"))
        status = _text(row.get("statuscode", row.get("status")))
        original = row.get("original", row.get("url"))
        mime = row.get("mimetype", row.get("mime"))
        if status != "200" or row.get("is_fuzzy") in ("1", True) or not isinstance(original, str) or not original:
            return None
        captured_at = parse_timestamp(timestamp)
        if captured_at is None:
            return None
        return Capture(
            archive=self.settings.name,
            timestamp=timestamp,
            original=original,
            raw_url=self.raw_url(timestamp, original),
            captured_at=captured_at,
            mime=mime if isinstance(mime, str) else None,
        )


def parse_cdx(body: bytes) -> list[dict[str, object]]:
    """IA's output=json (array of arrays, header row first) or pywb's JSON lines."""
    try:
        text = body.decode("utf-8").strip()
        if not text:
            return []
        if text.startswith("["):
            rows = json.loads(text)
            if not rows:
                return []
            header, *data = rows
            if not isinstance(header, list) or not all(isinstance(name, str) for name in header):
                raise CdxFormatError("CDX header row is not a list of names")
            if not all(isinstance(row, list) for row in data):
                raise CdxFormatError("a CDX row is not a list")
            return [dict(zip(header, row)) for row in data]
        return [_object(json.loads(line)) for line in text.splitlines() if line.strip()]
    except (UnicodeDecodeError, json.JSONDecodeError, TypeError, ValueError) as error:
        raise CdxFormatError(f"not a CDX answer ({type(error).__name__}: {str(error)[:80]})") from error


def _object(value: object) -> dict[str, object]:
    if not isinstance(value, dict):
        raise CdxFormatError("CDX line is not a JSON object")
    return value


def looks_like_chrome(body: bytes) -> bool:
    """True when the bytes are an archive's page (toolbar, banner) rather than a capture."""
    if any(marker in body for marker in _CHROME_BYTES):
        return True
    head = body[:200_000].decode("utf-8", errors="ignore")
    return "Wayback Machine" in head and all(marker in head for marker in _CHROME_TEXT)


def timestamp_to_datetime(timestamp: str) -> datetime:
    return datetime.strptime(timestamp, "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)


def parse_timestamp(timestamp: str) -> datetime | None:
    """A 14-digit archive timestamp as a UTC datetime; None if it is not a real moment."""
    if not _TIMESTAMP.match(timestamp):
        return None
    try:
        return timestamp_to_datetime(timestamp)
    except ValueError:  # 20241301000000: month 13
        return None


def _text(value: object) -> str:
    """A CDX field as text: IA sends strings, a careless archive may send numbers."""
    if isinstance(value, bool) or value is None:
        return ""
    return str(value) if isinstance(value, (str, int)) else ""


def _distance(capture: Capture, wanted: datetime) -> float:
    return abs((capture.captured_at - wanted).total_seconds())


def _served_capture(download: Download, asked: Capture) -> Capture:
    """Which capture the archive served: Memento-Datetime, else the final URL's timestamp."""
    captured_at = None
    memento = download.headers.get("memento-datetime")
    if memento:
        try:
            captured_at = email.utils.parsedate_to_datetime(memento).astimezone(timezone.utc)
        except (TypeError, ValueError):
            captured_at = None
    location = download.headers.get("content-location") or download.final_url
    stamp = _RAW_TIMESTAMP.search(location) or _RAW_TIMESTAMP.search(download.final_url)
    if captured_at is None and stamp:
        captured_at = parse_timestamp(stamp.group(1))
    timestamp = captured_at.strftime("%Y%m%d%H%M%S") if captured_at else asked.timestamp
    return Capture(
        archive=asked.archive,
        timestamp=timestamp,
        original=asked.original,
        raw_url=download.final_url if "id_/" in download.final_url else asked.raw_url,
        captured_at=captured_at or asked.captured_at,
        mime=download.content_type or asked.mime,
    )
