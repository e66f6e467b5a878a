"""Readable text from a body: detect the type from bytes and headers, then hand it
to the HTML, PDF or plain-text path. Runs off the event loop (process pool for
runs, a thread for one-off fetches) so downloads keep flowing."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import re
import signal
import threading
import time
import unicodedata
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from fetcher.decode import UndecodableText, charset_from_content_type, decode_text
from fetcher.errors import ExtractFailed
from fetcher.extract_html import extract_article
from fetcher.extract_pdf import extract_pdf
from fetcher.models import Extracted
from fetcher.processes import alive
from fetcher.outcomes import Outcome

_HTML_TYPES = {"text/html", "application/xhtml+xml"}
_TEXT_TYPES = {"application/json", "application/xml", "text/xml", "application/rss+xml", "application/atom+xml"}
_HTML_START = re.compile(rb"^\s*(<!--.*?-->\s*)*<(!doctype\s+html|html|head|body)[\s>]", re.IGNORECASE | re.DOTALL)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACES = re.compile(r"[ \t\u00a0]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def mime_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def sniff_kind(body: bytes, content_type: str | None) -> str:
    """'pdf', 'html', 'text' or 'unknown', from the bytes first, then the header:
    a body that starts as HTML is HTML and one with `%PDF-` in its first KB is a
    PDF, whatever the Content-Type claims (HTML error pages served as
    application/pdf are common); only bytes that say neither defer to the header."""
    head = body[:1024]
    if _HTML_START.match(head):
        return "html"
    if b"%PDF-" in head:
        return "pdf"
    declared = mime_type(content_type)
    if declared == "application/pdf":
        return "pdf"
    if declared in _HTML_TYPES:
        return "html"
    if declared.startswith("text/") or declared in _TEXT_TYPES:
        return "text"
    if declared in ("", "application/octet-stream", "binary/octet-stream") and b"\x00" not in head:
        return "text"
    return "unknown"


def extract(body: bytes, content_type: str | None, url: str | None) -> Extracted:
    """Extract readable text; every problem with the document becomes an outcome."""
    kind = sniff_kind(body, content_type)
    try:
        if kind == "pdf":
            result = _from_pdf(body)
        elif kind == "html":
            result = _from_html(body, content_type, url)
        elif kind == "text":
            result = _from_text(body, content_type)
        else:
            detail = f"cannot extract text from {mime_type(content_type) or 'unlabelled binary'} content"
            return Extracted(outcome=Outcome.UNSUPPORTED_TYPE, kind=kind, detail=detail)
    except UndecodableText as error:
        return Extracted(outcome=Outcome.DECODE_ERROR, kind=kind, detail=str(error))
    except ExtractFailed as error:
        return Extracted(outcome=Outcome.EXTRACT_FAILED, kind=kind, detail=str(error))
    if not result.text.strip():
        return Extracted(outcome=Outcome.EMPTY, kind=kind, title=result.title, detail="no readable text found")
    return result


def _from_html(body: bytes, content_type: str | None, url: str | None) -> Extracted:
    html, _ = decode_text(body, charset_from_content_type(content_type), html=True)
    article = extract_article(html, url)
    return Extracted(
        outcome=Outcome.OK,
        kind="html",
        text=tidy(article.text),
        title=article.title,
        language=article.language,
        published=article.published,
    )


def _from_pdf(body: bytes) -> Extracted:
    pdf = extract_pdf(body)
    text = tidy(unicodedata.normalize("NFKC", pdf.text))
    return Extracted(outcome=Outcome.OK, kind="pdf", text=text, title=pdf.title)


def _from_text(body: bytes, content_type: str | None) -> Extracted:
    text, _ = decode_text(body, charset_from_content_type(content_type), html=False)
    text = tidy(text)
    first_line = text.strip().split("\n", 1)[0].strip() if text.strip() else ""
    return Extracted(outcome=Outcome.OK, kind="text", text=text, title=first_line[:200] or None)


def tidy(text: str) -> str:
    """Drop control characters, fold runs of spaces, keep at most one blank line."""
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def exit_with(parent: int, every: float = 0.5) -> None:
    """Pool-worker initializer: end this worker soon after `parent` dies, even by
    kill -9 (a worker otherwise waits on its task queue forever), and leave
    SIGTERM/SIGINT to the parent."""

    def watch() -> None:
        while alive(parent):
            time.sleep(every)
        os._exit(0)

    # A SIGTERM or Ctrl-C sent to the whole process group is the parent's to
    # handle: it finishes or abandons the run and then shuts the pool down.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


class Extractor:
    """Runs extract() away from the event loop: in worker processes (for runs of
    many sources) or in a thread (for a one-off fetch, no process start-up)."""

    def __init__(self, processes: bool, workers: int | None = None):
        self._processes = processes
        self._workers = workers or os.cpu_count() or 1
        self._pool: Executor | None = None

    async def extract(self, body: bytes, content_type: str | None, url: str | None) -> Extracted:
        loop = asyncio.get_running_loop()
        if not self._processes:
            return await asyncio.to_thread(extract, body, content_type, url)
        if self._pool is None:
            context = multiprocessing.get_context("spawn")  # no fork of a threaded process; no forkserver to lose
            self._pool = ProcessPoolExecutor(
                max_workers=self._workers, mp_context=context, initializer=exit_with, initargs=(os.getpid(),)
            )
        try:
            return await loop.run_in_executor(self._pool, extract, body, content_type, url)
        except BrokenProcessPool:
            self.close()
            return Extracted(outcome=Outcome.EXTRACT_FAILED, kind="unknown", detail="the extractor process died")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
