"""Restart strategies (seed §11.2): when a failed job restarts, and when it gives up.

Each is a frozen spec; ``tracker()`` makes the mutable counter for one job.
``RestartTracker.on_failure(now_ms)`` returns the delay before the restart in
seconds, or None when the job must be marked FAILED. Time is passed in, so a
test drives the strategies with a manual clock.
"""

from __future__ import annotations

import abc
from collections import deque
from dataclasses import dataclass

__all__ = [
    "ExponentialBackoffRestart",
    "FailureRateRestart",
    "FixedDelayRestart",
    "NoRestart",
    "RestartStrategy",
    "RestartTracker",
]


class RestartTracker(abc.ABC):
    @abc.abstractmethod
    def on_failure(self, now_ms: int) -> float | None:
        """Seconds to wait before the restart, or None to give up."""


class RestartStrategy(abc.ABC):
    @abc.abstractmethod
    def tracker(self) -> RestartTracker: ...

    @abc.abstractmethod
    def describe(self) -> str: ...


@dataclass(frozen=True, slots=True)
class NoRestart(RestartStrategy):
    def tracker(self) -> RestartTracker:
        return _Never()

    def describe(self) -> str:
        return "no restarts"


class _Never(RestartTracker):
    def on_failure(self, now_ms: int) -> float | None:
        return None


@dataclass(frozen=True, slots=True)
class FixedDelayRestart(RestartStrategy):
    """Up to ``attempts`` restarts, ``delay_s`` apart (seed: attempts 3, delay 10s)."""

    attempts: int = 3
    delay_s: float = 10.0

    def tracker(self) -> RestartTracker:
        return _FixedDelay(self)

    def describe(self) -> str:
        return f"fixed-delay: {self.attempts} attempts, {self.delay_s:g}s apart"


class _FixedDelay(RestartTracker):
    def __init__(self, spec: FixedDelayRestart) -> None:
        self.spec = spec
        self.restarts = 0

    def on_failure(self, now_ms: int) -> float | None:
        if self.restarts >= self.spec.attempts:
            return None
        self.restarts += 1
        return self.spec.delay_s


@dataclass(frozen=True, slots=True)
class ExponentialBackoffRestart(RestartStrategy):
    """Delays ``initial_delay_s`` x ``multiplier``^n up to ``max_delay_s``
    (seed: 1s, 5m, 2); at most ``max_attempts`` restarts if given."""

    initial_delay_s: float = 1.0
    max_delay_s: float = 300.0
    multiplier: float = 2.0
    max_attempts: int | None = None

    def tracker(self) -> RestartTracker:
        return _Backoff(self)

    def describe(self) -> str:
        return (
            f"exponential-backoff: {self.initial_delay_s:g}s x{self.multiplier:g} "
            f"up to {self.max_delay_s:g}s"
        )


class _Backoff(RestartTracker):
    def __init__(self, spec: ExponentialBackoffRestart) -> None:
        self.spec = spec
        self.restarts = 0

    def on_failure(self, now_ms: int) -> float | None:
        spec = self.spec
        if spec.max_attempts is not None and self.restarts >= spec.max_attempts:
            return None
        delay = min(spec.max_delay_s, spec.initial_delay_s * spec.multiplier**self.restarts)
        self.restarts += 1
        return delay


@dataclass(frozen=True, slots=True)
class FailureRateRestart(RestartStrategy):
    """Restart after ``delay_s`` unless more than ``max_failures_per_interval`` failures
    fell within the last ``interval_s`` (seed: 3 per 5m, delay 10s)."""

    max_failures_per_interval: int = 3
    interval_s: float = 300.0
    delay_s: float = 10.0

    def tracker(self) -> RestartTracker:
        return _FailureRate(self)

    def describe(self) -> str:
        return (
            f"failure-rate: at most {self.max_failures_per_interval} failures per "
            f"{self.interval_s:g}s, {self.delay_s:g}s apart"
        )


class _FailureRate(RestartTracker):
    def __init__(self, spec: FailureRateRestart) -> None:
        self.spec = spec
        self.failures: deque[int] = deque()

    def on_failure(self, now_ms: int) -> float | None:
        window = int(self.spec.interval_s * 1000)
        self.failures.append(now_ms)
        while self.failures and self.failures[0] <= now_ms - window:
            self.failures.popleft()
        if len(self.failures) > self.spec.max_failures_per_interval:
            return None
        return self.spec.delay_s
