"""Read-only views of the store: the cached content preview, history rows and
export records. No network, no printing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fetcher.core.models import Snapshot
from fetcher.core.timestamps import rfc3339
from fetcher.store.sqlite import Store

_CUT_BACK = 200  # look this far back for a word boundary when cutting the preview


@dataclass(frozen=True)
class Preview:
    resource_id: str
    status_line: str
    excerpt: str
    truncated_line: str | None


def human_date(moment: datetime) -> str:
    return f"{moment:%b} {moment.day}, {moment.year}"


def human_size(chars: int | None) -> str:
    if not chars:
        return "0 KB"
    kilobytes = round(chars / 1024)
    return "<1 KB" if kilobytes == 0 else f"{kilobytes:,} KB"


def excerpt(text: str, chars: int) -> tuple[str, bool]:
    """The first `chars` characters, cut at a word boundary; and whether it was cut."""
    if len(text) <= chars:
        return text, False
    cut = text[:chars]
    boundary = max(cut.rfind(" "), cut.rfind("\n"))
    if boundary >= chars - _CUT_BACK:
        cut = cut[:boundary]
    return cut.rstrip(), True


def make_preview(latest: Snapshot, content: Snapshot | None, chars: int) -> Preview:
    """The preview of a resource: its latest fetch, and the newest content it ever had.
    "Fetched" is when the latest fetch was made; when it yielded the content (a 304
    or an unchanged body included), that is the latest date the content was
    confirmed current."""
    parts = [status_text(latest)]
    if content is not None and content.origin == "archive" and content.captured_at:
        parts.append(f"Captured {human_date(content.captured_at)} ({content.archive_name})")
    parts.append(f"Fetched {human_date(latest.fetched_at)}")
    if content is None:
        return Preview(latest.resource_id, " · ".join(parts + ["no content"]), latest.detail, None)
    if content.fetch_id != latest.fetch_id:
        parts.append(f"showing the copy fetched {human_date(content.fetched_at)}")
    size = human_size(content.text_chars)
    parts.append(size)
    text, cut = excerpt(content.text or "", chars)
    return Preview(latest.resource_id, " · ".join(parts), text, f"... (truncated, {size} total)" if cut else None)


def status_text(snapshot: Snapshot) -> str:
    """`HTTP 200`; `HTTP 404 → archived copy`; `HTTP 404 (http-404)`; `No response (dns-error)`.
    A fetch that holds content shows the status of the response that delivered
    the body: a 304 confirms the content, it does not replace its status."""
    if snapshot.origin == "archive" and snapshot.has_content:
        if snapshot.live_status is not None:
            return f"HTTP {snapshot.live_status} → archived copy"
        if snapshot.live_outcome:
            return f"No response ({snapshot.live_outcome}) → archived copy"
        return "Archived copy"
    if snapshot.has_content and snapshot.content_http_status is not None:
        return f"HTTP {snapshot.content_http_status}"
    status = f"HTTP {snapshot.http_status}" if snapshot.http_status is not None else "No response"
    return status if snapshot.has_content else f"{status} ({snapshot.outcome})"


def render_text(preview: Preview) -> str:
    lines = ["Cached Content Preview", preview.status_line]
    if preview.excerpt:
        lines.append(preview.excerpt)
    if preview.truncated_line:
        lines.append(preview.truncated_line)
    lines.append(f"Resource ID: {preview.resource_id}")
    return "\n".join(lines)


def render_markdown(preview: Preview) -> str:
    lines = ["### Cached Content Preview", "", f"**{preview.status_line}**", ""]
    if preview.excerpt:
        lines += [f"> {line}" if line else ">" for line in preview.excerpt.split("\n")]
        lines.append("")
    if preview.truncated_line:
        lines += [f"*{preview.truncated_line}*", ""]
    lines.append(f"Resource ID: `{preview.resource_id}`")
    return "\n".join(lines)


def record(latest: Snapshot, content: Snapshot | None, chars: int, title: str | None = None) -> dict[str, Any]:
    """One resource as a JSON-ready object: its latest fetch (`http_status`,
    `outcome`, `fetched_at`: the check's own), its newest content and the preview.
    `content_http_status` and `content_fetched_at` are those of the response that
    delivered the body held; `confirmed_at` is the latest date it was confirmed
    current (null without content). In `content`, `http_status` is the delivering
    response's status and `fetched_at` the confirmation date."""
    data = latest.to_dict(with_text=False)
    for key in ("content_type", "size_bytes", "text_chars", "sha256", "title", "language", "published",
                "content_first_seen", "content_http_status", "content_fetched_at"):
        data.pop(key)
    data["title"] = (content.title if content else None) or title
    data["content_http_status"] = content.content_http_status if content else None
    data["content_fetched_at"] = rfc3339(content.content_fetched_at) if content else None
    data["confirmed_at"] = rfc3339(content.fetched_at) if content else None
    data["content"] = content.to_dict() if content else None
    if data["content"]:
        for key in ("fetch_id", "resource_id", "url", "detail", "attempts", "elapsed_ms", "changed", "redirects",
                    "content_http_status", "content_fetched_at"):
            data["content"].pop(key)
        data["content"]["http_status"] = content.content_http_status if content else None
    data["preview"] = render_text(make_preview(latest, content, chars))
    return data


def latest_records(store: Store, chars: int, titles: dict[str, str | None]) -> Iterator[dict[str, Any]]:
    """The export: one record per stored resource, newest content included."""
    for latest in store.iter_latest():
        content = latest if latest.has_content else store.latest_with_content(latest.resource_id)
        yield record(latest, content, chars, titles.get(latest.resource_id))
