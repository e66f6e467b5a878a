"""Retries of transient outcomes, with tenacity: exponential backoff with jitter,
and a server's Retry-After honoured up to a cap."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from tenacity import AsyncRetrying, RetryCallState, retry_if_result, stop_after_attempt, stop_before_delay, wait_exponential_jitter

from fetcher.net.hosts import Sleep
from tenacity.stop import stop_base

from fetcher.core.models import Download
from fetcher.core.outcomes import Outcome

BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 30.0
BACKOFF_JITTER = 1.0


async def fetch_with_retries(
    attempt: Callable[[], Awaitable[Download]],
    retries: int,
    max_retry_after: float,
    sleep: Sleep,
    time_limit: float | None = None,
    url: str = "",
) -> tuple[Download, int]:
    """Run attempt() until it ends in a non-transient outcome or retries run out.
    Returns the last result and how many attempts were made.

    With `time_limit` (a source's `source_deadline`), all of it — attempts and the
    waits between them — ends within that many seconds: a wait that would end past
    it is not begun, and an attempt still running at it is cut. Cut, the result is
    the last answer had, its detail saying so, or a `timeout` for `url` if none came."""
    answers: list[Download] = []
    begun = 0

    async def counted() -> Download:
        nonlocal begun
        begun += 1
        answers.append(await attempt())
        return answers[-1]

    made: list[Download] = []  # an attempt made before tenacity took over, given to it as its first

    async def replayed() -> Download:
        return made.pop() if made else await counted()

    started = time.monotonic()
    try:
        async with asyncio.timeout(time_limit):
            first = await counted()  # most answers are final: no retry policy to set up for them
            if retries == 0 or not _should_retry(first, max_retry_after):
                return first, 1
            left = None if time_limit is None else time_limit - (time.monotonic() - started)
            made.append(first)  # tenacity's clock starts now: its limit is what is left
            return await _policy(retries, max_retry_after, sleep, left)(replayed), begun
    except TimeoutError:
        attempts = begun
        cut = f"the {time_limit:g}s limit (source_deadline) was reached"
        if not answers:
            return Download(url, Outcome.TIMEOUT, url, detail=f"no answer: {cut}"), attempts
        last = answers[-1]  # cut in a wait or a retry: the last answer says what is wrong
        return replace(last, detail=f"{last.detail}; {cut} after {attempts} attempts".lstrip("; ")), attempts


def _policy(retries: int, max_retry_after: float, sleep: Sleep, time_limit: float | None) -> AsyncRetrying:
    """Transient outcomes are retried, with exponential backoff and jitter or the
    server's Retry-After; a server asking for more than `max_retry_after` is not."""

    def should_retry(result: Download) -> bool:
        return _should_retry(result, max_retry_after)

    backoff = wait_exponential_jitter(initial=BACKOFF_INITIAL, max=BACKOFF_MAX, jitter=BACKOFF_JITTER)

    def wait(state: RetryCallState) -> float:
        result = state.outcome.result() if state.outcome else None
        if result is not None and result.retry_after is not None:
            return min(result.retry_after, max_retry_after)
        return backoff(state)

    stop: stop_base = stop_after_attempt(retries + 1)
    if time_limit is not None:
        stop = stop | stop_before_delay(time_limit)
    return AsyncRetrying(
        stop=stop, retry=retry_if_result(should_retry), wait=wait, sleep=sleep,
        retry_error_callback=_last_result,
    )


def _should_retry(result: Download, max_retry_after: float) -> bool:
    if not result.outcome.is_transient:
        return False
    return result.retry_after is None or result.retry_after <= max_retry_after


def _last_result(state: RetryCallState) -> Download:
    """When retries stop, the last attempt's answer is the result (not an exception)."""
    assert state.outcome is not None  # called after an attempt
    result: Download = state.outcome.result()
    return result
