"""Event time and injected clocks."""

from reflow.eventtime.clock import Clock, ManualClock, SystemClock
from reflow.eventtime.watermarks import MAX_WATERMARK, MIN_WATERMARK, WatermarkStrategy

__all__ = [
    "MAX_WATERMARK",
    "MIN_WATERMARK",
    "Clock",
    "ManualClock",
    "SystemClock",
    "WatermarkStrategy",
]
