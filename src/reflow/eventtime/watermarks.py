"""Event time: timestamp extraction and watermark strategies.

A watermark W promises that no record with a timestamp <= W is still to come;
event-time windows ending at or before W fire. Strategies:

* ``bounded_out_of_orderness(ms)``: W = max timestamp seen - ms - 1;
* ``monotonous()``: timestamps never decrease, W = max timestamp - 1.

``idle_timeout``: a source subtask that has had no record for that long is idle:
its watermark no longer holds back the minimum over subtasks, and, with
``wall_clock_advance`` on, it advances with the clock, so that windows close
when the input goes quiet. A source that is merely slow (still returning
records) is never idle, so replaying a file gives the same windows at any speed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reflow.graph.durations import DurationLike, millis

__all__ = ["MAX_WATERMARK", "MIN_WATERMARK", "WatermarkStrategy"]

MIN_WATERMARK = -(2**63)
MAX_WATERMARK = 2**63 - 1


@dataclass(frozen=True, slots=True)
class WatermarkStrategy:
    """How watermarks follow the timestamps of a stream."""

    max_out_of_orderness_ms: int = 0
    idle_timeout_ms: int | None = None
    wall_clock_advance: bool = True

    def __post_init__(self) -> None:
        bound = millis(self.max_out_of_orderness_ms, "max out-of-orderness")
        object.__setattr__(self, "max_out_of_orderness_ms", bound)
        if self.idle_timeout_ms is not None:
            idle = millis(self.idle_timeout_ms, "idle timeout")
            object.__setattr__(self, "idle_timeout_ms", idle)

    @staticmethod
    def bounded_out_of_orderness(
        ms: DurationLike,
        *,
        idle_timeout_ms: DurationLike | None = None,
        wall_clock_advance: bool = True,
    ) -> WatermarkStrategy:
        """``ms``: how far behind the newest timestamp the watermark stays (ms, or a
        timedelta / "5s")."""
        ms = millis(ms, "max out-of-orderness")
        if ms < 0:
            raise ValueError("max out-of-orderness must be >= 0 ms")
        return WatermarkStrategy(ms, _idle(idle_timeout_ms), wall_clock_advance)

    @staticmethod
    def monotonous(
        *, idle_timeout_ms: DurationLike | None = None, wall_clock_advance: bool = True
    ) -> WatermarkStrategy:
        return WatermarkStrategy(0, _idle(idle_timeout_ms), wall_clock_advance)

    def with_idleness(self, idle_timeout_ms: DurationLike) -> WatermarkStrategy:
        return WatermarkStrategy(
            self.max_out_of_orderness_ms, _idle(idle_timeout_ms), self.wall_clock_advance
        )


def _idle(value: DurationLike | None) -> int | None:
    return None if value is None else millis(value, "idle timeout")


TimestampFn = Callable[[Any], int]
