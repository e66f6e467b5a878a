"""Text of a PDF, with pypdf."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

from pypdf import PdfReader

from fetcher.core.errors import ExtractFailed

MAX_PAGES = 2000


@dataclass(frozen=True)
class PdfText:
    text: str
    title: str | None
    pages: int


def extract_pdf(body: bytes) -> PdfText:
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # font warnings per page are noise here
    try:
        reader = PdfReader(io.BytesIO(body))
        if reader.is_encrypted:
            reader.decrypt("")
        pages = [page.extract_text() or "" for page in reader.pages[:MAX_PAGES]]
        title = reader.metadata.title if reader.metadata else None
        count = len(reader.pages)
    except Exception as error:  # pypdf raises many kinds on damaged files
        raise ExtractFailed(f"pypdf failed: {type(error).__name__}: {error}") from error
    return PdfText(text="\n\n".join(pages), title=str(title).strip() or None if title else None, pages=count)
