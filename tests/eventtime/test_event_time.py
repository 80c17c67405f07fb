"""Event time with an injected clock: idle inputs, late records, lateness, replays."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest

from reflow import Connectors, Flow, JobStatus
from reflow.eventtime import ManualClock
from reflow.eventtime.watermarks import MAX_WATERMARK
from reflow.operators import Aggregations, Windows
from reflow.operators.base import OperatorContext, OperatorLogic, OperatorSpec
from reflow.runtime import ExecutorSettings, LocalExecutor
from reflow.testing import TestingSink, TestingSource, run_job


def _count_job(
    events: list[Any], *, bounded: bool, idle_timeout_ms: int | None, lateness: int = 0
) -> tuple[Any, TestingSink, TestingSink]:
    flow = Flow("counts", batch_size=1)
    out, late = TestingSink(), TestingSink()
    windows = (
        flow.source(TestingSource(events, bounded=bounded))
        .assign_timestamps("ts", max_out_of_orderness_ms=100, idle_timeout_ms=idle_timeout_ms)
        .key_by("k")
        .window(Windows.tumbling(1_000))
        .aggregate(Aggregations.count(), allowed_lateness_ms=lateness)
    )
    windows.sink(out)
    windows.late().sink(late)
    return flow.to_job(), out, late


def test_windows_close_by_the_wall_clock_when_the_input_goes_quiet() -> None:
    events = [{"k": "a", "ts": t} for t in (100, 400, 900, 1_200, 1_700)]
    job, out, _ = _count_job(events, bounded=False, idle_timeout_ms=1_000)
    clock = ManualClock(start_ms=0)

    async def scenario() -> tuple[list[Any], list[Any]]:
        with LocalExecutor(ExecutorSettings(clock=clock)) as executor:
            task = asyncio.create_task(executor.execute(job))
            for _ in range(50):
                await asyncio.sleep(0)
            before = list(out.records)  # only [0, 1000) has closed: watermark 1599
            await clock.advance_and_settle(3.0, step=0.25)  # idle: event time moves on
            after = list(out.records)
            await executor.stop(job.job_id)
            await task
            return before, after

    before, after = asyncio.run(scenario())
    assert [(r["window_start"], r["value"]) for r in before] == [(0, 3)]
    assert [(r["window_start"], r["value"]) for r in after] == [(0, 3), (1_000, 2)]


def test_without_idleness_an_open_window_waits() -> None:
    events = [{"k": "a", "ts": t} for t in (100, 1_200)]
    job, out, _ = _count_job(events, bounded=False, idle_timeout_ms=None)
    clock = ManualClock()

    async def scenario() -> list[Any]:
        with LocalExecutor(ExecutorSettings(clock=clock)) as executor:
            task = asyncio.create_task(executor.execute(job))
            await clock.advance_and_settle(10.0, step=1.0)
            seen = list(out.records)
            await executor.stop(job.job_id)
            await task
            return seen

    assert [r["window_start"] for r in asyncio.run(scenario())] == [0]


def test_late_records_go_to_the_side_output_and_are_counted() -> None:
    events = [{"k": "a", "ts": t} for t in (100, 900, 2_500, 150, 2_600, 800)]
    job, out, late = _count_job(events, bounded=True, idle_timeout_ms=None)
    result = run_job(job)
    assert result.status is JobStatus.COMPLETED
    assert [(r["window_start"], r["value"]) for r in out.records] == [(0, 2), (2_000, 2)]
    assert [r["ts"] for r in late.records] == [150, 800]
    assert result.metrics.step("window").late == 2


def test_allowed_lateness_updates_a_fired_window() -> None:
    events = [{"k": "a", "ts": t} for t in (100, 900, 1_500, 300, 2_950, 400)]
    job, out, late = _count_job(events, bounded=True, idle_timeout_ms=None, lateness=1_000)
    run_job(job)
    # [0,1000) fires at watermark 1399 with 2, then again with 3 when 300 arrives;
    # 400 comes after watermark 2849 >= 1000 + 1000 - 1: too late even with lateness.
    assert [(r["window_start"], r["value"]) for r in out.records] == [
        (0, 2),
        (0, 3),
        (1_000, 1),
        (2_000, 1),
    ]
    assert [r["ts"] for r in late.records] == [400]


def test_cumulative_windows_grow_by_their_step_and_refire_within_the_lateness() -> None:
    """Windows [0, 1s), [0, 2s), [0, 3s), then [3s, 4s) ...: a day's running total every
    hour, in miniature. 1,200 arrives after [0, 2s) fired (watermark 2,399) but within
    the lateness: [0, 2s) fires again with it, and [0, 3s) counts it; 350 comes after
    the last window of its period closed and the lateness passed: late."""
    events = [{"k": "a", "ts": t} for t in (100, 1_500, 2_500, 1_200, 3_100, 4_900, 350)]
    flow = Flow("cumulative", batch_size=1)
    out, late = TestingSink(), TestingSink()
    windows = (
        flow.source(TestingSource(events))
        .assign_timestamps("ts", max_out_of_orderness_ms=100)
        .key_by("k")
        .window(Windows.cumulative("3s", "1s"))
        .aggregate(Aggregations.count(), allowed_lateness_ms=500)
    )
    windows.sink(out)
    windows.late().sink(late)
    assert run_job(flow.to_job()).status is JobStatus.COMPLETED
    assert [(r["window_start"], r["window_end"], r["value"]) for r in out.records] == [
        (0, 1_000, 1),
        (0, 2_000, 2),
        (0, 2_000, 3),  # again, with 1,200
        (0, 3_000, 4),
        (3_000, 4_000, 1),
        (3_000, 5_000, 2),
        (3_000, 6_000, 2),
    ]
    assert [r["ts"] for r in late.records] == [350]


def test_replaying_a_file_gives_the_same_windows_at_any_speed(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    rows = [{"k": f"k{i % 7}", "ts": 1_000 * i + (i * 37) % 250} for i in range(2_000)]
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))

    def run(slow: bool) -> list[Any]:
        async def crawl(record: Any) -> Any:
            await asyncio.sleep(0.0003)
            return record

        flow = Flow("replay", batch_size=50)
        out = TestingSink()
        stream = flow.source(Connectors.file(path=str(path)))
        if slow:
            stream = stream.map(crawl, concurrency=1)
        (
            stream.assign_timestamps("ts", max_out_of_orderness_ms=300, idle_timeout_ms=1)
            .key_by("k")
            .window(Windows.tumbling(10_000))
            .count()
            .sink(out)
        )
        result = run_job(flow.to_job())
        assert result.metrics.step("window").late == 0
        return sorted((r["key"], r["window_start"], r["value"]) for r in out.records)

    fast = run(slow=False)
    assert sum(v for _, _, v in fast) == 2_000
    assert run(slow=True) == fast


def test_processing_time_windows_follow_the_clock() -> None:
    clock = ManualClock(start_ms=10_000)
    flow = Flow("pt")
    out = TestingSink()
    (
        flow.source(TestingSource([{"k": "x"}] * 5, bounded=False))
        .key_by("k")
        .window(Windows.tumbling(1_000, processing_time=True))
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
        {"key": "x", "window_start": 10_000, "window_end": 11_000, "value": 5}
    ]


@dataclass(frozen=True, slots=True)
class _WatermarkProbe(OperatorSpec):
    """Passes records on and notes every watermark it is given."""

    seen: list[int]
    name: str | None = None
    parallelism: int | None = None

    operator_type: ClassVar[str] = "watermark-probe"
    uses_event_time: ClassVar[bool] = True

    def build(self, ctx: OperatorContext) -> OperatorLogic:
        seen = self.seen

        class Probe(OperatorLogic):
            def process(self, batch: list[Any]) -> list[Any]:
                return batch

            def on_watermark(self, watermark: int) -> list[Any]:
                seen.append(watermark)
                return []

        return Probe()


def _probe_watermarks(source: Any, batch_size: int) -> tuple[list[int], list[Any]]:
    seen: list[int] = []
    out = TestingSink()
    flow = Flow("probe", batch_size=batch_size)
    (
        flow.source(source)
        .assign_timestamps("ts", max_out_of_orderness_ms=0)
        .transform(_WatermarkProbe(seen), id="probe")
        .sink(out)
    )
    result = run_job(flow.to_job())
    assert result.status is JobStatus.COMPLETED, result.error
    return seen, out.records


@pytest.mark.local_only  # the probe notes watermarks in this process's list
def test_a_backlogged_file_advances_event_time_per_thousand_records(tmp_path: Path) -> None:
    """Reading a file (records ready at once), the watermark advances once per
    WATERMARK_EVERY_RECORDS records instead of after each of the 50 batches; a
    source without ready records (the testing source) advances it per batch."""
    from reflow.runtime.task import WATERMARK_EVERY_RECORDS

    events = [{"ts": t} for t in range(5_000)]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    seen, records = _probe_watermarks(Connectors.file(path=str(path)), batch_size=100)
    assert len(records) == 5_000
    assert WATERMARK_EVERY_RECORDS == 1_000
    # After each 1,000 records or more (batches are about 100 lines), and when the
    # file's only chunk has no more ready records; a watermark is largest ts - 1.
    marks = seen[:-1]
    assert len(marks) == 5
    assert marks[0] >= 998
    spaced = itertools.pairwise(marks[:-1])  # not the last: the chunk's end
    assert all(later - earlier >= 1_000 for earlier, later in spaced)
    assert marks[-1] == 4_998
    assert seen[-1] == MAX_WATERMARK
    live, _ = _probe_watermarks(TestingSource(events), batch_size=100)
    assert live[:-1] == [t * 100 + 98 for t in range(50)]


# -- windows over windows ---------------------------------------------------------------


def _minute_counts(flow: Flow, events: list[Any]) -> Any:
    stream = flow.source(TestingSource(events), id="events")
    stream = stream.assign_timestamps("ts", max_out_of_orderness_ms=500)
    return (
        stream.key_by("k")
        .window(Windows.tumbling("1m"))
        .aggregate(Aggregations.count(), id="minutes")
    )


def _assert_hourly_counts(flow: Flow, events: list[Any], out: TestingSink) -> None:
    """Run ``flow``: ``out`` holds each key's count per hour of ``events``, none late."""
    result = run_job(flow.to_job())
    assert result.status is JobStatus.COMPLETED, result.error
    expected: dict[tuple[int, int], int] = {}
    for e in events:
        hour = e["ts"] - e["ts"] % 3_600_000
        expected[e["k"], hour] = expected.get((e["k"], hour), 0) + 1
    assert {(r["key"], r["window_start"]): r["value"] for r in out.records} == expected
    assert result.metrics.step("hours").late == 0


