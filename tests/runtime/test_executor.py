"""The local executor: identical results whatever the chaining and parallelism, and its behaviours."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Any

import pytest

from reflow import (
    Connectors,
    ErrorMode,
    ErrorPolicy,
    Flow,
    Job,
    JobStatus,
    Operator,
    Operators,
    Overflow,
    StreamGraph,
)
from reflow.eventtime.clock import ManualClock
from reflow.graph.job import JobConfig
from reflow.runtime import ExecutorSettings, LocalExecutor
from reflow.testing import TestingSink, TestingSource, TestingSourceAbort, run_job

RECORDS = [{"user": f"u{i % 37}", "amount": i % 101, "n": i} for i in range(5_000)]


def _pipeline(parallelism: int, chaining: bool) -> tuple[Job, TestingSink]:
    sink = TestingSink()
    flow = Flow("equivalence", parallelism=parallelism, chaining=chaining, batch_size=64)
    (
        flow.source(TestingSource(RECORDS))
        .map(lambda r: {**r, "amount": r["amount"] * 2})
        .filter(lambda r: r["amount"] % 3 != 0)
        .flat_map(lambda r: [r, {**r, "copy": True}] if r["n"] % 10 == 0 else [r])
        .key_by(lambda r: r["user"])
        .map(lambda r: (r["user"], r["amount"], r["n"], r.get("copy", False)))
        .sink(sink)
    )
    return flow.to_job(), sink


@pytest.mark.parametrize("parallelism", [1, 4])
@pytest.mark.parametrize("chaining", [True, False])
def test_identical_outputs_with_chaining_on_off_and_parallelism_1_4(
    parallelism: int, chaining: bool
) -> None:
    reference, ref_sink = _pipeline(1, True)
    assert run_job(reference).status is JobStatus.COMPLETED
    job, sink = _pipeline(parallelism, chaining)
    result = run_job(job)
    assert result.status is JobStatus.COMPLETED, result.error
    assert sorted(sink.records) == sorted(ref_sink.records)
    assert len(sink.records) > 3_000
    if not chaining:
        assert len(job.job_graph.vertices) == len(job.stream_graph.nodes)


def test_hash_partitioning_sends_every_key_to_one_subtask() -> None:
    seen: dict[str, set[int]] = {}

    class Tag(Operator[Any, Any]):
        def build(self, ctx: Any) -> Any:
            logic = super().build(ctx)
            setattr(logic, "apply", lambda records: [(ctx.subtask_index, r) for r in records])  # noqa: B010
            return logic

        def apply(self, records: Any) -> Any:  # replaced per subtask in build
            return records

    sink = TestingSink()
    job = (
        Job.builder()
        .parallelism(4)
        .source(TestingSource(RECORDS))
        .transform(Operators.key_by(lambda r: r["user"]))
        .transform(Tag())
        .sink(sink)
        .build()
    )
    assert run_job(job).status is JobStatus.COMPLETED
    for subtask, record in sink.records:
        seen.setdefault(record["user"], set()).add(subtask)
    assert len(seen) == 37
    assert all(len(subtasks) == 1 for subtasks in seen.values())
    assert len({s for subtasks in seen.values() for s in subtasks}) == 4


@pytest.mark.local_only
def test_async_map_keeps_order_and_bounds_concurrency() -> None:
    in_flight = 0
    peak = 0

    async def lookup(x: int) -> int:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.001 * (x % 3))
        in_flight -= 1
        return x * 10

    sink = TestingSink()
    job = (
        Job.builder()
        .source(TestingSource(range(200)))
        .transform(Operators.map(lookup, concurrency=5))
        .sink(sink)
        .build()
    )
    assert run_job(job).status is JobStatus.COMPLETED
    assert sink.records == [x * 10 for x in range(200)]
    assert peak == 5


def test_async_unordered_emits_in_completion_order() -> None:
    released = asyncio.Event()

    async def slow_first(x: int) -> int:
        if x == 0:
            await released.wait()  # completes only after the last one has,
            for _ in range(10):  # and some turns of the event loop later
                await asyncio.sleep(0)
        elif x == 4:
            released.set()
        return x

    sink = TestingSink()
    job = (
        Job.builder()
        .source(TestingSource(range(5)))
        .transform(Operators.map(slow_first, ordered=False))
        .sink(sink)
        .build()
    )
    run_job(job)
    assert sorted(sink.records) == [0, 1, 2, 3, 4]
    assert sink.records[-1] == 0


def test_async_filter_and_flat_map() -> None:
    async def even(x: int) -> bool:
        return x % 2 == 0

    async def twice(x: int) -> list[int]:
        return [x, x]

    sink = TestingSink()
    flow = Flow("async")
    flow.source(TestingSource(range(6))).filter(even).flat_map(twice).sink(sink)
    run_job(flow.to_job())
    assert sink.records == [0, 0, 2, 2, 4, 4]


@pytest.mark.local_only
def test_blocking_function_runs_off_the_event_loop() -> None:
    threads: set[str] = set()

    def heavy(x: int) -> int:
        threads.add(threading.current_thread().name)
        return x + 1

    sink = TestingSink()
    job = (
        Job.builder()
        .source(TestingSource(range(10)))
        .transform(Operators.map(heavy, blocking=True))
        .sink(sink)
        .build()
    )
    run_job(job)
    assert sink.records == list(range(1, 11))
    assert threads and all(name.startswith("reflow-compute") for name in threads)


def _failing(x: int) -> int:
    if x % 10 == 3:
        raise ValueError(f"bad {x}")
    return x


def test_fail_policy_fails_the_job_with_step_and_record() -> None:
    job = (
        Job.builder()
        .source(TestingSource(range(20)))
        .transform(Operators.map(_failing), id="parse")
        .sink(TestingSink())
        .build()
    )
    result = run_job(job)
    assert result.status is JobStatus.FAILED
    assert result.step_id == "parse"
    assert "step 'parse' failed on record 3: ValueError: bad 3" in (result.error or "")
    assert job.status is JobStatus.FAILED


@pytest.mark.local_only
def test_skip_policy_counts_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    sink = TestingSink()
    job = (
        Job.builder()
        .error_policy(ErrorPolicy(ErrorMode.SKIP))
        .source(TestingSource(range(20)))
        .transform(Operators.map(_failing), id="parse")
        .sink(sink)
        .build()
    )
    with caplog.at_level("WARNING"):
        result = run_job(job)
    assert result.status is JobStatus.COMPLETED
    assert sink.records == [x for x in range(20) if x % 10 != 3]
    assert result.metrics.step("parse").rejected == 2
    assert sum("skipped record" in r.message for r in caplog.records) == 2


def test_dead_letter_policy_keeps_the_record_step_and_error() -> None:
    dead = TestingSink()
    sink = TestingSink()
    job = (
        Job.builder()
        .error_policy(ErrorPolicy(ErrorMode.DEAD_LETTER, dead_letter=dead))
        .source(TestingSource(range(20)))
        .transform(Operators.filter(lambda x: 1 / (x % 7) > 0), id="keep")
        .sink(sink)
        .build()
    )
    result = run_job(job)
    assert result.status is JobStatus.COMPLETED
    assert sink.records == [x for x in range(20) if x % 7]
    assert [d["record"] for d in dead.records] == [0, 7, 14]
    assert {d["step_id"] for d in dead.records} == {"keep"}
    assert {d["error_type"] for d in dead.records} == {"ZeroDivisionError"}
    assert result.metrics.step("keep").dead_lettered == 3


def test_a_dead_letter_file_takes_records_json_cannot_hold(tmp_path: Any) -> None:
    """A record that failed may hold what the dead-letter sink cannot encode (an
    object, a lone surrogate, a huge int): its entry keeps the record's shape with
    those values replaced (repr, escaped, as text), and the job goes on."""
    import orjson

    from reflow import Connectors

    def fail_odd(record: dict[str, Any]) -> dict[str, Any]:
        if record["n"] % 2:
            raise ValueError(f"odd {record['s']}")
        return record

    records = [
        {"n": 0, "s": "a"},
        {"n": 1, "s": "x\ud800", "o": object()},
        {"n": 3, "s": "y", "big": 2**70},
        {"n": 5, "s": "plain"},
        {"n": 6, "s": "b"},
    ]
    path = tmp_path / "dead.jsonl"
    sink = TestingSink()
    job = (
        Job.builder()
        .error_policy(
            ErrorPolicy(ErrorMode.DEAD_LETTER, dead_letter=Connectors.file(path=str(path)))
        )
        .source(TestingSource(records))
        .transform(Operators.map(fail_odd), id="odd")
        .sink(sink)
        .build()
    )
    # (on Ray this also shows the log line is written: a worker's stderr cannot
    # write a lone surrogate, and the log call itself failed the step)
    result = run_job(job)
    assert result.status is JobStatus.COMPLETED, result.error
    assert [r["n"] for r in sink.records] == [0, 6]
    dead = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert [d["error"] for d in dead] == ["odd x\\ud800", "odd y", "odd plain"]
    assert dead[0]["record"]["s"] == "x\\ud800"  # the surrogate escaped
    assert dead[0]["record"]["o"].startswith("<object object")  # the object's repr
    assert dead[1]["record"] == {"n": 3, "s": "y", "big": "1180591620717411303424"}
    assert dead[2]["record"] == {"n": 5, "s": "plain"}  # JSON holds it: kept as it is


@pytest.mark.local_only  # reads this process's log records
def test_a_rejected_records_log_line_is_utf8_text(caplog: pytest.LogCaptureFixture) -> None:
    """The error's text and the record are escaped where UTF-8 cannot hold them."""

    def fail(record: str) -> str:
        raise ValueError(f"bad {record}")

    job = (
        Job.builder()
        .error_policy(ErrorPolicy(ErrorMode.SKIP))
        .source(TestingSource(["x\ud800", "y"]))
        .transform(Operators.map(fail), id="bad")
        .sink(TestingSink())
        .build()
    )
    with caplog.at_level("WARNING"):
        assert run_job(job).status is JobStatus.COMPLETED
    logged = [r.getMessage() for r in caplog.records if "skipped record" in r.getMessage()]
    assert len(logged) == 2
    assert "bad x\\ud800" in logged[0]
    assert all(m.encode("utf-8") for m in logged)


