"""The outcome taxonomy: every fetch attempt ends in exactly one of these kinds.

Problems with the web are values, not exceptions. Each kind says whether it is
a success, whether a retry may help and whether an archived copy should stand
in. (A source's states — dead, failing, blocked… — are built on these in
fetcher/core/health.py.) A StrEnum: each kind is its string value wherever it
is printed or written as JSON.
"""

from __future__ import annotations

import enum


class Outcome(enum.StrEnum):
    OK = "ok"
    NOT_MODIFIED = "not-modified"
    DNS_ERROR = "dns-error"
    CONNECT_REFUSED = "connect-refused"
    CONNECT_ERROR = "connect-error"
    TLS_ERROR = "tls-error"
    TIMEOUT = "timeout"
    NETWORK_ERROR = "network-error"
    TRUNCATED = "truncated"
    REDIRECT_LOOP = "redirect-loop"
    HTTP_401 = "http-401"
    HTTP_403 = "http-403"
    HTTP_404 = "http-404"
    HTTP_410 = "http-410"
    HTTP_429 = "http-429"
    HTTP_4XX = "http-4xx"
    HTTP_5XX = "http-5xx"
    TOO_LARGE = "too-large"
    UNSUPPORTED_TYPE = "unsupported-type"
    BAD_CONTENT = "bad-content"
    DECODE_ERROR = "decode-error"
    EMPTY = "empty"
    EXTRACT_FAILED = "extract-failed"
    PRIVATE_ADDRESS = "private-address"
    ROBOTS_BLOCKED = "robots-blocked"
    ARCHIVE_MISS = "archive-miss"
    ARCHIVE_ERROR = "archive-error"
    INTERNAL_ERROR = "internal-error"
    RENDER_TIMEOUT = "render-timeout"
    RENDER_FAILED = "render-failed"
    RENDER_BLOCKED = "render-blocked"
    RENDER_NAVIGATED = "render-navigated"

    @property
    def is_success(self) -> bool:
        return self in _SUCCESS

    @property
    def is_transient(self) -> bool:
        """A retry within the same run may succeed."""
        return self in _TRANSIENT

    @property
    def got_no_answer(self) -> bool:
        """No HTTP answer came at all: the host could not be reached, or broke off."""
        return self in _NO_ANSWER

    @property
    def wants_archive(self) -> bool:
        """An archived copy should stand in for the live page. (401/403 bot walls
        and 429 are a matter of policy: see ArchivePolicy.)"""
        return self in _ARCHIVE_WORTHY


_SUCCESS = frozenset({Outcome.OK, Outcome.NOT_MODIFIED})

_TRANSIENT = frozenset(
    {
        Outcome.TIMEOUT,
        Outcome.NETWORK_ERROR,
        Outcome.CONNECT_ERROR,
        Outcome.TRUNCATED,
        Outcome.HTTP_429,
        Outcome.HTTP_5XX,
    }
)

_NO_ANSWER = frozenset(
    {
        Outcome.DNS_ERROR,
        Outcome.CONNECT_REFUSED,
        Outcome.CONNECT_ERROR,
        Outcome.TLS_ERROR,
        Outcome.TIMEOUT,
        Outcome.NETWORK_ERROR,
        Outcome.TRUNCATED,
        Outcome.PRIVATE_ADDRESS,
    }
)

_ARCHIVE_WORTHY = _NO_ANSWER | {
    Outcome.REDIRECT_LOOP,
    Outcome.HTTP_404,
    Outcome.HTTP_410,
    Outcome.HTTP_5XX,
    Outcome.BAD_CONTENT,
    Outcome.EMPTY,
    Outcome.ROBOTS_BLOCKED,
}


NO_BROWSER = "empty without a browser"  # how the detail of an app page left empty, rendering off, begins


class Rendering(enum.StrEnum):
    """What became of a fetched HTML page's rendering decision (fetcher.extract.render_rule)."""

    NOT_NEEDED = "not-needed"  # the static page has its text, or does not look like a client-side app
    RENDERED = "rendered"  # rendered in the browser: the content is the rendered DOM's
    FAILED = "failed"  # rendering was tried and failed: the outcome says how (render-*)
    OFF = "off"  # it looked like an app (or was configured to render), but rendering is off or unavailable


def outcome_for_status(status: int) -> Outcome:
    """The outcome kind of a final (non-redirect) HTTP status."""
    if 200 <= status < 300:
        return Outcome.OK
    if status == 304:
        return Outcome.NOT_MODIFIED
    specific = {
        401: Outcome.HTTP_401,
        403: Outcome.HTTP_403,
        404: Outcome.HTTP_404,
        410: Outcome.HTTP_410,
        429: Outcome.HTTP_429,
    }
    if status in specific:
        return specific[status]
    if status >= 500:
        return Outcome.HTTP_5XX
    if status >= 400:
        return Outcome.HTTP_4XX
    return Outcome.BAD_CONTENT  # 1xx, or a 3xx that led nowhere
