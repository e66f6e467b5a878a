"""Main text and metadata of an HTML page, with trafilatura (and htmldate, which
trafilatura uses for dates)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trafilatura
from htmldate import find_date
from lxml import etree
from lxml import html as lxml_html
from trafilatura.metadata import examine_meta, extract_title, extract_url
from trafilatura.settings import set_date_params
from trafilatura.utils import load_html

from fetcher.core.errors import ExtractFailed

if TYPE_CHECKING:
    from lxml.html import HtmlElement  # the tree trafilatura parses

log = logging.getLogger("fetcher")

# Cheap bounds applied right after parsing, before trafilatura's passes (its cost is
# linear in elements and in attribute bytes, ~50 us an element on 2 cores). The 181
# corpus pages have at most 1,596 elements and 26,990 characters in one attribute.
MAX_ELEMENTS = 100_000
MAX_ATTRIBUTE = 65_536
_NOT_TEXT = ("script", "style", "noscript", "template")
_COUNT = etree.XPath("count(//*)")
_LONG_ATTRIBUTE = etree.XPath("//@*[string-length(.) > $limit]")  # the attributes: 0.23 ms a page, not 0.32
# Elements the page itself hides from every reader (inline display:none, the `hidden`
# attribute), outermost only; and the length of the text in a set of elements.
_IS_HIDDEN = "@hidden or contains(translate(@style, 'DISPLAYNOE \t\r\n', 'displaynoe'), 'display:none')"
_HIDDEN = etree.XPath(f"//body//*[{_IS_HIDDEN}][not(ancestor::*[{_IS_HIDDEN}])]")
_TEXT_LENGTH = etree.XPath("string-length(normalize-space(.))")
HIDDEN_SHARE = 0.75  # hidden text beyond this share of the page's: the page shows it by script, keep it
_BLOCK_START = re.compile(
    r"<(?:p|div|br|li|tr|h[1-6]|pre|blockquote|section|article|table|dd|dt|hr)\b", re.IGNORECASE
)

_LANG = re.compile(r"""<html[^>]*?\slang\s*=\s*["']?([A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})?)""", re.IGNORECASE)


@dataclass(frozen=True)
class Article:
    text: str
    title: str | None
    published: str | None
    language: str | None


def extract_article(html: str, url: str | None) -> Article:
    """The page is parsed once. Only the metadata we keep (title, date) is looked
    for, as trafilatura's `with_metadata` looks for it: trafilatura also hunts
    authors, categories, tags and licences, a fifth of the extraction time (the
    181 corpus pages, each process timed alone: 3.01 s against 2.46 s of CPU on
    the first pass, 2.79 against 2.21 s warm; same text, titles and dates).
    Title and date then cost ~0.2 ms of a page's ~12 ms (median over the corpus).

    Settings: comments off, tables in, trafilatura's default balance (no
    `favor_precision`). favor_precision scores higher on the 181 corpus pages
    (token F1 0.9605 against 0.9549) but lower on trafilatura's held-out set of
    990 pages (0.913 against 0.926); weighted over both, 0.920 against 0.930.
    It also costs 17% more CPU a page. README "How a fetch goes" has the figures."""
    try:
        tree = load_html(html)
        if tree is None:
            return Article(text="", title=None, published=None, language=_language(html))
        if (elements := count_elements(tree)) > MAX_ELEMENTS:
            del tree  # before a second parse: one big tree at a time
            return _plain_text(html, elements)
        drop_long_attributes(tree, html)
        title, published = _title_and_date(tree, url)  # hidden metadata still dates the page
        drop_hidden(tree)
        document = trafilatura.bare_extraction(
            tree,  # copied by trafilatura before it prunes
            url=url,
            include_comments=False,
            include_tables=True,
        )
    except MemoryError:  # the worker's memory limit: reported as such by the caller
        raise
    except Exception as error:  # trafilatura/lxml raise many kinds on odd pages
        raise ExtractFailed(f"trafilatura failed: {type(error).__name__}: {error}") from error
    return Article(
        text=_text_of(document),
        title=title,
        published=published,
        language=_language(html),
    )


