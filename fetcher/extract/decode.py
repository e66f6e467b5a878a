"""Bytes to text: the declared charset, the page's own <meta>, then detection
(charset_normalizer), so a mislabelled page does not turn into U+FFFD soup."""

from __future__ import annotations

import codecs
import re

from fetcher.core.errors import UndecodableText

_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)""", re.IGNORECASE)
_HEADER_CHARSET = re.compile(r"""charset\s*=\s*["']?([a-zA-Z0-9_.:-]+)""", re.IGNORECASE)
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
# Browsers read these labels as windows-1252; so do we.
_ALIASES = {"iso-8859-1": "cp1252", "latin-1": "cp1252", "latin1": "cp1252", "us-ascii": "cp1252", "ascii": "cp1252"}


def charset_from_content_type(content_type: str | None) -> str | None:
    match = _HEADER_CHARSET.search(content_type or "")
    return match.group(1) if match else None


def decode_text(body: bytes, declared: str | None, html: bool) -> tuple[str, str]:
    """Return (text, encoding used). Valid UTF-8 wins over a declared single-byte
    charset: non-ASCII UTF-8 that is meant as Latin-1 practically never occurs."""
    for bom, encoding in _BOMS:
        if body.startswith(bom):
            return body.decode(encoding, errors="replace"), encoding
    candidates: list[str | None] = ["utf-8", declared]
    if html:
        match = _CHARSET.search(body[:4096])
        candidates.append(match.group(1).decode("ascii") if match else None)
    for name in candidates:
        known = _known_encoding(name)
        if known is None:
            continue
        try:
            return body.decode(known), known
        except UnicodeDecodeError:
            continue
    return _detect(body)


def _detect(body: bytes) -> tuple[str, str]:
    """charset_normalizer's best guess; among equally good guesses, windows-1252,
    the web's own fallback (cp1250 and cp1252 often tie on French or German).
    charset_normalizer is imported here, when first needed: a run that extracts
    nothing (every check a 304) does not load it."""
    from charset_normalizer import from_bytes

    matches = list(from_bytes(body))
    if not matches:
        raise UndecodableText("could not tell the text encoding")
    best = matches[0]
    ties = [m for m in matches if (m.chaos, m.coherence) == (best.chaos, best.coherence)]
    chosen = next((m for m in ties if "cp1252" in (m.encoding, *m.could_be_from_charset)), best)
    return str(chosen), chosen.encoding


def _known_encoding(name: str | None) -> str | None:
    if not name:
        return None
    name = _ALIASES.get(name.strip().lower(), name.strip().lower())
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None
