"""URLs in running text and in raw HTML or JSX: bare `https://…` URLs, with the
punctuation that ends a sentence left off, and `href` attributes, with the text of
the element that holds them as a title. Positions are offsets in the text given.

Used for plain-text files and for the text, raw HTML and JSX in Markdown/MDX
(fetcher/cli/markdown_links.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from html import unescape

# An offset in the text, the URL, a title.
TextHit = tuple[int, str, str | None]

_BARE_URL = re.compile(r"(?<![^\W_])https?://[^\s<>\"`]+", re.IGNORECASE)
_TRAILING = ".,;:!?'*_~"
_CLOSING = {")": "(", "]": "[", "}": "{"}
_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)|\{/\*.*?(?:\*/\}|\Z)", re.DOTALL)
_HREF = re.compile(
    r"""\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|\{\s*(?:"([^"\\]*)"|'([^'\\]*)'|`([^`$\\]*)`)\s*\})""",
    re.IGNORECASE,
)
_TAG_START = re.compile(r"<([A-Za-z][\w.]*)")
_TAG = re.compile(r"""</?[A-Za-z][\w.:-]*(?:\s(?:[^<>"'{}]|"[^"\n]*"|'[^'\n]*'|\{[^{}]*\})*)?/?>""")
_ESCAPED = re.compile(r"\\([!-/:-@\[-`{-~])")
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_NESTED_LINK = re.compile(r"!?\[([^\[\]]*)\](?:\([^()]*\)|\[[^\[\]]*\])")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def trim(url: str) -> str:
    """Without the punctuation that ends the sentence rather than the URL: trailing
    `.,;:!?'*_~`, and a closing `)`, `]` or `}` that has no opening partner."""
    while url:
        last = url[-1]
        if last in _TRAILING:
            url = url[:-1]
        elif last in _CLOSING and url.count(last) > url.count(_CLOSING[last]):
            url = url[:-1]
        else:
            break
    return url


def bare_urls(text: str) -> list[TextHit]:
    """Every http(s) URL in running text, trimmed, with no title."""
    return [(match.start(), trim(match.group()), None) for match in _BARE_URL.finditer(text)]


def markup_urls(text: str) -> list[TextHit]:
    """The URLs in text that may hold raw HTML or JSX, in order: `href` attribute values
    (entities decoded in quoted HTML values; JSX string expressions as written), titled
    by the text of their element, and bare URLs outside tags. Comments (`<!-- -->`,
    `{/* */}`; an unclosed one runs to the end) are skipped."""
    masked = blank(text, _spans(_COMMENT, text))
    hrefs = list(_HREF.finditer(masked))
    hits = [_href_hit(text, masked, match) for match in hrefs]
    masked = blank(masked, [match.span() for match in hrefs])
    masked = blank(masked, _spans(_TAG, masked))
    hits.extend(bare_urls(masked))
    return sorted(hits, key=lambda hit: hit[0])


def blank(text: str, spans: Iterable[tuple[int, int]]) -> str:
    """`text` with the spans turned into spaces (newlines kept)."""
    chars = list(text)
    changed = False
    for start, end in spans:
        changed = True
        for index in range(start, end):
            if chars[index] != "\n":
                chars[index] = " "
    return "".join(chars) if changed else text


def _spans(pattern: re.Pattern[str], text: str) -> list[tuple[int, int]]:
    return [match.span() for match in pattern.finditer(text)]


def _href_hit(text: str, masked: str, match: re.Match[str]) -> TextHit:
    """An `href` value, titled by the text of its element."""
    group = next(number for number in range(1, 6) if match.group(number) is not None)
    value = text[match.start(group):match.end(group)].strip()
    if group <= 2:  # an HTML-style attribute; JSX expressions hold JavaScript strings
        value = _ENTITY.sub(lambda entity: unescape(entity.group()), value)
    return match.start(group), value, _element_text(text, masked, match)


def _element_text(text: str, masked: str, href: re.Match[str]) -> str | None:
    """The text between the tag that holds `href` and its closing tag, if any."""
    opening = masked.rfind("<", 0, href.start())
    name = _TAG_START.match(masked, opening) if opening >= 0 else None
    end = masked.find(">", href.end())
    if name is None or ">" in masked[opening:href.start()] or end < 0 or masked[end - 1] == "/":
        return None
    closing = re.compile(rf"</{re.escape(name.group(1))}\s*>", re.IGNORECASE).search(text, end + 1)
    if closing is None:
        return None
    return clean(text[end + 1:closing.start()])


def clean(title: str) -> str | None:
    """Link text as plain words: nested links and images (`[text](url)`, `![alt][label]`)
    by their text, no tags, code ticks, emphasis stars or escapes; white space
    collapsed. None when nothing is left."""
    title = _NESTED_LINK.sub(r"\1", title)
    title = _TAG.sub("", title)
    title = _ESCAPED.sub(r"\1", title.replace("`", "").replace("*", ""))
    title = " ".join(CONTROL.sub(" ", title).split())
    return title or None
