"""Readable text from a body: detect the type from bytes and headers, then hand it
to the HTML, PDF or plain-text path. Synchronous, and run off the event loop
(fetcher.extract.extractor). The HTML and PDF libraries are imported when a
document of that kind comes (a one-off fetch of a page never loads pypdf); a
worker process imports both as it starts (fetcher.extract.worker), and this
module without asyncio or the pool's side."""

from __future__ import annotations

import re
import unicodedata

from fetcher.core.errors import ExtractFailed
from fetcher.core.models import Extracted
from fetcher.core.outcomes import Outcome
from fetcher.extract.decode import UndecodableText, charset_from_content_type, decode_text

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
    from fetcher.extract.html import extract_article

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
    from fetcher.extract.pdf import extract_pdf

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