def test_per_step_policy_overrides_the_job_policy() -> None:
    sink = TestingSink()
    job = (
        Job.builder()
        .error_policy(ErrorPolicy(ErrorMode.FAIL, per_step={"lenient": ErrorMode.SKIP}))
        .source(TestingSource(range(20)))
        .transform(Operators.map(_failing), id="lenient")
        .sink(sink)
        .build()
    )
    assert run_job(job).status is JobStatus.COMPLETED
    assert len(sink.records) == 18


def test_source_failure_names_the_source_step() -> None:
    job = (
        Job.builder()
        .source(TestingSource([1, 2, TestingSource.ABORT, 3]), id="feed")
        .sink(TestingSink())
        .build()
    )
    result = run_job(job)
    assert result.status is JobStatus.FAILED
    assert result.step_id == "feed"
    assert "ABORT marker" in str(result.error)
    if result.exception is not None:  # the local executor keeps the exception object
        assert isinstance(result.exception.__cause__, TestingSourceAbort)


def test_error_overflow_fails_the_job_when_the_consumer_lags() -> None:
    async def slow(x: int) -> int:
        await asyncio.sleep(0.001)
        return x

    graph = (
        StreamGraph.builder()
        .add_source("src", TestingSource(range(5_000)))
        .add_operator("slow", Operators.map(slow), parallelism=2)
        .add_sink("out", TestingSink(), parallelism=2)
        .connect("src", "slow", overflow=Overflow.ERROR, capacity=1)
        .connect("slow", "out")
        .build()
    )
    job = Job(graph.to_job_graph(), config=JobConfig(batch_size=10))
    result = run_job(job)
    assert result.status is JobStatus.FAILED
    assert "strategy is ERROR" in (result.error or "")


