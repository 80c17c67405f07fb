"""Cron schedules: Quartz syntax (seconds first, ``?``, ``L``, ``W``, ``#``, optional
year — the seed's ``0 0 * * * ?``) and 5-field Unix cron, in a named time zone.

``next_fire_time(after)`` is pure: it depends on nothing but its argument, so the
scheduler and the tests drive it with any clock. Evaluation is croniter's; this
module translates Quartz expressions into croniter's field order and numbering
(and evaluates ``LW``, which croniter lacks, as a filter).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from reflow.errors import ConfigError

__all__ = ["CronSchedule", "ScheduleError", "to_croniter"]

# Candidate fire times examined when an ``LW`` filter rejects some: a month has
# at most 6 candidates (26th-31st), so 24 covers four months.
_MAX_FILTERED = 24
_NUMBER = re.compile(r"\d+")


class ScheduleError(ConfigError):
    """A schedule (cron expression, time zone, dependency) is invalid."""


_DAY_NAMES = {
    name: str(i + 1) for i, name in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])
}


def _shift_dow(field: str) -> str:
    """Quartz day-of-week (1=SUN..7=SAT or names) to croniter's (0=SUN..6=SAT)."""
    field = re.sub(r"[A-Za-z]{3}", lambda m: _DAY_NAMES.get(m.group(0).upper(), m.group(0)), field)
    if field in ("*", "?"):
        return "*"
    if field == "L":
        return "6"  # Quartz: L alone in day-of-week is Saturday
    match = re.fullmatch(r"(\d)L", field)
    if match:
        return f"L{int(match.group(1)) - 1}"  # last <weekday> of the month
    match = re.fullmatch(r"(\d)#(\d)", field)
    if match:
        return f"{int(match.group(1)) - 1}#{match.group(2)}"

    def shift(token: str) -> str:
        return _NUMBER.sub(lambda m: str(int(m.group(0)) - 1), token)

    parts = []
    for part in field.split(","):
        if "/" in part:
            base, step = part.split("/", 1)
            parts.append(f"{shift(base)}/{step}")
        else:
            parts.append(shift(part))
    return ",".join(parts)


def to_croniter(expression: str) -> tuple[str, bool]:
    """A croniter expression for ``expression``, and whether it needs the LW filter."""
    fields = expression.split()
    if len(fields) == 5:
        return expression, False
    if len(fields) not in (6, 7):
        raise ScheduleError(
            f"cron {expression!r} has {len(fields)} fields; write 5 (Unix: min hour day month "
            "weekday) or 6-7 (Quartz: sec min hour day month weekday [year])"
        )
    second, minute, hour, dom, month, dow = fields[:6]
    year = fields[6] if len(fields) == 7 else None
    if dom != "?" and dow != "?" and dom != "*" and dow != "*":
        raise ScheduleError(
            f"cron {expression!r}: give day-of-month or day-of-week, and '?' for the other"
        )
    last_weekday = dom == "LW"
    dom = "*" if dom in ("?",) else ("26-31" if last_weekday else dom)
    parts = [minute, hour, dom, month, _shift_dow(dow), second]
    if year is not None:
        parts.append(year)
    return " ".join(parts), last_weekday


def _is_last_weekday(moment: datetime) -> bool:
    following = moment + timedelta(days=1)
    if moment.weekday() >= 5:
        return False
    # The last weekday: no weekday follows in the same month.
    while following.month == moment.month:
        if following.weekday() < 5:
            return False
        following += timedelta(days=1)
    return True


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A cron expression evaluated in ``timezone`` (an IANA name; default UTC)."""

    expression: str
    timezone: str = "UTC"
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _expr: str = field(init=False, repr=False, compare=False)
    _lw: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        from croniter import croniter

        try:
            zone = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ScheduleError(
                f"unknown time zone {self.timezone!r}; use an IANA name such as "
                "'Asia/Shanghai' or 'Europe/Berlin'"
            ) from None
        expr, lw = to_croniter(self.expression.strip())
        if not croniter.is_valid(expr):
            raise ScheduleError(
                f"invalid cron expression {self.expression!r} (see docs/scheduler.md for the "
                "Quartz and Unix syntax)"
            )
        object.__setattr__(self, "_zone", zone)
        object.__setattr__(self, "_expr", expr)
        object.__setattr__(self, "_lw", lw)

    def next_fire_time(self, after: datetime) -> datetime | None:
        """The first fire time strictly after ``after`` (timezone-aware), in the schedule's
        zone; None when there is none (a year field in the past)."""
        from croniter import CroniterBadDateError, croniter

        start = after.astimezone(self._zone)
        iterator: Any = croniter(self._expr, start)
        for _ in range(_MAX_FILTERED):
            try:
                candidate: datetime = iterator.get_next(datetime)
            except CroniterBadDateError:
                return None
            if not self._lw or _is_last_weekday(candidate):
                return candidate
        return None  # pragma: no cover

    def fire_times(self, after: datetime, until: datetime) -> list[datetime]:
        """Every fire time in (after, until]."""
        out: list[datetime] = []
        moment = after
        while True:
            following = self.next_fire_time(moment)
            if following is None or following > until:
                return out
            out.append(following)
            moment = following
