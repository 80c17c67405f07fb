"""Cron schedules: Quartz and 5-field syntax, L / W / #, named time zones with DST."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from reflow.scheduler import CronSchedule, ScheduleError

UTC = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")


def _day(schedule: CronSchedule, year: int, month: int, day: int, zone: ZoneInfo) -> list[datetime]:
    start = datetime(year, month, day, tzinfo=zone)
    # (midnight - 1 s, next midnight - 1 s]: the 24 (or 23 or 25) hours of that local day
    return schedule.fire_times(
        start - timedelta(seconds=1), start + timedelta(days=1) - timedelta(seconds=1)
    )


@pytest.mark.parametrize("expression", ["0 0 * * * ?", "0 * * * *"])
def test_hourly_fires_24_times_a_day(expression: str) -> None:
    times = _day(CronSchedule(expression, "UTC"), 2026, 6, 1, UTC)
    assert len(times) == 24
    assert [t.hour for t in times] == list(range(24))


@pytest.mark.parametrize("expression", ["0 0 * * * ?", "0 * * * *"])
def test_hourly_across_the_spring_dst_change_in_berlin(expression: str) -> None:
    times = _day(CronSchedule(expression, "Europe/Berlin"), 2026, 3, 29, BERLIN)
    assert len(times) == 23  # 02:00 does not exist that day
    assert [t.hour for t in times] == [0, 1, *range(3, 24)]
    assert times[1].utcoffset() == timedelta(hours=1) and times[2].utcoffset() == timedelta(hours=2)
    gaps = {b.astimezone(UTC) - a.astimezone(UTC) for a, b in itertools.pairwise(times)}
    assert gaps == {timedelta(hours=1)}  # one hour apart in real time, no gap, no double


def test_hourly_across_the_autumn_dst_change_in_berlin() -> None:
    times = _day(CronSchedule("0 0 * * * ?", "Europe/Berlin"), 2026, 10, 25, BERLIN)
    assert len(times) == 25  # 02:00 happens twice
    gaps = {b.astimezone(UTC) - a.astimezone(UTC) for a, b in itertools.pairwise(times)}
    assert gaps == {timedelta(hours=1)}


def test_seed_daily_at_1am_in_shanghai() -> None:
    schedule = CronSchedule("0 0 1 * * ?", "Asia/Shanghai")
    fire = schedule.next_fire_time(datetime(2026, 1, 3, 12, tzinfo=UTC))
    assert fire is not None
    assert fire.isoformat() == "2026-01-04T01:00:00+08:00"


def _dates(expression: str, months: int = 3) -> list[str]:
    schedule = CronSchedule(expression, "UTC")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        t.date().isoformat()
        for t in schedule.fire_times(start, start + timedelta(days=31 * months))
    ]


def test_last_day_and_last_weekday_of_the_month() -> None:
    assert _dates("0 0 12 L * ?") == ["2026-01-31", "2026-02-28", "2026-03-31"]
    # LW: Jan 31 and Feb 28 2026 are Saturdays -> the Fridays before
    assert _dates("0 0 12 LW * ?") == ["2026-01-30", "2026-02-27", "2026-03-31"]
    # 6L: the last Friday
    assert _dates("0 0 9 ? * 6L") == ["2026-01-30", "2026-02-27", "2026-03-27"]


def test_nearest_weekday() -> None:
    # 15W: Feb 15 2026 is a Sunday -> Monday 16; Mar 15 is a Sunday -> 16
    assert _dates("0 0 9 15W * ?") == ["2026-01-15", "2026-02-16", "2026-03-16"]


def test_nth_weekday_of_the_month() -> None:
    assert _dates("0 0 9 ? * 2#1") == ["2026-01-05", "2026-02-02", "2026-03-02"]  # first Monday
    assert _dates("0 0 9 ? * MON#2") == ["2026-01-12", "2026-02-09", "2026-03-09"]


def test_year_and_names() -> None:
    assert _dates("0 30 8 ? JAN MON-FRI 2026", months=1)[:3] == [
        "2026-01-01",
        "2026-01-02",
        "2026-01-05",
    ]
    in_2030 = CronSchedule("0 0 0 1 1 ? 2030").next_fire_time(datetime(2026, 1, 1, tzinfo=UTC))
    assert in_2030 is not None and in_2030.year == 2030


@pytest.mark.parametrize(
    "expression,message",
    [
        ("0 0 * *", "has 4 fields"),
        ("0 0 12 5 * MON", "give day-of-month or day-of-week"),
        ("0 61 * * * ?", "invalid cron expression"),
    ],
)
def test_invalid_expressions(expression: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        CronSchedule(expression)


def test_unknown_time_zone() -> None:
    with pytest.raises(ScheduleError, match="unknown time zone 'Mars/Olympus'"):
        CronSchedule("0 * * * *", "Mars/Olympus")
