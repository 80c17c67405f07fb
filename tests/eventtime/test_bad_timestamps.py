"""Records whose event time is NaN, infinite, None or not a number follow the
error policy instead of failing the job — or looping forever in window firing."""

from __future__ import annotations

import math
from typing import Any

import pytest

from reflow import ErrorMode, ErrorPolicy, Flow, JobStatus
from reflow.operators import Aggregations, Operators, Windows
from reflow.testing import TestingSink, TestingSource, run_job

BAD = [math.nan, math.inf, -math.inf, None, "2026-01-01", [1]]


def _events() -> list[dict[str, Any]]:
    good = [{"k": "a", "ts": t} for t in (100, 200, 1_100, 2_500)]
    bad = [{"k": "a", "ts": value} for value in BAD]
    return [good[0], *bad[:3], good[1], *bad[3:], good[2], good[3]]


@pytest.mark.timeout(30)  # before the fix, NaN made window firing spin at 100% CPU
@pytest.mark.parametrize("batch_size", [1, 100])
def test_bad_timestamps_go_to_the_dead_letter_and_windows_count_the_rest(batch_size: int) -> None:
    dead, out = TestingSink(), TestingSink()
    flow = Flow(
        "bad-ts",
        batch_size=batch_size,
        error_policy=ErrorPolicy(ErrorMode.DEAD_LETTER, dead_letter=dead),
    )
    (
        flow.source(TestingSource(_events()))
        .assign_timestamps("ts", max_out_of_orderness_ms=0)
        .key_by("k")
        .window(Windows.tumbling(1_000))
        .aggregate(Aggregations.count())
        .sink(out)
    )
    result = run_job(flow.to_job())
    assert result.status is JobStatus.COMPLETED, result.error
    assert [(r["window_start"], r["value"]) for r in out.records] == [
        (0, 2),
        (1_000, 1),
        (2_000, 1),
    ]
    rejected = [d["record"]["ts"] for d in dead.records]
    assert len(rejected) == len(BAD)
    assert sum(1 for v in rejected if isinstance(v, float) and math.isnan(v)) == 1
    assert [v for v in rejected if not (isinstance(v, float) and math.isnan(v))] == BAD[1:]
    assert all("timestamp" in d["error"] for d in dead.records)


@pytest.mark.timeout(30)
def test_a_window_reading_timestamps_itself_skips_bad_ones_under_skip() -> None:
    out = TestingSink()
    flow = Flow("bad-ts-skip", error_policy=ErrorPolicy(ErrorMode.SKIP))
    (
        flow.source(TestingSource(_events()))
        .transform(
            Operators.window_aggregate(
                Windows.tumbling(1_000),
                lambda r: r["k"],
                Aggregations.count(),
                timestamp=lambda r: r["ts"],
            )
        )
        .sink(out)
    )
    result = run_job(flow.to_job())
    assert result.status is JobStatus.COMPLETED, result.error
    assert sorted(r["value"] for r in out.records) == [1, 1, 2]
    assert result.metrics.step("window-aggregate").rejected == len(BAD)


def test_a_record_without_its_timestamp_field_is_told_where_event_time_comes_from() -> None:
    """A step that reshaped the records dropped the field the timestamps are read
    from: the record is dead-lettered with what is missing and the fix."""
    dead, out = TestingSink(), TestingSink()
    flow = Flow("no-ts", error_policy=ErrorPolicy(ErrorMode.DEAD_LETTER, dead_letter=dead))
    (
        flow.source(TestingSource([{"k": "a", "ts": 5}, {"k": "b", "ts": 7, "keep": True}]))
        .assign_timestamps("ts")
        .map(lambda r: r if r.get("keep") else {"k": r["k"]})
        .key_by("k")
        .window(Windows.tumbling(1_000))
        .aggregate(Aggregations.count())
        .sink(out)
    )
    assert run_job(flow.to_job()).status is JobStatus.COMPLETED
    assert [(r["key"], r["value"]) for r in out.records] == [("b", 1)]
    (entry,) = dead.records
    assert entry["record"] == {"k": "a"}
    assert "field 'ts' missing" in entry["error"]
    assert "assign timestamps again after it" in entry["error"]
