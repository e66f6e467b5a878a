"""Links in documents: the http(s) URLs that a Markdown/MDX, HTML, CSV or plain-text
file cites (for `fetcher sources import` and `fetcher audit --from`), and which of
them are not configured yet. Appending them to config.toml is fetcher/cli/config_file.py.

URLs are kept as written, since the resource id is the hash of the URL as written.
The only changes are the ones the document's own syntax calls for:
- URLs found in running text lose trailing punctuation (`.,;:!?'*_~`) and an
  unbalanced closing `)`, `]` or `}`. Balanced parentheses stay, so
  `https://en.wikipedia.org/wiki/Foo_(bar)` is kept whole.
- Markdown link destinations are read the CommonMark way: backslash escapes and
  `&...;` entities are decoded.
- Relative HTML links are resolved against `<base href>`. Without a base they are
  ignored.
Markdown is read with markdown-it-py (fetcher/cli/markdown_links.py), HTML with lxml,
CSV with the csv module. Markdown images `![alt](https://...)` count as links, with
the alt text as the title; pass `images=False` to leave them out. In raw HTML/JSX,
and in HTML files, only `href` attributes count: `<img src>` does not.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from lxml import etree
from lxml import html as lxml_html

from fetcher.cli.markdown_links import Hit, markdown_links
from fetcher.cli.text_links import CONTROL, bare_urls
from fetcher.core.models import Source
from fetcher.core.sources import BadURL, check_url, normalise

MARKDOWN = frozenset({".md", ".mdx", ".markdown"})
HTML = frozenset({".html", ".htm"})
CSV = frozenset({".csv"})


@dataclass(frozen=True)
class FoundLink:
    """A link in a document: the URL as written, its title if the document gives one,
    and where it was found."""

    url: str
    title: str | None
    where: str  # "path:line", or "path" when no line is known


# -- reading files ---------------------------------------------------------------


def links_in_file(path: Path, *, images: bool = True) -> list[FoundLink]:
    """Every valid http(s) link in one file, in the order the URLs appear, repeats
    included. The file's extension decides how it is read. Raises OSError if the file
    cannot be read and csv.Error for a CSV file the csv module rejects."""
    text = _read_text(path)
    suffix = path.suffix.lower()
    if suffix in HTML:
        return _html_links(text, str(path))
    if suffix in CSV:
        return _csv_links(text, str(path))
    text = _unix_newlines(text)
    if suffix in MARKDOWN:
        hits = markdown_links(text, mdx=suffix == ".mdx", images=images)
    else:
        hits = _text_hits(text)
    return [FoundLink(url, title, f"{path}:{line}") for line, url, title in hits if _valid(url)]


def links_in_files(paths: list[Path], *, images: bool = True) -> tuple[list[FoundLink], list[str]]:
    """The links of all the files, with no repeated URL (the first occurrence is kept),
    and one line for each file that could not be read. Never raises for a bad file."""
    links: list[FoundLink] = []
    problems: list[str] = []
    seen: set[str] = set()
    for path in paths:
        try:
            if not path.exists():
                problems.append(f"{path}: file not found")
                continue
            if path.is_dir():
                problems.append(f"{path}: is a directory, not a file")
                continue
            if not path.is_file():
                problems.append(f"{path}: not a regular file")
                continue
            found = links_in_file(path, images=images)
        except OSError as error:
            problems.append(f"{path}: cannot read the file: {error.strerror or error}")
            continue
        except csv.Error as error:
            problems.append(f"{path}: not a readable CSV file: {error}")
            continue
        for link in found:
            if link.url not in seen:
                seen.add(link.url)
                links.append(link)
    return links, problems


def _read_text(path: Path) -> str:
    """UTF-8 (BOM or not), UTF-16 with a BOM, else Latin-1, which cannot fail."""
    data = path.read_bytes()
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        with contextlib.suppress(UnicodeDecodeError):
            return data.decode("utf-16")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _unix_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _valid(url: str) -> bool:
    try:
        check_url(url)
    except BadURL:
        return False
    return True


# -- plain text ------------------------------------------------------------------


def _text_hits(text: str) -> list[Hit]:
    """A URL list: one URL a line, kept exactly as written; other lines are scanned for
    URLs. Blank lines and lines starting with # are skipped."""
    hits: list[Hit] = []
    for number, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            if _valid(stripped):
                hits.append((number, stripped, None))
            else:
                hits.extend((number, url, None) for _, url, _ in bare_urls(line))
    return hits