def test_union_and_broadcast() -> None:
    sink = TestingSink(parallelism=3)
    graph = (
        StreamGraph.builder()
        .add_source("a", TestingSource(["a1", "a2"]))
        .add_source("b", TestingSource(["b1"]))
        .add_operator("merge", Operators.union())
        .add_sink("out", sink)
        .connect("a", "merge")
        .connect("b", "merge")
        .connect("merge", "out", partitioning="broadcast")
        .build()
    )
    assert run_job(Job(graph.to_job_graph())).status is JobStatus.COMPLETED
    assert Counter(sink.records) == {"a1": 3, "a2": 3, "b1": 3}


def test_stop_cancels_a_streaming_job_and_pause_holds_the_source() -> None:
    """The generator is paced on a ManualClock: time passing while paused produces
    nothing; after resume the same time produces records again."""
    sink = TestingSink()
    job = Job.builder().source(Connectors.datagen(rows_per_second=2_000)).sink(sink).build()
    clock = ManualClock()

    async def settle() -> int:
        """Let records in flight arrive: the loop turns until the count stays put."""
        count = -1
        while count != len(sink.records):
            count = len(sink.records)
            for _ in range(50):
                await asyncio.sleep(0)
        return count

    async def scenario() -> tuple[int, int, int, JobStatus]:
        with LocalExecutor(ExecutorSettings(clock=clock)) as executor:
            task = asyncio.create_task(executor.execute(job))
            while len(sink.records) < 100:
                await clock.advance_and_settle(0.1)
            executor.pause(job.job_id)
            # The source stops at its next batch boundary: the batch it is reading
            # (waiting for its time on the clock) still arrives.
            await clock.advance_and_settle(0.1)
            paused_at = await settle()
            await clock.advance_and_settle(10.0, step=0.1)  # 20,000 rows' worth of time
            after_pause = await settle()
            executor.resume(job.job_id)
            await clock.advance_and_settle(1.0, step=0.1)
            after_resume = await settle()
            await executor.stop(job.job_id)
            result = await task
            return paused_at, after_pause, after_resume, result.status

    paused_at, after_pause, after_resume, status = asyncio.run(scenario())
    assert paused_at >= 100
    assert after_pause == paused_at
    assert after_resume > after_pause
    assert status is JobStatus.CANCELLED
    assert job.status is JobStatus.CANCELLED
    assert JobStatus.PAUSED in [s for s, _ in job.history]