def test_a_window_over_windows_puts_each_result_in_the_window_of_its_window() -> None:
    """Minute counts summed per hour: each minute's result carries its minute's last
    millisecond as event time (as Flink stamps window results), not the fields of
    the records it counted (which it no longer has)."""
    events = [{"k": i % 3, "ts": i * 7_000} for i in range(2_000)]  # ~3.9 hours
    flow = Flow("rollup")
    out = TestingSink()
    _minute_counts(flow, events).key_by("key").window(Windows.tumbling("1h")).aggregate(
        Aggregations.sum("value"), id="hours"
    ).sink(out)
    _assert_hourly_counts(flow, events, out)


@pytest.mark.parametrize("fan_out", [False, True], ids=["one-branch", "two-branches"])
def test_an_assigner_behind_an_exchange_makes_the_watermarks_its_windows_close_by(
    fan_out: bool,
) -> None:
    """Timestamps assigned again after a window (as SQL does for a window over a view
    of windows), in a subtask that also hears the window's own watermarks: those
    were taken as the subtask's output, so the assigner's watermarks and the final
    one at the end of input never passed and the last hour was lost, uncounted."""
    events = [{"k": i % 3, "ts": i * 7_000} for i in range(2_000)]  # ~3.9 hours
    flow = Flow("reassigned")
    minutes = _minute_counts(flow, events).map(
        lambda r: {**r, "at": r["window_end"] - 1}, id="with-time"
    )
    if fan_out:  # a second reader: the assigner is no longer chained to the window
        minutes.sink(TestingSink(), id="minutes-out")
    out = TestingSink()
    (
        minutes.assign_timestamps("at", id="again")
        .key_by("key")
        .window(Windows.tumbling("1h"))
        .aggregate(Aggregations.sum("value"), id="hours")
        .sink(out)
    )
    _assert_hourly_counts(flow, events, out)