# -- HTML ----------------------------------------------------------------------


def _html_links(text: str, where: str) -> list[FoundLink]:
    """`<a href>`, absolute http(s) links as written; relative ones only through an
    absolute `<base href>`."""
    try:
        document = lxml_html.document_fromstring(
            _unix_newlines(text).encode("utf-8"), parser=lxml_html.HTMLParser(encoding="utf-8")
        )
    except (etree.ParserError, ValueError):  # an empty document
        return []
    base = next((element.get("href", "").strip() for element in document.iter("base") if element.get("href")), "")
    base = base if _valid(base) else ""
    links = []
    for anchor in document.iter("a"):
        href = (anchor.get("href") or "").strip()
        if not href or href.startswith("#"):
            continue
        try:
            if not urlsplit(href).scheme:
                if not base:
                    continue
                href = urljoin(base, href)
        except ValueError:  # e.g. a broken IPv6 address
            continue
        if _valid(href):
            line = f"{where}:{anchor.sourceline}" if anchor.sourceline else where
            links.append(FoundLink(href, _anchor_title(anchor), line))
    return links


def _anchor_title(anchor: lxml_html.HtmlElement) -> str | None:
    candidates = [anchor.text_content(), anchor.get("title") or ""]
    candidates += [image.get("alt") or "" for image in anchor.iter("img")]
    return next((title for title in map(_plain, candidates) if title), None)


def _plain(text: str) -> str | None:
    return " ".join(CONTROL.sub(" ", text).replace("\ufffd", " ").split()) or None


# -- CSV -----------------------------------------------------------------------


def _csv_links(text: str, where: str) -> list[FoundLink]:
    """The `url` column (any case), or if there is none every cell that is an http(s)
    URL; the `title` column gives titles. The delimiter is a comma, unless the header
    names a url column only when split on ';' or a tab."""
    first_line = text.split("\n", 1)[0]
    delimiter = next((candidate for candidate in (",", ";", "\t")
                      if "url" in _header(first_line, candidate)), ",")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows = []
    start = 1
    for row in reader:
        rows.append((start, row))
        start = reader.line_num + 1
    if not rows:
        return []
    header = [cell.strip().casefold() for cell in rows[0][1]]
    url_column = header.index("url") if "url" in header else None
    title_column = header.index("title") if "title" in header else None
    links = []
    for line, row in rows[1:] if url_column is not None else rows:
        title = _plain(row[title_column]) if title_column is not None and title_column < len(row) else None
        columns = [url_column] if url_column is not None else range(len(row))
        for column in columns:
            if column < len(row) and _valid(row[column].strip()):
                links.append(FoundLink(row[column].strip(), title, f"{where}:{line}"))
    return links


def _header(line: str, delimiter: str) -> list[str]:
    try:
        cells = next(csv.reader([line], delimiter=delimiter), [])
    except csv.Error:
        return []
    return [cell.strip().casefold() for cell in cells]


# -- which links are new -------------------------------------------------------


def new_sources(
    found: list[FoundLink], existing: tuple[Source, ...]
) -> tuple[list[FoundLink], list[tuple[FoundLink, Source]]]:
    """(links not configured yet, (link, configured source) pairs that look like
    duplicates). A link whose URL is configured exactly is left out silently. A link
    whose URL normalises like a configured one is a duplicate: it goes in the pairs
    only, so that the caller can warn about it."""
    configured = {source.url for source in existing}
    by_form: dict[str, Source] = {}
    for source in existing:
        by_form.setdefault(normalise(source.url), source)
    fresh: list[FoundLink] = []
    duplicates: list[tuple[FoundLink, Source]] = []
    for link in found:
        if link.url in configured:
            continue
        twin = by_form.get(normalise(link.url))
        if twin is not None:
            duplicates.append((link, twin))
        else:
            fresh.append(link)
    return fresh, duplicates
