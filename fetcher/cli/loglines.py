"""A run's progress as one log line per source (fetcher.cli.progress picks
this or rich's bar, fetcher.cli.terminal.RunProgress, which falls back on it)."""

from __future__ import annotations

import logging

from fetcher.cli.logs import FIELDS
from fetcher.core.models import Snapshot
from fetcher.views.preview import human_size

log = logging.getLogger("fetcher")


class LogLines:
    """One log line per source fetched: its outcome, status, id, URL and size."""

    shown = False

    def start(self, total: int) -> None:
        pass

    def advance(self, snapshot: Snapshot) -> None:
        kind = snapshot.live_outcome or snapshot.outcome
        status = snapshot.live_status if snapshot.origin == "archive" else snapshot.http_status
        size = human_size(snapshot.text_chars) if snapshot.has_content else snapshot.detail
        if snapshot.origin == "archive" and snapshot.has_content:
            size = f"archived copy, {size}"
        fields = {
            "event": "fetched", "resource_id": snapshot.resource_id, "url": snapshot.url, "outcome": kind.value,
            "http_status": status, "origin": snapshot.origin, "text_chars": snapshot.text_chars,
            "changed": snapshot.changed, "transition": snapshot.transition.value if snapshot.transition else None,
        }
        log.info("%-16s %-4s %s %s (%s)", kind, status or "-", snapshot.resource_id, snapshot.url, size,
                 extra={FIELDS: fields})

    def move_to(self, done: int) -> None:
        pass

    def stop(self) -> None:
        pass
