"""The links in a Markdown or MDX document, read with markdown-it-py (CommonMark).

What counts, in the order the URLs are written:
- inline links `[text](url "title")`, titled by their text, else their title;
- images `![alt](url)`, titled by their alt text (unless `images=False`), also
  inside a link's text (badges);
- reference definitions `[label]: url "title"`, where they are defined, titled by the
  text of the first link that uses the label (unless that text is only a number,
  like `[1]`), else by their own title. `[^note]:` is a footnote, read as text;
- autolinks `<https://…>`, untitled;
- `href` attributes in raw HTML and JSX, titled by their element's text;
- bare URLs in running text and raw HTML, untitled, without the punctuation that
  ends the sentence (fetcher/cli/text_links.py).
Code spans, code blocks, comments and the text of links and images yield nothing
more. Link destinations are read the CommonMark way (escapes and entities decoded)
and otherwise kept as written: markdown-it-py's percent-encoding and punycode are
turned off. In MDX, `import`/`export` blocks are skipped, and, as in MDX, there are
no indented code blocks and no raw HTML blocks (JSX tags are read inside the text).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from markdown_it import MarkdownIt
from markdown_it.parser_inline import ParserInline
from markdown_it.rules_block.reference import reference
from markdown_it.rules_block.state_block import StateBlock
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token

from fetcher.cli.text_links import clean, markup_urls

# A line number (from 1), the URL, a title.
Hit = tuple[int, str, str | None]

_EMPHASIS = frozenset({"em_open", "em_close", "strong_open", "strong_close", "text_special"})
_ESM = re.compile(r"(?:import|export)\b")
_NEWLINE = re.compile("\n")
_COMMENTS = (("{/*", "*/}"),)
_MDX_COMMENTS = (("{/*", "*/}"), ("<!--", "-->"))


def markdown_links(text: str, *, mdx: bool = False, images: bool = True) -> list[Hit]:
    """Every link in a Markdown (or, with `mdx`, MDX) document, valid or not, in order."""
    links = _Links(images)
    for token in _parser(mdx).parse(text, {}):
        if token.type == "inline" and token.map:
            links.inline(token)
        elif token.type == "html_block" and token.map:
            start = token.map[0] + 1
            links.hits += [(start + token.content.count("\n", 0, at), url, title)
                           for at, url, title in markup_urls(token.content)]
        elif token.type == "definition" and token.map:
            links.definition(token, text)
    return links.resolved()


@dataclass
class _Links:
    """The hits of one document, as its tokens are read."""

    images: bool
    hits: list[Hit] = field(default_factory=list)
    # (index in hits, label) of each definition, titled once every use is known
    definitions: list[tuple[int, str]] = field(default_factory=list)
    # the text of the first link that uses each label
    used_as: dict[str, str] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)  # the document's, once needed

    def inline(self, token: Token) -> None:
        """The hits of a paragraph or heading."""
        assert token.map is not None
        prose = _Prose(token.content, token.map[0] + 1)
        for child in _flat(token.children or []):
            if child.type == "link_open":
                self._link(child, prose)
            elif child.type == "image":
                self._image(child, prose)
            elif child.type == "code_inline":
                prose.gap(child)
            else:
                prose.add(child)
        self.hits += prose.hits()

    def definition(self, token: Token, text: str) -> None:
        """`[label]: url "title"`, at the line where its URL is written."""
        assert token.map is not None
        if not self.lines:
            self.lines = text.split("\n")
        self.definitions.append((len(self.hits), token.meta["id"]))
        line = _definition_line(self.lines, token.map[0], token.meta["label"])
        self.hits.append((line, token.meta["url"], clean(token.meta["title"] or "")))

    def resolved(self) -> list[Hit]:
        """The hits, each definition titled by the first link that uses it, if any."""
        for index, label in self.definitions:
            line, url, own = self.hits[index]
            self.hits[index] = (line, url, self.used_as.get(label) or own)
        return self.hits

    def _link(self, token: Token, prose: _Prose) -> None:
        """An autolink, untitled; an inline link, titled by its text (as written, made
        plain) or its title; a use of a reference, which is no hit of its own."""
        close: Token = token.meta["close"]
        if token.info == "auto":
            prose.link(token, str(token.attrs["href"]), None, token.meta["pos"])
            return
        text = prose.src[token.meta["pos"]:close.meta["pos"]]  # between `[` and `]`
        if self._used(token, text):
            prose.gap(token)
        else:
            title = clean(text) or clean(str(token.attrs.get("title", "")))
            prose.link(token, str(token.attrs["href"]), title, close.meta["pos"] + 2)

    def _image(self, token: Token, prose: _Prose) -> None:
        """An inline image, titled by its alt text (as written, made plain) or title."""
        if self._used(token, token.content) or not self.images:
            prose.gap(token)
            return
        title = clean(token.content) or clean(str(token.attrs.get("title", "")))
        end = token.meta["pos"] + 2 + len(token.content)  # `![` alt `]`
        prose.link(token, str(token.attrs["src"]), title, end + 2)

    def _used(self, token: Token, text: str) -> bool:
        """Whether the link is a use of a reference; the first use's text is kept."""
        label = token.meta.get("label")
        if label is None:
            return False
        title = clean(text)
        if title and not title.isdigit():
            self.used_as.setdefault(label, title)
        return True


