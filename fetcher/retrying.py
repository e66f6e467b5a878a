"""Retries of transient outcomes, with tenacity: exponential backoff with jitter,
and a server's Retry-After honoured up to a cap."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from tenacity import AsyncRetrying, RetryCallState, retry_if_result, stop_after_attempt, wait_exponential_jitter

from fetcher.hosts import Sleep
from fetcher.models import Download

BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 30.0
BACKOFF_JITTER = 1.0


async def fetch_with_retries(
    attempt: Callable[[], Awaitable[Download]],
    retries: int,
    max_retry_after: float,
    sleep: Sleep,
) -> tuple[Download, int]:
    """Run attempt() until it ends in a non-transient outcome or retries run out.
    Returns the last result and how many attempts were made."""

    def should_retry(result: Download) -> bool:
        if not result.outcome.is_transient:
            return False
        # A server asking for more patience than we may give is not retried early.
        return result.retry_after is None or result.retry_after <= max_retry_after

    backoff = wait_exponential_jitter(initial=BACKOFF_INITIAL, max=BACKOFF_MAX, jitter=BACKOFF_JITTER)

    def wait(state: RetryCallState) -> float:
        result = state.outcome.result() if state.outcome else None
        if result is not None and result.retry_after is not None:
            return min(result.retry_after, max_retry_after)
        return backoff(state)

    retrying = AsyncRetrying(
        stop=stop_after_attempt(retries + 1),
        retry=retry_if_result(should_retry),
        wait=wait,
        sleep=sleep,
        retry_error_callback=lambda state: state.outcome.result(),
    )
    attempts = 0

    async def counted() -> Download:
        nonlocal attempts
        attempts += 1
        return await attempt()

    result = await retrying(counted)
    return result, attempts
