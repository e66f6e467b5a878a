"""Source identity: resource ids, URL checks and duplicate detection."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

from fetcher.core.models import Hop, Source
from fetcher.core.errors import BadURL

_RESOURCE_ID = re.compile(r"^[0-9a-f]{16}$")
_SPACE = re.compile(r"\s")  # what str.isspace() calls white space, Unicode's included
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def resource_id(url: str) -> str:
    """The knowledge base's id: sha256 of the URL exactly as written, 16 hex digits."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


def looks_like_resource_id(text: str) -> bool:
    return bool(_RESOURCE_ID.match(text))


def check_url(url: str) -> str:
    """Return the URL unchanged if it is an absolute http(s) URL, else raise BadURL."""
    if not isinstance(url, str) or not url.strip():
        raise BadURL("URL is empty")
    if _SPACE.search(url):
        raise BadURL(f"URL {url!r} contains white space")
    if _CONTROL.search(url):
        raise BadURL(f"URL {url!r} contains a control character")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as error:
        raise BadURL(f"URL {url!r} is malformed: {error}") from error
    if parts.scheme.lower() not in ("http", "https"):
        raise BadURL(f"URL {url!r}: only http and https URLs are accepted")
    if not parts.hostname:
        raise BadURL(f"URL {url!r} has no host")
    return url


def make_source(
    url: str, title: str | None = None, tags: Iterable[str] = (), refresh_every: float | None = None,
    render: str = "auto",
) -> Source:
    check_url(url)
    return Source(url=url, resource_id=resource_id(url), title=title, tags=tuple(tags), refresh_every=refresh_every,
                  render=render)


def normalise(url: str) -> str:
    """A form for finding duplicates only (never for ids): scheme, www, port,
    trailing slash and fragment folded away."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if host.startswith("www."):
        host = host[4:]
    port = parts.port
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    netloc = host if port in (None, default) else f"{host}:{port}"
    path = parts.path.rstrip("/") or "/"
    return urlunsplit(("http", netloc, path, parts.query, ""))


def find_duplicates(sources: Iterable[Source]) -> list[tuple[Source, Source]]:
    """Pairs (first, later) of sources whose URLs normalise to the same form."""
    seen: dict[str, Source] = {}
    pairs = []
    for source in sources:
        key = normalise(source.url)
        if key in seen:
            pairs.append((seen[key], source))
        else:
            seen[key] = source
    return pairs


def host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def moved_permanently(url: str, redirects: Iterable[Hop], final_url: str) -> str | None:
    """Where the URL now lives, if every hop was a permanent redirect (301/308) and
    the end is not just another spelling of the same URL; else None."""
    hops = list(redirects)
    if not hops or any(hop.status not in (301, 308) for hop in hops):
        return None
    return final_url if normalise(final_url) != normalise(url) else None
