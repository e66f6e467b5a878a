"""Links in documents: the http(s) URLs that a Markdown/MDX, HTML, CSV or plain-text
file cites (for `fetcher sources import` and `fetcher audit --from`), and appending
the new ones to config.toml without touching what is already there.

URLs are kept as written, since the resource id is the hash of the URL as written.
The only changes are the ones the document's own syntax calls for:
- URLs found in running text lose trailing punctuation (`.,;:!?'*_~`) and an
  unbalanced closing `)`, `]` or `}`. Balanced parentheses stay, so
  `https://en.wikipedia.org/wiki/Foo_(bar)` is kept whole.
- Markdown link destinations are read the CommonMark way: backslash escapes and
  `&...;` entities are decoded.
- Relative HTML links are resolved against `<base href>`. Without a base they are
  ignored.
Markdown images `![alt](https://...)` count as links, with the alt text as the title.
Pass `images=False` to leave them out. In raw HTML/JSX, and in HTML files, only `href`
attributes count: `<img src>` does not.
"""

from __future__ import annotations

import bisect
import codecs
import contextlib
import csv
import io
import os
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from html import unescape
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from lxml import etree
from lxml import html as lxml_html

from fetcher.core.config import ConfigError, load_config, parse_config
from fetcher.store.files import write_atomically
from fetcher.core.models import Source
from fetcher.core.sources import BadURL, check_url, normalise

MARKDOWN = frozenset({".md", ".mdx", ".markdown"})
HTML = frozenset({".html", ".htm"})
CSV = frozenset({".csv"})


@dataclass(frozen=True)
class FoundLink:
    url: str
    title: str | None
    where: str  # "path:line", or "path" when no line is known


# A position in the document (to order links by where their URL is written), the URL, a title.
_Hit = tuple[int, str, str | None]


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
        hits = _markdown_hits(text, mdx=suffix == ".mdx", images=images)
    else:
        hits = _text_hits(text)
    return _found(text, hits, str(path))


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


def _found(text: str, hits: list[_Hit], where: str) -> list[FoundLink]:
    """Hits ordered by position, checked, with line numbers."""
    newlines = [index for index, char in enumerate(text) if char == "\n"]
    links = []
    for offset, url, title in sorted(hits, key=lambda hit: hit[0]):
        if _valid(url):
            line = bisect.bisect_left(newlines, offset) + 1
            links.append(FoundLink(url, title, f"{where}:{line}"))
    return links


def _valid(url: str) -> bool:
    try:
        check_url(url)
    except BadURL:
        return False
    return True


# -- URLs in running text ------------------------------------------------------------

_BARE_URL = re.compile(r"(?<![^\W_])https?://[^\s<>\"`]+", re.IGNORECASE)
_TRAILING = ".,;:!?'*_~"
_CLOSING = {")": "(", "]": "[", "}": "{"}


def _trim(url: str) -> str:
    """Without the punctuation that ends the sentence rather than the URL."""
    while url:
        last = url[-1]
        if last in _TRAILING:
            url = url[:-1]
        elif last in _CLOSING and url.count(last) > url.count(_CLOSING[last]):
            url = url[:-1]
        else:
            break
    return url


def _bare_hits(text: str, base: int = 0) -> list[_Hit]:
    return [(base + match.start(), _trim(match.group()), None) for match in _BARE_URL.finditer(text)]


def _text_hits(text: str) -> list[_Hit]:
    """A URL list: one URL a line, kept exactly as written; other lines are scanned for
    URLs. Blank lines and lines starting with # are skipped."""
    hits: list[_Hit] = []
    offset = 0
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            if _valid(stripped):
                hits.append((offset + line.index(stripped), stripped, None))
            else:
                hits.extend(_bare_hits(line, offset))
        offset += len(line) + 1
    return hits


# -- Markdown and MDX ------------------------------------------------------------
#
# The text is read in passes. Each pass records what it finds and blanks it out, so
# that the later passes (and finally the scan for bare URLs) do not see it again.
# Blanking keeps offsets and newlines, so positions and line numbers stay true.

