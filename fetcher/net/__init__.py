"""Talking to the web: the one HTTP client, per-host politeness, retries, the
address guard, robots.txt and the archive client. Builds on core."""

import sys
import types


def _without_httpx_command_line() -> None:
    """httpx imports its command-line client (`httpx._main`: rich's console and
    progress, pygments) whenever click and rich are installed, as they are here:
    ~26 ms of every fetcher process's start, for a `main` fetcher never calls. A
    stand-in module takes its place before httpx is first imported."""
    if "httpx" in sys.modules or "httpx._main" in sys.modules:
        return
    stand_in = types.ModuleType("httpx._main", "fetcher's stand-in: httpx's command line is not used")

    def main() -> None:
        raise SystemExit("httpx's command line is not available inside fetcher")

    stand_in.main = main  # type: ignore[attr-defined]
    sys.modules["httpx._main"] = stand_in


_without_httpx_command_line()
