"""Durations in every spelling a user writes them: ``timedelta(minutes=5)``, ``"5m"``,
``"5 minutes"``, ``"500ms"``, or a plain number in the parameter's own unit.

Parameters named ``..._ms`` take a number of milliseconds; the others (YAML and
connector options) a number of seconds. Both take a ``timedelta`` or a string with
its unit, so ``Windows.tumbling(timedelta(minutes=5))``, ``Windows.tumbling("5m")``
and ``Windows.tumbling(300_000)`` are the same window.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from reflow.errors import GraphValidationError

__all__ = ["DurationLike", "millis", "seconds"]

DurationLike = int | float | str | timedelta

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zµ]*)\s*$", re.IGNORECASE)
_UNITS = {
    **dict.fromkeys(("ms", "msec", "millis", "millisecond", "milliseconds"), 0.001),
    **dict.fromkeys(("", "s", "sec", "secs", "second", "seconds"), 1.0),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60.0),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600.0),
    **dict.fromkeys(("d", "day", "days"), 86400.0),
}
_HELP = "write e.g. '500ms', '5s', '2m', '5 minutes', '1h', or a timedelta"


def seconds(value: Any) -> float:
    """A duration in seconds; a plain number is seconds.

    Raises:
        ValueError: ``value`` is not a duration (pydantic validators turn it into a
            located error).
    """
    if isinstance(value, bool):
        raise ValueError(f"a duration is a number of seconds or a string like '5s', not {value!r}")
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        unit = match.group(2).lower() if match else None
        if match and unit in _UNITS:
            return float(match.group(1)) * _UNITS[unit]
        raise ValueError(f"{value!r} is not a duration; {_HELP}")
    raise ValueError(f"a duration is a number, a string or a timedelta, not {type(value).__name__}")


def millis(value: Any, what: str = "duration") -> int:
    """A duration in whole milliseconds; a plain number is milliseconds.

    Raises:
        GraphValidationError: naming ``what``, when ``value`` is not a duration.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        if isinstance(value, float):
            return round(value)
        if isinstance(value, str) and value.strip().replace(".", "", 1).isdigit():
            raise ValueError(f"{value!r} has no unit; write '{value.strip()}ms' or a number")
        return round(seconds(value) * 1000)
    except ValueError as exc:
        raise GraphValidationError(f"{what}: {exc}") from None
