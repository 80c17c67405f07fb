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

from reflow.connectors.base import ConnectorContext, Refusals
from reflow.errors import ConnectorError

__all__ = ["retry", "write_in_pool"]

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


async def write_in_pool(
    ctx: ConnectorContext,
    attempt: Callable[[bool], T],
    refused: Refusals,
    *,
    writer: str,
    what: str,
    where: str,
    retries: int,
    first_delay: float,
    retry_on: Callable[[BaseException], bool],
    reason: Callable[[BaseException], str],
) -> T:
    """A blocking write, ``attempt(retried)``, in the I/O pool, retried on the errors
    ``retry_on`` accepts (``retried`` is True after the first attempt). What a failed
    attempt refused is forgotten (the next attempt refuses it again); what the last
    refused goes to the error policy, on the event loop. Once retries are spent:
    ConnectorError ``"{writer}: {what} {where} failed after N retries: {reason}"``."""
    tries: list[int] = []
    mark = refused.mark()

    def once() -> T:
        tries.append(1)
        refused.forget(mark)
        return attempt(len(tries) > 1)

    def give_up(exc: BaseException, retried: int) -> BaseException:
        after = f" after {retried} retries" if retried else ""
        return ConnectorError(f"{writer}: {what} {where} failed{after}: {reason(exc)}")

    result = await retry(
        ctx,
        lambda: ctx.run_blocking(once),
        what=what,
        retries=retries,
        first_delay=first_delay,
        retry_on=retry_on,
        give_up=give_up,
    )
    refused.hand_over(ctx)
    return result


def _reason(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
