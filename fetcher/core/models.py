"""Frozen values passed between modules."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from datetime import datetime
from typing import Any

from fetcher.core.outcomes import Outcome, Rendering
from fetcher.core.timestamps import rfc3339
from fetcher.core.states import State, Transition


@dataclass(frozen=True)
class Source:
    url: str
    resource_id: str
    title: str | None = None
    tags: tuple[str, ...] = ()
    refresh_every: float | None = None  # seconds; None: the configured default
    render: str = "auto"  # "auto": when the page looks like a client-side app; "always"; "never"


@dataclass(frozen=True)
class Hop:
    """One redirect: the URL that answered and the status it answered with."""

    url: str
    status: int


@dataclass(frozen=True)
class Download:
    """The result of one classified HTTP attempt (redirects included)."""

    url: str
    outcome: Outcome
    final_url: str
    http_status: int | None = None
    content_type: str | None = None
    body: bytes = b""
    redirects: tuple[Hop, ...] = ()
    detail: str = ""
    retry_after: float | None = None
    etag: str | None = None
    last_modified: str | None = None
    headers: dict[str, str] = field(default_factory=dict)  # archive headers: Memento-Datetime, X-Archive-Orig-*
    # The body exactly as the server gzip-compressed it, when it came as one complete
    # gzip member: the store keeps these bytes instead of compressing the body again.
    gzipped: bytes | None = field(default=None, repr=False)

    @cached_property
    def sha256(self) -> str:
        """The body's SHA-256 (hex): its identity in the store. Worked out once,
        though both the unchanged-body check and the store ask for it."""
        return hashlib.sha256(self.body).hexdigest()


@dataclass(frozen=True)
class Capture:
    """One archived capture of a URL, replayable raw at `raw_url`."""

    archive: str
    timestamp: str  # 14 digits, UTC
    original: str
    raw_url: str
    captured_at: datetime
    mime: str | None = None


@dataclass(frozen=True)
class Extracted:
    """Readable text and metadata drawn from a body."""

    outcome: Outcome
    kind: str  # "html", "pdf", "text" or "unknown"
    text: str = ""
    title: str | None = None
    language: str | None = None
    published: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class RenderNote:
    """The rendering decision on one fetched page, its reason, and (when the
    content is the rendered DOM, or rendering failed) the static body, kept too."""

    rendering: Rendering
    reason: str
    static: Download | None = None


@dataclass(frozen=True)
class FetchResult:
    """What one fetch of one source produced, ready to be stored."""

    source: Source
    fetched_at: datetime
    origin: str
    download: Download
    attempts: int
    extracted: Extracted | None = None
    elapsed_ms: int = 0
    live_status: int | None = None
    live_outcome: Outcome | None = None
    live_detail: str = ""  # for an archived copy: what the live attempt said
    capture: Capture | None = None
    archive_outcome: Outcome | None = None
    reused_sha256: str | None = None  # an archived copy already stored: no body here
    render: RenderNote | None = None  # None: not an HTML page that was extracted

    @property
    def outcome(self) -> Outcome:
        if self.download.outcome is Outcome.OK and self.extracted is not None:
            return self.extracted.outcome
        return self.download.outcome

    @property
    def new_content(self) -> bool:
        """The body is content to keep that the store does not hold yet."""
        return self.reused_sha256 is None and self.extracted is not None and self.outcome.is_success

    @property
    def content_sha256(self) -> str | None:
        """The content this fetch yields (new or already held), if any."""
        return self.download.sha256 if self.new_content else self.reused_sha256

    @property
    def own_detail(self) -> str:
        """What went wrong with this attempt: the extraction's word, else the download's."""
        if self.extracted is not None and self.extracted.detail:
            return self.extracted.detail
        return self.download.detail


@dataclass(frozen=True)
class Snapshot:
    """One stored fetch of a source, joined with the content it yielded (the field
    names are the store's column names)."""

    fetch_id: int
    resource_id: str
    url: str
    final_url: str
    fetched_at: datetime
    origin: str
    http_status: int | None  # None: no HTTP answer, or none asked for (an archived copy already held)
    outcome: Outcome
    detail: str
    attempts: int
    elapsed_ms: int
    changed: bool
    redirects: tuple[Hop, ...] = ()
    content_type: str | None = None
    size_bytes: int | None = None
    text_chars: int | None = None
    sha256: str | None = None
    title: str | None = None
    text: str | None = None
    language: str | None = None
    published: str | None = None
    content_first_seen: datetime | None = None
    live_status: int | None = None
    live_outcome: Outcome | None = None
    archive_outcome: Outcome | None = None
    archive_name: str | None = None
    archive_url: str | None = None
    captured_at: datetime | None = None
    transition: Transition | None = None  # what this check changed in the source's health
    # The response that delivered the body held (a 304 or same-hash check confirms
    # it and is not it): its HTTP status and when it was fetched. None without content.
    content_http_status: int | None = None
    content_fetched_at: datetime | None = None
    # Whether the page was rendered in a browser (None: no decision, e.g. not HTML), why,
    # and the static body's SHA-256 when the content is the rendered DOM's.
    render: Rendering | None = None
    render_reason: str | None = None
    static_sha256: str | None = None

    @property
    def has_content(self) -> bool:
        return self.sha256 is not None

    @property
    def is_archive_only_miss(self) -> bool:
        """An archive-only attempt (no live check) that found no copy: it says
        nothing about the source, so previews pass over it (history keeps it)."""
        return self.origin == "archive" and not self.has_content and self.live_outcome is None

    def to_dict(self, with_text: bool = True) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["fetched_at"] = rfc3339(self.fetched_at)
        data["content_first_seen"] = rfc3339(self.content_first_seen)
        data["captured_at"] = rfc3339(self.captured_at)
        data["content_fetched_at"] = rfc3339(self.content_fetched_at)
        data["redirects"] = [{"url": h.url, "status": h.status} for h in self.redirects]
        for key in ("outcome", "live_outcome", "archive_outcome", "transition", "render"):
            data[key] = _text(data[key])
        if not with_text:
            data.pop("text")
        return data


@dataclass(frozen=True)
class RunSummary:
    started_at: datetime
    finished_at: datetime
    counts: dict[Outcome, int] = field(default_factory=dict)  # by live outcome (the sources' health)
    changed: int = 0
    unchanged: int = 0
    failed: int = 0
    archived: int = 0
    newly_failing: int = 0
    recovered: int = 0
    not_due: int = 0
    health: dict[State, int] = field(default_factory=dict)  # states of all sources after the run, worst first
    interrupted: bool = False  # stopped by a signal: the counts are what was done before it

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "started_at": rfc3339(self.started_at),
            "finished_at": rfc3339(self.finished_at),
            "seconds": round((self.finished_at - self.started_at).total_seconds(), 3),
            "total": self.total,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "failed": self.failed,
            "archived": self.archived,
            "newly_failing": self.newly_failing,
            "recovered": self.recovered,
            "not_due": self.not_due,
            "interrupted": self.interrupted,
            "health": {state.value: n for state, n in self.health.items()},
            "counts": {outcome.value: n for outcome, n in sorted(self.counts.items())},
        }


def _text(value: Outcome | Transition | Rendering | None) -> str | None:
    return value.value if value is not None else None