def drop_long_attributes(tree: HtmlElement, source: str) -> None:
    """Remove attribute values over MAX_ATTRIBUTE characters (inline data: images,
    JSON blobs): no text is in them, and every pass of trafilatura and htmldate
    over them costs time (a 10 MB attribute: 11 s). Found by XPath, in C; a tree
    is only searched when the page is long enough to hold such a value."""
    if len(source) <= MAX_ATTRIBUTE:
        return
    for attribute in _LONG_ATTRIBUTE(tree, limit=MAX_ATTRIBUTE):
        element = attribute.getparent()
        if element is not None and attribute.attrname in element.attrib:
            del element.attrib[attribute.attrname]


def drop_hidden(tree: HtmlElement) -> None:
    """Remove what the page hides from its readers: elements styled `display:none`
    inline or marked `hidden` (schema.org metadata blocks repeating the headline,
    keywords and dates; templates of dialogs). trafilatura drops such elements only
    inside the article block it picks, not in the fallbacks it mixes in. A page
    whose hidden elements hold most of its text shows them by script once loaded
    (an app shell, a reveal on load): there nothing is removed.

    On the 181 corpus pages: 128 hide something; the text of one changes (token F1
    0.46 → 0.99), none gets worse; corpus F1 0.9549 → 0.9578. Cost: two XPath
    passes in C, ~1% of a page's extraction. Runs after the title and date are
    read: a hidden schema.org block still dates the page."""
    hidden = _HIDDEN(tree)
    if not hidden:
        return
    body = tree.find("body")
    if sum(_TEXT_LENGTH(element) for element in hidden) > HIDDEN_SHARE * _TEXT_LENGTH(tree if body is None else body):
        return
    for element in hidden:
        element.drop_tree()


def count_elements(tree: HtmlElement) -> int:
    """Elements in the tree, counted by XPath in C (no Python object per element)."""
    return int(_COUNT(tree))


def _plain_text(html: str, elements: int) -> Article:
    """The degraded reading of a page with absurdly many elements: all of its text
    but scripts and styles, a line per block, found in C at parsing speed, instead
    of trafilatura's article, which would take minutes (400,000 elements: 61 s, 724 MB)."""
    tree = lxml_html.document_fromstring(_BLOCK_START.sub("\n\\g<0>", html))
    etree.strip_elements(tree, *_NOT_TEXT, with_tail=False)
    body = tree.find("body")
    title = " ".join((tree.findtext(".//title") or "").split()) or None
    log.info("page has %d elements (more than %d): kept its plain text, not the article", elements, MAX_ELEMENTS)
    return Article(text=(body if body is not None else tree).text_content(), title=title, published=None,
                   language=_language(html))


def _title_and_date(tree: HtmlElement, url: str | None) -> tuple[str | None, str | None]:
    """Title and publication date, or None for what cannot be read: a page whose
    metadata trips htmldate or trafilatura still has its text."""
    try:
        meta = examine_meta(tree)
        title = " ".join((meta.title or extract_title(tree) or "").split()) or None
    except Exception:  # noqa: BLE001 - metadata is a bonus, the text is the point
        return None, None
    try:
        # The page's own URL (og:url, canonical) often carries the date; without it
        # htmldate falls back to dateparser, whose locale tables cost ~1 s and 30 MB.
        return title, find_date(tree, url=meta.url or extract_url(tree, url), **set_date_params(True)) or None
    except Exception:  # noqa: BLE001
        return title, None


def _language(html: str) -> str | None:
    found = _LANG.search(html[:20000])
    return found.group(1) if found else None


def _text_of(document: object) -> str:
    """The text of what bare_extraction returned: a Document (or a dict when asked), or None."""
    if isinstance(document, dict):
        return str(document.get("text") or "")
    return str(getattr(document, "text", None) or "")
