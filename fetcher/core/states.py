"""The words for a source's health: the state it is in, worst first, and what
one check changed. StrEnums: each is its string value wherever it is printed or
written as JSON. The rules that pick them are in fetcher.core.health."""

from __future__ import annotations

import enum


class State(enum.StrEnum):
    """A source's state, in the order of the audit report (worst first)."""

    DEAD = "dead"
    SOFT_404 = "soft-404"
    FAILING = "failing"
    BLOCKED = "blocked"
    REDIRECTED = "redirected"
    UNCHECKED = "unchecked"
    OK = "ok"


STATES: tuple[State, ...] = tuple(State)  # worst first: the order of the report and of --fail-on


class Transition(enum.StrEnum):
    """What one live check changed in a source's health."""

    NEWLY_FAILING = "newly-failing"  # was fine (or new), now fails
    RECOVERED = "recovered"  # was failing, now fine
