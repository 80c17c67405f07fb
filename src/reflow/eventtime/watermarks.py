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

__all__ = ["MAX_WATERMARK", "MIN_WATERMARK", "WatermarkStrategy"]

MIN_WATERMARK = -(2**63)
MAX_WATERMARK = 2**63 - 1


@dataclass(frozen=True, slots=True)
class WatermarkStrategy:
    """How watermarks follow the timestamps of a stream."""

    max_out_of_orderness_ms: int = 0
    idle_timeout_ms: int | None = None
    wall_clock_advance: bool = True

    @staticmethod
    def bounded_out_of_orderness(
        ms: int, *, idle_timeout_ms: int | None = None, wall_clock_advance: bool = True
    ) -> WatermarkStrategy:
        if ms < 0:
            raise ValueError("max out-of-orderness must be >= 0 ms")
        return WatermarkStrategy(ms, idle_timeout_ms, wall_clock_advance)

    @staticmethod
    def monotonous(
        *, idle_timeout_ms: int | None = None, wall_clock_advance: bool = True
    ) -> WatermarkStrategy:
        return WatermarkStrategy(0, idle_timeout_ms, wall_clock_advance)

    def with_idleness(self, idle_timeout_ms: int) -> WatermarkStrategy:
        return WatermarkStrategy(
            self.max_out_of_orderness_ms, idle_timeout_ms, self.wall_clock_advance
        )


TimestampFn = Callable[[Any], int]
