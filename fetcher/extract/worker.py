"""What an extraction worker process runs: `extract`, with the HTML and PDF
libraries imported when the worker starts (it imports this module by name,
fetcher.extract.serving.NamedJob), before it says "ready": neither a document's
time limit nor the worker's memory limit pays for them. fetcher's main process
does not import this module."""

from __future__ import annotations

from fetcher.core.models import Extracted
from fetcher.extract import html, pdf  # noqa: F401 - imported up front, see above
from fetcher.extract.document import extract


def extract_in_worker(body: bytes, content_type: str | None, url: str | None) -> Extracted:
    return extract(body, content_type, url)
