"""When a fetched HTML page is worth rendering in a browser: a pure function of
its body, the text the static extraction found and the configuration.

The static fetch stays the norm. A page is rendered when its static text is
empty or very short *and* its HTML looks like a client-side app — mostly
script by bytes, an empty mount element (`<div id="root"></div>`,
`<app-root></app-root>` …), a `<noscript>` asking for JavaScript, or a
framework's marker (`__NEXT_DATA__`, `data-reactroot`, `ng-version`,
`window.__NUXT__` …) — or when the source (`render = "always"`) or its host
(`[render] hosts`) is configured to always render; never with
`render = "never"`. Only the first MAX_SCAN bytes are looked at, so the rule
costs next to nothing on ordinary pages (which have text: they stop at the
first test).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_SCAN = 512 * 1024
SCRIPT_SHARE = 0.5  # of the page's bytes inside <script> elements: "mostly scripts"

_SCRIPT = re.compile(rb"<script\b[^>]*>(.*?)</script\s*>", re.IGNORECASE | re.DOTALL)
_MOUNT = re.compile(
    rb"<(?:div|main|section|body)\b[^>]*\bid\s*=\s*[\"']?(root|app|__next|__nuxt|___gatsby|svelte|main-app|react-root"
    rb"|app-root|application)[\"'\s>][^>]*>\s*(?:<!--.*?-->\s*)?</(?:div|main|section|body)\s*>"
    rb"|<(app-root|my-app|ng-app)\b[^>]*>\s*</\2\s*>",
    re.IGNORECASE | re.DOTALL,
)
_NOSCRIPT = re.compile(
    rb"<noscript\b[^>]*>(?:(?!</noscript).){0,600}?(?:enable|turn on|need|requires?|activate|allow)"
    rb"(?:(?!</noscript).){0,60}?javascript",
    re.IGNORECASE | re.DOTALL,
)
_MARKERS = (
    b"__NEXT_DATA__", b"data-reactroot", b"ng-version", b"window.__NUXT__", b"__NUXT_DATA__", b"data-v-app",
    b"data-server-rendered", b"data-sveltekit", b"window.__INITIAL_STATE__", b"window.__APOLLO_STATE__",
    b"ember-application", b"data-n-head",
)


@dataclass(frozen=True)
class Decision:
    render: bool
    reason: str
    looks_like_app: bool = False  # the page looked like a client-side app (whether or not it is rendered)


def decide(body: bytes, text_chars: int, mode: str = "auto", always_host: bool = False,
           min_text_chars: int = 200) -> Decision:
    """Whether to render a page whose static extraction found `text_chars`
    characters of text. `mode` is the source's (or a one-off's) "auto",
    "always" or "never"; `always_host`: its host is in `[render] hosts`."""
    if mode == "never":
        return Decision(False, "render = \"never\"")
    if mode == "always":
        return Decision(True, "render = \"always\"")
    if always_host:
        return Decision(True, "host in [render] hosts")
    if text_chars >= min_text_chars:
        return Decision(False, f"static text has {text_chars} characters")
    signs = app_signs(body[:MAX_SCAN])
    if not signs:
        return Decision(False, f"static text has {text_chars} characters; the page does not look like a client-side app")
    return Decision(True, f"static text has {text_chars} characters; " + ", ".join(signs), looks_like_app=True)


def app_signs(head: bytes) -> list[str]:
    """What in this HTML says it is a client-side app, in words (empty: nothing)."""
    signs = []
    mount = _MOUNT.search(head)
    if mount:
        name = (mount.group(1) or mount.group(2) or b"").decode("ascii", "replace")
        signs.append(f"empty mount element ({name})")
    script_bytes = sum(len(match.group(1)) for match in _SCRIPT.finditer(head))
    if head and script_bytes / len(head) >= SCRIPT_SHARE:
        signs.append(f"{100 * script_bytes // len(head)}% of the HTML is script")
    if _NOSCRIPT.search(head):
        signs.append("a <noscript> asks for JavaScript")
    markers = [marker.decode() for marker in _MARKERS if marker in head]
    if markers:
        signs.append("framework markers: " + ", ".join(markers))
    return signs
