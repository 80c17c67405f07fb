"""Injected time: ``SystemClock`` for production, ``ManualClock`` for tests.

Everything in reflow that reads the time or sleeps for a duration (state TTL,
idle detection, wall-clock watermark advance, processing-time windows and
timers, flush intervals of time-driven operators) goes through a Clock, so a
test advances time by hand and never sleeps for real.
"""

from __future__ import annotations

import abc
import asyncio
import heapq
import itertools
import math
import time
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(abc.ABC):
    """Milliseconds since the epoch, and sleeping by that time."""

    @abc.abstractmethod
    def now_ms(self) -> int:
        """The current time in epoch milliseconds."""

    @abc.abstractmethod
    async def sleep(self, seconds: float) -> None:
        """Return once ``seconds`` have passed on this clock."""


class SystemClock(Clock):
    """The wall clock."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class ManualClock(Clock):
    """A clock that moves only when ``advance`` is called (for tests).

    Example:
        >>> clock = ManualClock(start_ms=1_000)
        >>> clock.advance(2.5)
        >>> clock.now_ms()
        3500
    """

    def __init__(self, start_ms: int = 0) -> None:
        self._now = start_ms
        self._sleepers: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._slept: asyncio.Event | None = None
        self.jumps: list[float] = []
        """Seconds ``drive`` moved the clock by, jump by jump."""

    def now_ms(self) -> int:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Never wake early: a wait of 49.9 ms ends at the 50th millisecond.
        due = self._now + math.ceil(seconds * 1000 - 1e-6)
        heapq.heappush(self._sleepers, (due, next(self._order), future))
        if self._slept is not None:
            self._slept.set()
        await future

    async def next_sleep(self) -> float:
        """Wait until someone sleeps on this clock; the seconds until the earliest
        sleeper wakes (for tests that advance the clock as far as the code waits)."""
        return (await self._next_due_ms() - self._now) / 1000

    async def _next_due_ms(self) -> int:
        while not any(not f.done() for _, _, f in self._sleepers):
            self._slept = asyncio.Event()
            await self._slept.wait()
        return min(due for due, _, f in self._sleepers if not f.done())

    async def drive(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable``, moving this clock straight to each wake-up it waits
        for: code that sleeps on the clock runs at once, in the order its time says.
        The jumps made are appended to ``jumps``."""
        task = asyncio.ensure_future(awaitable)
        while not task.done():
            sleeping = asyncio.ensure_future(self._next_due_ms())
            await asyncio.wait({sleeping, task}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                sleeping.cancel()
                break
            due = max(sleeping.result(), self._now)
            self.jumps.append((due - self._now) / 1000)
            self.set(due)
        return await task

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose time has come."""
        self.set(self._now + int(seconds * 1000))

    def set(self, now_ms: int) -> None:
        self._now = max(self._now, now_ms)
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    async def advance_and_settle(self, seconds: float, step: float | None = None) -> None:
        """Advance in steps, letting the event loop run after each one."""
        remaining = seconds
        step = step or seconds
        while remaining > 0:
            delta = min(step, remaining)
            self.advance(delta)
            remaining -= delta
            for _ in range(20):
                await asyncio.sleep(0)
