"""What was learnt about an origin, kept for a while: each value with its own age
limit, on the clock it is given (monotonic seconds; tests pass their own).

A run's engine lives as long as the run, but `fetcher worker` keeps one for as
long as it serves, for weeks: what it learns about a host (its robots.txt, its
answer for a made-up path) must grow old there as it would between two runs,
and what it holds must not grow with every host it ever met."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_FIRST_SWEEP = 256  # entries held before the first sweep of the expired ones

# How long what a host told us is used (robots.txt, the soft-404 probe): what it
# answered, a day at most (RFC 9309 2.4 for robots.txt); that it could not be
# reached (no answer, or robots.txt's 5xx/429), 10 minutes, then it is asked again.
ANSWER_KEEP = 24 * 3600.0
UNREACHABLE_KEEP = 600.0


class Expiring(Generic[K, V]):
    """A dict whose entries are gone once their time is up. Expired entries are
    swept whenever the number held has doubled since the last sweep, so what is
    held stays within twice what is alive, at a cost that is constant per entry."""

    def __init__(self, clock: Callable[[], float]):
        self._clock = clock
        self._entries: dict[K, tuple[float, V]] = {}  # key -> (until, value)
        self._sweep_at = _FIRST_SWEEP

    def get(self, key: K) -> V | None:
        """The value, if it is there and its time is not up."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        until, value = entry
        if self._clock() >= until:
            del self._entries[key]
            return None
        return value

    def put(self, key: K, value: V, keep_for: float) -> None:
        """Keep `value` for `keep_for` seconds from now (replacing what `key` held)."""
        self._entries[key] = (self._clock() + keep_for, value)
        if len(self._entries) >= self._sweep_at:
            now = self._clock()
            self._entries = {k: entry for k, entry in self._entries.items() if entry[0] > now}
            self._sweep_at = max(_FIRST_SWEEP, 2 * len(self._entries))

    def __len__(self) -> int:
        """Entries held, expired ones not swept yet included."""
        return len(self._entries)