def test_a_join_after_a_window_reads_the_results_event_time() -> None:
    events = [{"k": "a", "ts": t} for t in (1_000, 2_000, 61_000)]
    flow = Flow("join-after")
    minutes = _minute_counts(flow, events)
    marks = flow.source(
        TestingSource([{"key": "a", "ts": 59_999, "mark": 1}, {"key": "a", "ts": 1, "mark": 2}]),
        id="marks",
    ).assign_timestamps("ts")
    out = TestingSink()
    minutes.interval_join(marks, "key", "key", 0, 0).sink(out)
    assert run_job(flow.to_job()).status is JobStatus.COMPLETED
    # minute [0, 60000) carries 59,999: it meets the mark at 59,999, not the one at 1
    assert [(r["window_start"], r["value"], r["mark"]) for r in out.records] == [(0, 2, 1)]


def test_the_graph_says_how_each_step_reads_event_time() -> None:
    from reflow.operators.windows import window_result_time

    flow = Flow("graph")
    minutes = _minute_counts(flow, [])
    minutes.map(lambda r: r, id="after").sink(TestingSink(), id="out")
    minutes.late().sink(TestingSink(), id="late-out")
    processing = (
        flow.source(TestingSource([]), id="plain")
        .key_by("k")
        .window(Windows.tumbling("1m"))
        .aggregate(Aggregations.count(), id="unstamped")
    )
    processing.sink(TestingSink(), id="plain-out")
    graph = flow.to_job().stream_graph
    assert graph.timestamps_of("after") is window_result_time
    assert graph.timestamps_of("out") is window_result_time
    late_stamp = graph.timestamps_of("late-out")  # late records are input records
    assert late_stamp is not None and late_stamp({"ts": 5}) == 5
    assert graph.timestamps_of("plain-out") is None  # a processing-time window's results


def test_a_processing_time_window_gives_its_results_no_event_time() -> None:
    from reflow.operators.windows import window_result_time

    flow = Flow("processing-results")
    (
        flow.source(TestingSource([]), id="events")
        .assign_timestamps("ts")
        .key_by("k")
        .window(Windows.tumbling("1m", processing_time=True))
        .aggregate(Aggregations.count(), id="minutes")
        .sink(TestingSink(), id="out")
    )
    stamp = flow.to_job().stream_graph.timestamps_of("out")
    assert stamp is not window_result_time