class _Prose:
    """The text of one paragraph or heading as written, with code spans, links and
    images blanked out, for the bare URLs and HTML/JSX hrefs in it; and the links."""

    def __init__(self, src: str, first_line: int) -> None:
        self.src = src
        self.first_line = first_line
        self._newlines = [match.start() for match in _NEWLINE.finditer(src)] if "\n" in src else []
        self._parts: list[str] = []
        self._starts: list[int] = []  # offset of each part in the prose
        self._lines: list[int] = []  # line of each part's start
        self._length = 0
        self._links: list[tuple[int, Hit]] = []  # (offset in the prose, hit)

    def line(self, pos: int) -> int:
        """The line of an offset in the paragraph's source."""
        return self.first_line + bisect.bisect_left(self._newlines, pos)

    def add(self, token: Token) -> None:
        """Text as written: emphasis markers, escapes and entities as in the source."""
        if token.type in ("softbreak", "hardbreak"):
            part = "\n"
        elif token.type in _EMPHASIS:
            part = token.markup
        else:
            part = token.content
        self._append(part, token.meta.get("pos", 0))

    def link(self, token: Token, url: str, title: str | None, url_pos: int) -> None:
        """A link or image: a gap in the prose, and a hit at the line of its URL, which
        starts at url_pos after white space and at most one line end."""
        while url_pos < len(self.src) and self.src[url_pos] in " \t\n":
            url_pos += 1
            if self.src[url_pos - 1] == "\n":
                break
        self._links.append((self._length, (self.line(url_pos), url, title)))
        self.gap(token)

    def gap(self, token: Token) -> None:
        """Something that is not prose (a code span, a link): a space."""
        self._append(" ", token.meta.get("pos", 0))

    def hits(self) -> list[Hit]:
        """The links, and the URLs in the prose, in the order they are written."""
        prose = "".join(self._parts)
        newlines = [match.start() for match in _NEWLINE.finditer(prose)]
        found: list[tuple[int, Hit]] = list(self._links)
        found += [(at, (self._line_in_prose(newlines, at), url, title)) for at, url, title in markup_urls(prose)]
        return [hit for _, hit in sorted(found, key=lambda item: item[0])]

    def _append(self, part: str, pos: int) -> None:
        self._parts.append(part)
        self._starts.append(self._length)
        self._lines.append(self.line(pos))
        self._length += len(part)

    def _line_in_prose(self, newlines: list[int], at: int) -> int:
        """The line of an offset in the prose (whose line ends are at `newlines`): its
        part's line, plus the part's own line ends before it (a raw HTML tag may span
        lines)."""
        index = bisect.bisect_right(self._starts, at) - 1
        within = bisect.bisect_left(newlines, at) - bisect.bisect_left(newlines, self._starts[index])
        return self._lines[index] + within


