"""Is a 200 really the page? Soft 404s (an error page served as 200, or a
redirect of a deep link to the site's home page) and parked domains."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

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
