"""Soft 404s in any language: compare a page with what its host answers for a
path that cannot exist (Bar-Yossef, Broder, Kumar and Tomkins, "Sic transit
gloria telae: towards an understanding of the Web's decay", WWW 2004).

A host that answers a made-up path with a 404, a 410, any other non-2xx or a
redirect that ends in one is honest: nothing here flags its pages. A host that
answers it with a 200 has shown its error page (or whatever it serves for
unknown paths); a page whose text reads the same, with the same title, is that
error page served as 200. One probe per origin per run, made lazily and shared
by every source of the origin through one asyncio task.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from fetcher.download import Downloader, Gate
from fetcher.errors import Stopped
from fetcher.extract import Extractor
from fetcher.models import Download, Extracted
from fetcher.outcomes import Outcome

log = logging.getLogger("fetcher")

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


@dataclass(frozen=True)
class Probe:
    """What a host answered for a made-up path: `page` is set only for a 200 with readable text."""

    url: str
    status: int | None
    outcome: Outcome
    page: Seen | None = None


class HostProbes:
    """One probe per origin for the run, asked for lazily: `soft_404_reason` sends
    GET {scheme}://{host}/{32 random hex digits} through the shared downloader (so
    host slots and delays apply) the first time a page of that origin needs checking;
    concurrent sources of the origin await the same task."""

    def __init__(
        self,
        downloader: Downloader,
        extractor: Extractor,
        token: Callable[[], str] = lambda: secrets.token_hex(16),
        gate: Gate | None = None,
    ):
        """`gate`: robots.txt's verdict on a URL; a probe robots.txt disallows is not sent (no evidence)."""
        self._downloader = downloader
        self._extractor = extractor
        self._token = token
        self._gate = gate
        self._probes: dict[str, asyncio.Task[Probe]] = {}

    async def soft_404_reason(self, url: str, download: Download, extracted: Extracted) -> str | None:
        """'soft 404: …' if this HTML page reads like its host's answer for a made-up
        path, else None. A home page asked for, or the page unknown paths redirect to
        asked for directly, is never one."""
        if extracted.kind != "html" or is_home(url):
            return None
        probe = await self.probe(origin_of(download.final_url))
        if probe.page is None or (download.final_url == probe.page.final_url and not download.redirects):
            return None
        score = looks_like_probe(Seen(url, download.final_url, extracted.title, extracted.text), probe.page)
        if score is None:
            return None
        return (
            f"soft 404: reads like what the host answers for a path that cannot exist "
            f"({probe.url} answered {probe.status}; text {score:.0%} alike, same title)"
        )

    async def probe(self, origin: str) -> Probe:
        """The origin's probe, asked for once per run; cancelling one waiter leaves it running for the others."""
        task = self._probes.get(origin)
        if task is None:
            task = self._probes[origin] = asyncio.ensure_future(self._ask(f"{origin}/{self._token()}"))
        return await asyncio.shield(task)

    async def _ask(self, url: str) -> Probe:
        """The probe; one that fails in any way is no evidence (and fails no source)."""
        try:
            return await self._answer(url)
        except Stopped:  # the run is stopping: no evidence, and nothing worth a warning
            return Probe(url, None, Outcome.INTERNAL_ERROR)
        except Exception as error:  # noqa: BLE001 - shared by every source of the host
            log.warning("soft-404 probe %s failed: %r", url, error)
            return Probe(url, None, Outcome.INTERNAL_ERROR)

    async def _answer(self, url: str) -> Probe:
        refused = await self._gate(url) if self._gate is not None else None
        if refused is not None:
            return Probe(url, None, refused.outcome)
        download = await self._downloader.get(url, gate=self._gate)
        if download.outcome is not Outcome.OK:
            return Probe(url, download.http_status, download.outcome)
        extracted = await self._extractor.extract(download.body, download.content_type, download.final_url)
        if extracted.outcome is not Outcome.OK:
            return Probe(url, download.http_status, extracted.outcome)
        page = Seen(url, download.final_url, extracted.title, extracted.text)
        return Probe(url, download.http_status, Outcome.OK, page)