def _flat(children: Sequence[Token]) -> list[Token]:
    """The inline tokens with each link's text left out, except for the images in it,
    and each link_open moved after them, where its URL is; its meta["close"] is its
    link_close."""
    flat: list[Token] = []
    opened: Token | None = None
    for child in children:
        if child.type == "link_open":
            opened = child
        elif child.type == "link_close" and opened is not None:
            opened.meta["close"] = child
            flat.append(opened)
            opened = None
        elif opened is None or child.type == "image":
            flat.append(child)
    return flat


def _definition_line(lines: list[str], first: int, label: str) -> int:
    """The line (from 1) of a definition's URL: after `]:`, on that line or the next."""
    line = first + label.count("\n")
    rest = lines[line].partition("]:")[2] if line < len(lines) else ""
    return line + (1 if rest.strip() else 2)


# -- the parser -----------------------------------------------------------------


@lru_cache(maxsize=2)
def _parser(mdx: bool) -> MarkdownIt:
    """CommonMark, with definitions as tokens, reference links labelled, token
    positions recorded, URLs kept as written and escapes kept apart from text."""
    md = MarkdownIt()
    md.inline = _PlacedInline()
    md.configure("commonmark", {"inline_definitions": True, "store_labels": True})
    md.normalizeLink = lambda url: url  # type: ignore[method-assign]
    md.validateLink = lambda url: True  # type: ignore[method-assign]
    md.core.ruler.disable("text_join")
    md.block.ruler.at("reference", _reference_unless_footnote)
    comments = _MDX_COMMENTS if mdx else _COMMENTS
    md.block.ruler.before("fence", "comment", _comment_rule(comments), {"alt": ["paragraph"]})
    if mdx:
        md.disable(["code", "html_block"])
        md.block.ruler.before("fence", "esm", _esm)
    return md


class _PlacedState(StateInline):
    """Inline state that records in each token's meta["pos"] where it was pushed:
    where the token's source starts, or for text where it ends (on the same line)."""

    def push(self, ttype: str, tag: str, nesting: Literal[-1, 0, 1]) -> Token:
        token = super().push(ttype, tag, nesting)
        token.meta["pos"] = self.pos
        return token

    def pushPending(self) -> Token:
        token = super().pushPending()
        token.meta["pos"] = self.pos
        return token


class _PlacedInline(ParserInline):
    """The inline parser, on _PlacedState."""

    def parse(self, src: str, md: MarkdownIt, env: Any, tokens: list[Token]) -> list[Token]:
        state = _PlacedState(src, md, env, tokens)
        self.tokenize(state)
        for rule in self.ruler2.getRules(""):
            rule(state)
        return state.tokens


def _reference_unless_footnote(state: StateBlock, start: int, end: int, silent: bool) -> bool:
    """A reference definition, but not a footnote `[^note]: …`, which stays text."""
    if state.src.startswith("[^", state.bMarks[start] + state.tShift[start]):
        return False
    return reference(state, start, end, silent)


def _comment_rule(pairs: tuple[tuple[str, str], ...]) -> Any:
    """A block rule that skips a comment that a line opens and does not close, up to
    the line that closes it (or to the end), blank lines included. A comment that
    closes on its own line is left to the text, which skips it."""

    def comment(state: StateBlock, start: int, end: int, silent: bool) -> bool:
        if state.sCount[start] - state.blkIndent >= 4:
            return False
        line_text = state.src[state.bMarks[start] + state.tShift[start]:state.eMarks[start]]
        closing = next((close for open_, close in pairs if line_text.startswith(open_)), None)
        if closing is None or closing in line_text:
            return False
        if not silent:
            line = start + 1
            while line < end and closing not in state.src[state.bMarks[line]:state.eMarks[line]]:
                line += 1
            state.line = min(line + 1, end)
        return True

    return comment


def _esm(state: StateBlock, start: int, end: int, silent: bool) -> bool:
    """MDX `import`/`export` at the start of a line: skipped up to a blank line."""
    begin = state.bMarks[start]
    if state.level or state.tShift[start] or (begin and state.src[begin - 1] != "\n"):
        return False
    if not _ESM.match(state.src, begin):
        return False
    if not silent:
        line = start + 1
        while line < end and not state.isEmpty(line):
            line += 1
        state.line = line
    return True
