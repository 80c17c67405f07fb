"""Durations in every spelling (timedelta, "5m", "5 minutes", ms); windows without
timestamps run on processing time unless event time is insisted on, which fails
when the job is built."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from reflow import Flow, Job, Operators
from reflow.config import load_job_text
from reflow.errors import ConfigError, GraphValidationError
from reflow.eventtime import ManualClock
from reflow.graph.durations import millis, seconds
from reflow.operators import Windows
from reflow.runtime import ExecutorSettings, LocalExecutor
from reflow.testing import TestingSink, TestingSource


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        (300_000, 300_000),
        (timedelta(minutes=5), 300_000),
        ("5m", 300_000),
        ("5 minutes", 300_000),
        ("5 min", 300_000),
        ("300s", 300_000),
        ("1.5 hours", 5_400_000),
        ("250ms", 250),
        (2.6, 3),
    ],
)
def test_every_spelling_of_a_duration_is_the_same(value: Any, ms: int) -> None:
    assert millis(value) == ms
    assert Windows.tumbling(value).size_ms == ms


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("5 fortnights", "'5 fortnights' is not a duration; write e.g. '500ms'"),
        ("300", "'300' has no unit; write '300ms' or a number"),
        (True, "a duration is a number of seconds"),
        ([5], "a duration is a number, a string or a timedelta, not list"),
    ],
)
def test_a_wrong_duration_names_the_parameter_and_the_fix(value: Any, message: str) -> None:
    with pytest.raises(GraphValidationError, match=f"window size: {message}"):
        Windows.tumbling(value)


def test_seconds_take_the_same_spellings_for_yaml_and_connector_options() -> None:
    assert seconds("2 minutes") == seconds(timedelta(minutes=2)) == seconds(120) == 120.0


def test_timedelta_everywhere_in_the_python_api_runs() -> None:
    """The seed's Duration.ofMinutes(5) is timedelta(minutes=5): it used to crash
    inside the executor (a timedelta compared with ints)."""
    clock = ManualClock(start_ms=0)
    events = [{"k": "a", "ts": t * 60_000} for t in (0, 1, 4, 5, 6, 11)]
    out = TestingSink()
    job = (
        Job.builder()
        .checkpointing("out/durations-chk", interval_ms=timedelta(seconds=30))
        .source(TestingSource(events))
        .transform(Operators.assign_timestamps("ts", max_out_of_orderness_ms=timedelta(0)))
        .transform(
            Operators.window_aggregate(
                timedelta(minutes=5), "k", allowed_lateness_ms=timedelta(seconds=1)
            )
        )
        .sink(out)
        .build()
    )
    assert job.config.checkpoint is not None and job.config.checkpoint.interval_ms == 30_000

    async def run() -> None:
        with LocalExecutor(ExecutorSettings(clock=clock)) as executor:
            await executor.execute(job)

    asyncio.run(run())
    assert [(r["window_start"], r["value"]) for r in out.records] == [
        (0, 3),
        (300_000, 2),
        (600_000, 1),
    ]


def test_a_window_without_timestamps_runs_on_processing_time() -> None:
    clock = ManualClock(start_ms=10_000)
    out = TestingSink()
    flow = Flow("auto-time")
    (
        flow.source(TestingSource([{"k": "x"}] * 4, bounded=False))
        .key_by("k")
        .window(Windows.tumbling("1s"))
        .count()
        .sink(out)
    )
    job = flow.to_job()

    async def scenario() -> list[Any]:
        with LocalExecutor(ExecutorSettings(clock=clock)) as executor:
            task = asyncio.create_task(executor.execute(job))
            for _ in range(20):
                await asyncio.sleep(0)
            await clock.advance_and_settle(1.5, step=0.5)
            seen = list(out.records)
            await executor.stop(job.job_id)
            await task
            return seen

    assert asyncio.run(scenario()) == [
        {"key": "x", "window_start": 10_000, "window_end": 11_000, "value": 4}
    ]


def test_event_time_insisted_on_without_timestamps_fails_when_the_job_is_built() -> None:
    flow = Flow("no-ts")
    (
        flow.source(TestingSource([{"k": "x"}]))
        .key_by("k")
        .window(Windows.tumbling(1_000, processing_time=False))
        .count()
        .sink(TestingSink())
    )
    with pytest.raises(GraphValidationError, match="an event-time window needs timestamps"):
        flow.to_job()
    text = """
job:
  name: no-ts
  source: {connector: memory, config: {collection: none}}
  operators:
    - name: counts
      type: window-aggregate
      key: k
      window: {type: tumbling, size: 5m, time: event}
  sink: {connector: stdout}
"""
    with pytest.raises(ConfigError, match=r"step 'counts': .*YAML: type: assign_timestamps"):
        load_job_text(text)
