"""Is a 200 really the page? Soft 404s (an error page served as 200, or a
redirect of a deep link to the site's home page) and parked domains, by free
rules; and the comparison of a page with what its host answers for a path that
cannot exist (Bar-Yossef, Broder, Kumar and Tomkins, "Sic transit gloria telae:
towards an understanding of the Web's decay", WWW 2004), which run/probes.py
asks for once per host.

A host that answers a made-up path with a 404, a 410, any other non-2xx or a
redirect that ends in one is honest: nothing here flags its pages. A host that
answers it with a 200 has shown its error page (or whatever it serves for
unknown paths); a page whose text reads the same, with the same title, is that
error page served as 200.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

_SHORT = 3000  # an error or parking page is short; a long article that mentions "404" is not one
_NOT_FOUND = re.compile(
    r"\b(page (was )?not found|404 (error|not found)|error 404|"
    r"(page|article|document|content|file) (you (were looking for|requested)|requested) "
    r"(could not|cannot|can't|was not) (be )?found|no longer (exists|available)|"
    r"(this|the) page (doesn't|does not|no longer) exists?)\b",
    re.IGNORECASE,
)
_PARKED = re.compile(
    r"\b(this domain (name )?(is|may be) for sale|buy this domain|domain (is )?parked|parked (free|domain)|"
    r"the domain .{0,60} (is|may be) for sale)\b",
    re.IGNORECASE,
)


def soft_404_reason(url: str, final_url: str, title: str | None, text: str) -> str | None:
    """Why this 200 is not the cited page, or None if it looks like the page."""
    asked, landed = urlsplit(url), urlsplit(final_url)
    if asked.path.strip("/") and not landed.path.strip("/") and not landed.query:
        return f"soft 404: redirected to the site's home page {final_url}"
    head = f"{title or ''}\n{text[:_SHORT]}"
    if len(text) <= _SHORT and _PARKED.search(head):
        return "soft 404: a parked domain"
    if len(text) <= _SHORT and _NOT_FOUND.search(head):
        return "soft 404: the page says it was not found"
    return None


SHINGLE = 3  # words per shingle
ALIKE = 0.8  # Jaccard of shingles at or above which two texts are the same page
_WORD = re.compile(r"[^\W_]+")
_HOME_NAMES = re.compile(r"(index|default|home)(\.\w+)?", re.IGNORECASE)


@dataclass(frozen=True)
class Seen:
    """A page as compared here: where it was asked for and where it landed, its title and text."""

    url: str
    final_url: str
    title: str | None
    text: str


def url_words(*urls: str) -> frozenset[str]:
    """The words of each URL's path, query and fragment (percent-decoded, lower-cased):
    what an error page that echoes the requested address adds to its text."""
    words: set[str] = set()
    for url in urls:
        parts = urlsplit(url)
        tail = unquote(f"{parts.path} {parts.query} {parts.fragment}")
        words.update(word.lower() for word in _WORD.findall(tail))
    return frozenset(words)


def shingles(text: str, ignore: frozenset[str] = frozenset(), size: int = SHINGLE) -> frozenset[tuple[str, ...]]:
    """The text's runs of `size` consecutive words (lower-cased, `ignore`d words and
    the parts of words split by `_` left out); a shorter text is one shingle."""
    words = [word for word in (w.lower() for w in _WORD.findall(text)) if word not in ignore]
    if len(words) <= size:
        return frozenset([tuple(words)]) if words else frozenset()
    return frozenset(tuple(words[start : start + size]) for start in range(len(words) - size + 1))


def similarity(a: str, b: str, ignore: frozenset[str] = frozenset()) -> float:
    """Jaccard similarity of the two texts' word shingles, `ignore`d words left out:
    1.0 for the same text, near 0 for unrelated ones; two texts left empty are alike."""
    left, right = shingles(a, ignore), shingles(b, ignore)
    if not left and not right:
        return 1.0
    return len(left & right) / len(left | right)


def same_title(a: str | None, b: str | None, ignore: frozenset[str] = frozenset()) -> bool:
    """Titles equal once case, spacing and `ignore`d words (an echoed path) are set aside."""
    def key(title: str | None) -> tuple[str, ...]:
        return tuple(word for word in (w.lower() for w in _WORD.findall(title or "")) if word not in ignore)

    return key(a) == key(b)


def looks_like_probe(page: Seen, probe: Seen, alike: float = ALIKE) -> float | None:
    """The text similarity if `page` is the host's answer for a path that cannot
    exist (`probe`), else None. Both signals are needed: near-identical text once
    the words of every URL involved are left out (an error page may echo the path
    it was asked for), and the same title (alone it proves nothing: many sites
    give every page one title)."""
    ignore = url_words(page.url, page.final_url, probe.url, probe.final_url)
    if not same_title(page.title, probe.title, ignore):
        return None
    score = similarity(page.text, probe.text, ignore)
    return score if score >= alike else None


def origin_of(url: str) -> str:
    """scheme://host[:port], as the URL spells them (lower-cased)."""
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower().rpartition('@')[2]}"


def is_home(url: str) -> bool:
    """The site's home page (`/`, `/index.html` …): a page unknown paths may well answer with."""
    parts = urlsplit(url)
    path = parts.path.strip("/")
    return not parts.query and (not path or bool(_HOME_NAMES.fullmatch(path)))
