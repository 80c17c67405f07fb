"""One retry with exponential backoff for every connector, on the connector's clock.

Sinks that retry a write, sources that reconnect, HTTP requests that honour
``Retry-After``: all go through ``retry``, built on tenacity. The waits run on
``ConnectorContext.clock``, so a test with a ``ManualClock`` decides when each
retry happens instead of sleeping; every retry is counted (``ctx.count``) and
logged with its reason, attempt and delay.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from reflow.connectors.base import ConnectorContext

__all__ = ["retry"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


def _always(error: BaseException) -> bool:
    return True


async def retry(
    ctx: ConnectorContext,
    attempt: Callable[[], Awaitable[T]],
    *,
    what: str,
    retries: int,
    first_delay: float,
    max_delay: float = 30.0,
    retry_on: Callable[[BaseException], bool] = _always,
    delay_hint: Callable[[BaseException], float | None] | None = None,
    before_retry: Callable[[BaseException], Awaitable[None]] | None = None,
    give_up: Callable[[BaseException, int], BaseException] | None = None,
    counter: str = "retries",
) -> T:
    """``await attempt()``, and again after each failure ``retry_on`` accepts, at most
    ``retries`` times more, waiting ``first_delay`` seconds doubled per retry up to
    ``max_delay`` (or longer, if ``delay_hint`` of the error says so: Retry-After).

    ``before_retry(error)`` runs after the wait, before the next attempt (to
    reconnect); if it fails, that counts as the attempt failing. Once retries
    are spent, or for an error ``retry_on`` refuses, ``give_up(error, retries
    made)`` gives the exception raised (the error itself without it).
    """
    failed: list[BaseException] = []

    def wait(state: RetryCallState) -> float:
        delay: float = min(first_delay * 2.0 ** (int(state.attempt_number) - 1), max_delay)
        if delay_hint is not None and failed:
            hint = delay_hint(failed[-1])
            if hint is not None:
                delay = max(delay, hint)
        return delay

    def before_sleep(state: RetryCallState) -> None:
        ctx.count(counter)
        delay = state.upcoming_sleep
        logger.warning(
            "step %r: %s failed (%s); retry %d of %d in %.2fs",
            ctx.step_id,
            what,
            _reason(failed[-1]),
            state.attempt_number,
            retries,
            delay,
        )

    def accepted(error: BaseException) -> bool:
        if not isinstance(error, Exception):
            return False  # cancellation and interrupts are never retried
        failed.append(error)
        return retry_on(error)

    retrying = AsyncRetrying(
        stop=stop_after_attempt(retries + 1),
        wait=wait,
        retry=retry_if_exception(accepted),
        sleep=ctx.clock.sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    outcome: list[T] = []
    try:
        async for state in retrying:
            with state:
                if state.retry_state.attempt_number > 1 and before_retry is not None:
                    await before_retry(failed[-1])
                outcome.append(await attempt())
    except Exception as error:
        if give_up is None:
            raise
        raise give_up(error, max(len(failed) - 1, 0)) from error
    return outcome[0]


def _reason(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
