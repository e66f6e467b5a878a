"""fetcher.core.expiring: what an engine learns about a host grows old, and what
it holds stays bounded however many hosts it meets (a worker serves for weeks)."""

from __future__ import annotations

from fetcher.core.expiring import Expiring


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_value_is_there_until_its_time_is_up_each_with_its_own():
    clock = Clock()
    kept: Expiring[str, str] = Expiring(clock)
    kept.put("day", "rules", 86400)
    kept.put("minutes", "unreachable", 600)
    clock.now += 599
    assert (kept.get("day"), kept.get("minutes")) == ("rules", "unreachable")
    clock.now += 1
    assert (kept.get("day"), kept.get("minutes")) == ("rules", None)
    kept.put("minutes", "answered", 86400)  # asked again: kept anew
    clock.now += 86399
    assert (kept.get("day"), kept.get("minutes")) == (None, "answered")
    assert kept.get("never") is None


def test_what_is_held_stays_within_twice_what_is_alive():
    """100,000 hosts met one after another, each remembered for 10 s, one every
    0.01 s: at most 1,000 alive at a time, and never much more held."""
    clock = Clock()
    kept: Expiring[int, int] = Expiring(clock)
    most = 0
    for host in range(100_000):
        clock.now += 0.01
        kept.put(host, host, 10)
        most = max(most, len(kept))
    assert most <= 2 * 1001
    assert kept.get(99_999) == 99_999 and kept.get(0) is None