def test_result_metrics_count_records_per_step() -> None:
    job = (
        Job.builder()
        .parallelism(2)
        .source(TestingSource(range(1_000)))
        .transform(Operators.filter(lambda x: x % 4 == 0), id="quarter")
        .sink(TestingSink())
        .build()
    )
    started = time.perf_counter()
    result = run_job(job)
    assert result.records_out("source") == 1_000
    assert result.records_in("quarter") == 1_000
    assert result.records_out("quarter") == 250
    assert result.records_in("sink") == 250
    assert result.metrics.step("quarter").subtasks == 2
    assert 0 < result.duration_seconds < time.perf_counter() - started + 0.01


def test_a_testing_sink_writes_into_the_list_the_test_owns() -> None:
    out: list[int] = [-1]
    flow = Flow("owned", parallelism=2)
    flow.source(TestingSource(range(100))).map(lambda x: x + 1).sink(TestingSink(out))
    result = run_job(flow.to_job())
    assert result.status is JobStatus.COMPLETED, result.error
    assert out[0] == -1 and sorted(out[1:]) == list(range(1, 101))


@pytest.mark.local_only  # counts turns of this process's event loop
def test_a_source_with_ready_records_and_a_chain_that_never_waits_yields_the_loop(
    tmp_path: Any,
) -> None:
    """A file read whole into memory, chained into a step that blocks briefly on each
    batch and a window that emits nothing until the end: nothing in the chain
    awaits, so the source must give the loop a turn now and then (checkpoints,
    timers and the API share it)."""
    from reflow.operators import Windows

    path = tmp_path / "events.jsonl"
    path.write_text("".join(f'{{"k": {i % 7}, "ts": {i}}}\n' for i in range(8_000)))

    def slow(record: Any) -> Any:
        time.sleep(0.0001)  # 10 ms per batch of 100: 0.8 s in all
        return record

    flow = Flow("hog", batch_size=100)
    (
        flow.source(Connectors.file(path=str(path)))
        .map(slow)
        .assign_timestamps("ts")
        .key_by("k")
        .window(Windows.tumbling(1_000_000))
        .count()
        .sink(TestingSink())
    )
    job = flow.to_job()
    assert len(job.job_graph.vertices) == 1  # one chain, no channel to wait on

    async def scenario() -> tuple[float, Any]:
        longest = 0.0
        with LocalExecutor(ExecutorSettings()) as executor:
            task = asyncio.create_task(executor.execute(job))
            last = time.perf_counter()
            while not task.done():
                await asyncio.sleep(0)
                now = time.perf_counter()
                longest, last = max(longest, now - last), now
            return longest, await task

    longest, result = asyncio.run(scenario())
    assert result.status is JobStatus.COMPLETED, result.error
    # A turn about every 10 ms (the source's turn) plus a batch; without the turns the
    # loop waited for the whole 0.8 s of processing.
    assert longest < 0.4