_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})(.*)$")
_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)|\{/\*.*?(?:\*/\}|\Z)", re.DOTALL)
_ESM = re.compile(r"^(?:import|export)\b.*?(?:\n[ \t]*\n|\Z)", re.MULTILINE | re.DOTALL)
_TICKS = re.compile(r"`+")
_DEFINITION = re.compile(
    r"""^[ ]{0,3}\[(?!\^)((?:[^\[\]\\\n]|\\.){1,999})\]:[ \t]*(?:<([^<>\n]*)>|(\S+))"""
    r"""(?:[ \t]+(?:"((?:[^"\\\n]|\\.)*)"|'((?:[^'\\\n]|\\.)*)'|\(((?:[^()\\\n]|\\.)*)\)))?[ \t]*$""",
    re.MULTILINE,
)
_REFERENCE = re.compile(r"\[((?:[^\[\]\\]|\\.)+)\](?:\[((?:[^\[\]\\]|\\.)*)\])?(?!\()")
_HREF = re.compile(
    r"""\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|\{\s*(?:"([^"\\]*)"|'([^'\\]*)'|`([^`$\\]*)`)\s*\})""",
    re.IGNORECASE,
)
_TAG_START = re.compile(r"<([A-Za-z][\w.]*)")
_TAG = re.compile(r"""</?[A-Za-z][\w.:-]*(?:\s(?:[^<>"'{}]|"[^"\n]*"|'[^'\n]*'|\{[^{}]*\})*)?/?>""")
_AUTOLINK = re.compile(r"<(https?://[^\s<>]*)>", re.IGNORECASE)
_ESCAPED = re.compile(r"\\([!-/:-@\[-`{-~])")
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_NESTED_LINK = re.compile(r"!?\[([^\[\]]*)\]\([^()]*\)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _markdown_hits(text: str, mdx: bool, images: bool) -> list[_Hit]:
    masked = _blank(text, _fenced_spans(text))
    masked = _blank(masked, _spans(_COMMENT, masked))
    if mdx:
        masked = _blank(masked, _spans(_ESM, masked))
    masked = _blank(masked, _code_spans(masked))

    hits: list[_Hit] = []
    definitions = list(_DEFINITION.finditer(masked))
    masked = _blank(masked, [match.span() for match in definitions])
    hits.extend(_definition_hits(text, masked, definitions))

    hrefs = list(_HREF.finditer(masked))
    hits.extend(_href_hit(text, masked, match) for match in hrefs)
    masked = _blank(masked, [match.span() for match in hrefs])
    masked = _blank(masked, _spans(_TAG, masked))

    inline, spans = _inline_links(text, masked, _bracket_pairs(masked), 0, len(masked), images)
    hits.extend(inline)
    masked = _blank(masked, spans)

    autolinks = list(_AUTOLINK.finditer(masked))
    hits.extend((match.start(1), match.group(1), None) for match in autolinks)
    masked = _blank(masked, [match.span() for match in autolinks])

    hits.extend(_bare_hits(masked))
    return hits


def _blank(text: str, spans: Iterable[tuple[int, int]]) -> str:
    """`text` with the spans turned into spaces (newlines kept)."""
    chars = list(text)
    for start, end in spans:
        for index in range(start, end):
            if chars[index] != "\n":
                chars[index] = " "
    return "".join(chars)


def _spans(pattern: re.Pattern[str], text: str) -> list[tuple[int, int]]:
    return [match.span() for match in pattern.finditer(text)]


def _fenced_spans(text: str) -> list[tuple[int, int]]:
    """Fenced code blocks (``` or ~~~, at any indentation), fences included. An
    unclosed fence runs to the end of the document, as in CommonMark."""
    spans = []
    fence = ""
    start = offset = 0
    for line in text.split("\n"):
        if not fence:
            match = _FENCE.match(line)
            if match and not (match.group(1)[0] == "`" and "`" in match.group(2)):
                fence, start = match.group(1), offset
        else:
            stripped = line.strip()
            if len(stripped) >= len(fence) and set(stripped) == {fence[0]}:
                spans.append((start, offset + len(line)))
                fence = ""
        offset += len(line) + 1
    if fence:
        spans.append((start, len(text)))
    return spans


def _code_spans(text: str) -> list[tuple[int, int]]:
    """Inline code: a run of backticks up to the next run of the same length, on one line."""
    spans = []
    offset = 0
    for line in text.split("\n"):
        runs = list(_TICKS.finditer(line))
        following: list[int | None] = [None] * len(runs)  # the next run of the same length
        latest: dict[int, int] = {}
        for number in range(len(runs) - 1, -1, -1):
            length = len(runs[number].group())
            following[number] = latest.get(length)
            latest[length] = number
        index = 0
        while index < len(runs):
            closer = following[index]
            if closer is None:
                index += 1
                continue
            spans.append((offset + runs[index].start(), offset + runs[closer].end()))
            index = closer + 1
        offset += len(line) + 1
    return spans


def _definition_hits(text: str, masked: str, definitions: list[re.Match[str]]) -> list[_Hit]:
    """`[label]: url "title"`. The title is the text of the first link that uses the label
    (unless that text is only a number, like [1]), else the definition's own title."""
    texts: dict[str, str] = {}
    for match in _REFERENCE.finditer(masked):
        words, label = match.group(1), match.group(2)
        key = _label(label if label else words)
        title = _clean(text[match.start(1):match.end(1)])
        if key not in texts and title and not title.isdigit():
            texts[key] = title
    hits = []
    for match in definitions:
        group = 2 if match.group(2) is not None else 3
        url = _destination_url(text[match.start(group):match.end(group)])
        own = next((value for value in match.group(4, 5, 6) if value is not None), None)
        title = texts.get(_label(match.group(1))) or _clean(own or "")
        hits.append((match.start(group), url, title))
    return hits


def _label(label: str) -> str:
    return " ".join(label.split()).casefold()


def _href_hit(text: str, masked: str, match: re.Match[str]) -> _Hit:
    group = next(number for number in range(1, 6) if match.group(number) is not None)
    value = text[match.start(group):match.end(group)].strip()
    if group <= 2:  # an HTML-style attribute; JSX expressions hold JavaScript strings
        value = _ENTITY.sub(lambda entity: unescape(entity.group()), value)
    return match.start(group), value, _anchor_text(text, masked, match)


def _anchor_text(text: str, masked: str, href: re.Match[str]) -> str | None:
    """The text between the tag that holds `href` and its closing tag, if any."""
    opening = masked.rfind("<", 0, href.start())
    name = _TAG_START.match(masked, opening) if opening >= 0 else None
    end = masked.find(">", href.end())
    if name is None or ">" in masked[opening:href.start()] or end < 0 or masked[end - 1] == "/":
        return None
    closing = re.compile(rf"</{re.escape(name.group(1))}\s*>", re.IGNORECASE).search(text, end + 1)
    if closing is None:
        return None
    return _clean(text[end + 1:closing.start()])


def _inline_links(
    text: str, masked: str, pairs: dict[int, int], low: int, high: int, images: bool
) -> tuple[list[_Hit], list[tuple[int, int]]]:
    """`[text](url "title")` and `![alt](url)` between low and high, with their spans.
    Images inside a link's text (badges) are found too."""
    hits: list[_Hit] = []
    spans: list[tuple[int, int]] = []
    index = low
    while True:
        opening = masked.find("[", index, high)
        if opening < 0:
            return hits, spans
        index = opening + 1
        if opening > 0 and masked[opening - 1] == "\\":
            continue
        closing = pairs.get(opening)
        if closing is None or closing + 1 >= high or masked[closing + 1] != "(":
            continue
        destination = _destination(text, masked, closing + 2, high)
        if destination is None:
            continue
        url_start, url_end, quoted, after = destination
        image = opening > 0 and masked[opening - 1] == "!"
        inner, _ = _inline_links(text, masked, pairs, opening + 1, closing, images)
        hits.extend(inner)
        if images or not image:
            title = _clean(text[opening + 1:closing]) or _clean(quoted or "")
            hits.append((url_start, _destination_url(text[url_start:url_end]), title))
        spans.append((opening - 1 if image else opening, after))
        index = after


def _bracket_pairs(masked: str) -> dict[int, int]:
    """Each `[` that has a matching `]` in the same paragraph, to that `]`. One pass,
    so that a document full of stray brackets takes no longer than any other."""
    pairs: dict[int, int] = {}
    open_at: list[int] = []
    index = 0
    while index < len(masked):
        char = masked[index]
        if char == "\\":
            index += 2
            continue
        if char == "[":
            open_at.append(index)
        elif char == "]" and open_at:
            pairs[open_at.pop()] = index
        elif char == "\n" and _blank_line_at(masked, index + 1, len(masked)):
            open_at.clear()
        index += 1
    return pairs


def _blank_line_at(masked: str, index: int, high: int) -> bool:
    while index < high and masked[index] in " \t":
        index += 1
    return index >= high or masked[index] == "\n"


def _skip_space(masked: str, index: int, high: int) -> int:
    """Past spaces and tabs, and at most one line end."""
    newline = False
    while index < high and masked[index] in " \t\n":
        if masked[index] == "\n":
            if newline:
                break
            newline = True
        index += 1
    return index


def _destination(text: str, masked: str, index: int, high: int) -> tuple[int, int, str | None, int] | None:
    """After `](`: (url start, url end, quoted title, index after the closing `)`), or
    None when this is not a link."""
    index = _skip_space(masked, index, high)
    if index < high and masked[index] == "<":
        end = index + 1
        while end < high and masked[end] not in "<>\n":
            end += 2 if masked[end] == "\\" else 1
        if end >= high or masked[end] != ">":
            return None
        url_start, url_end, index = index + 1, end, end + 1
    else:
        url_start = index
        depth = 0
        while index < high:
            char = masked[index]
            if char == "\\":
                index += 2
                continue
            if char.isspace() or ord(char) < 0x20:
                break
            if char == "(":
                depth += 1
            elif char == ")":
                if depth == 0:
                    break
                depth -= 1
            index += 1
        if depth:
            return None
        url_end = index = min(index, high)
    quoted = None
    after = _skip_space(masked, index, high)
    if after > index and after < high and masked[after] in "\"'(":
        closer = ")" if masked[after] == "(" else masked[after]
        end = after + 1
        while end < high and masked[end] != closer:
            if masked[end] == "\n" and _blank_line_at(masked, end + 1, high):
                return None
            end += 2 if masked[end] == "\\" else 1
        if end >= high:
            return None
        quoted = text[after + 1:end]
        after = _skip_space(masked, end + 1, high)
    if after < high and masked[after] == ")":
        return url_start, url_end, quoted, after + 1
    return None


def _destination_url(raw: str) -> str:
    """A Markdown link destination as the renderer reads it: escapes and entities decoded."""
    return _ENTITY.sub(lambda entity: unescape(entity.group()), _ESCAPED.sub(r"\1", raw))


def _clean(title: str) -> str | None:
    """Link text as plain words: nested links by their text, no tags, code ticks,
    emphasis stars or escapes; white space collapsed. None when nothing is left."""
    title = _NESTED_LINK.sub(r"\1", title)
    title = _TAG.sub("", title)
    title = _ESCAPED.sub(r"\1", title.replace("`", "").replace("*", ""))
    title = " ".join(_CONTROL.sub(" ", title).split())
    return title or None


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
    return " ".join(_CONTROL.sub(" ", text).replace("\ufffd", " ").split()) or None


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


# -- writing config.toml ---------------------------------------------------------

_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def toml_string(value: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for char in value:
        if char in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def append_sources(config_path: Path, links: list[FoundLink], *, now: datetime | None = None) -> int:
    """Append a [[sources]] table for each link to the end of the config file and return
    how many were added. URLs that are configured already, or repeated, are skipped.
    The existing bytes are kept as they are. The file is replaced atomically, and only
    if the result still loads. Raises ConfigError, with one line, if the config cannot
    be read or written or would stop loading."""
    config = load_config(config_path)
    configured = {source.url for source in config.sources}
    fresh = []
    for link in links:
        if link.url not in configured:
            configured.add(link.url)
            fresh.append(link)
    if not fresh:
        return 0
    target = Path(os.path.realpath(config_path))
    try:
        original = target.read_bytes()
    except OSError as error:
        raise ConfigError(f"{config_path}: cannot read the config file: {error.strerror or error}") from error
    newline = "\r\n" if b"\r\n" in original else "\n"
    day = (now or datetime.now(timezone.utc)).date().isoformat()
    block = _sources_block(fresh, day)
    if not original:
        separator = ""
    elif original.endswith(b"\n\n") or original.endswith(b"\r\n\r\n"):
        separator = ""
    elif original.endswith(b"\n"):
        separator = "\n"
    else:
        separator = "\n\n"
    updated = original + (separator + block).replace("\n", newline).encode("utf-8")
    try:
        parse_config(tomllib.loads(updated.decode("utf-8")), config_path)
    except (tomllib.TOMLDecodeError, ConfigError) as error:
        detail = str(error).removeprefix(f"{config_path}: ")
        raise ConfigError(f"{config_path}: adding the sources would break the config: {detail}") from error
    try:
        write_atomically(target, lambda out: out.write(updated), public=True, sync=True)
    except OSError as error:
        raise ConfigError(f"{config_path}: cannot write the config file: {error.strerror or error}") from error
    return len(fresh)


def _sources_block(links: list[FoundLink], day: str) -> str:
    origin = ", ".join(dict.fromkeys(_file_of(link.where) for link in links if link.where))
    comment = f"# added by fetcher sources import on {day}" + (f" from {origin}" if origin else "")
    lines = [_CONTROL.sub("?", comment)]
    for number, link in enumerate(links):
        if number:
            lines.append("")
        lines += ["[[sources]]", f"url = {toml_string(link.url)}"]
        if link.title:
            lines.append(f"title = {toml_string(link.title)}")
    return "\n".join(lines) + "\n"


def _file_of(where: str) -> str:
    """The path part of "path:line"."""
    head, _, tail = where.rpartition(":")
    return head if head and tail.isdigit() else where