def test_a_dead_letter_entry_holds_a_typed_row_or_dataclass_as_its_fields(
    tmp_path: Any,
) -> None:
    """Records a declared schema decoded into typed rows, and dataclass records,
    are dead-lettered as objects of their fields (not as their repr)."""
    import dataclasses

    import orjson

    from reflow import Connectors

    @dataclasses.dataclass
    class Point:
        x: int
        label: str
        inner: Any = None

    source = tmp_path / "in.jsonl"
    source.write_text('{"n": 1, "s": "a"}\n{"n": 2, "s": "b\\u00e9"}\n{"n": 3}\n')
    dead_path = tmp_path / "dead.jsonl"

    def fail_even(row: Any) -> Any:
        if row["n"] % 2 == 0:
            raise ValueError("even")
        return row

    policy = ErrorPolicy(ErrorMode.DEAD_LETTER, dead_letter=Connectors.file(path=str(dead_path)))
    typed = (
        Job.builder()
        .error_policy(policy)
        .source(
            Connectors.file(path=str(source), format="json", schema={"n": "BIGINT", "s": "VARCHAR"})
        )
        .transform(Operators.map(fail_even), id="even")
        .sink(TestingSink())
        .build()
    )
    assert run_job(typed).status is JobStatus.COMPLETED
    dead = [orjson.loads(line) for line in dead_path.read_bytes().splitlines()]
    assert [d["record"] for d in dead] == [{"n": 2, "s": "bé"}]

    dead_path.unlink()

    def fail_point(point: Point) -> Point:
        if point.x:
            raise ValueError("x")
        return point

    objects = (
        Job.builder()
        .error_policy(policy)
        .source(TestingSource([Point(0, "a"), Point(1, "b", Point(2, "c", object()))]))
        .transform(Operators.map(fail_point), id="point")
        .sink(TestingSink())
        .build()
    )
    assert run_job(objects).status is JobStatus.COMPLETED
    (entry,) = [orjson.loads(line) for line in dead_path.read_bytes().splitlines()]
    record = entry["record"]
    assert record["x"] == 1 and record["label"] == "b"
    assert record["inner"]["x"] == 2 and record["inner"]["inner"].startswith("<object object")
