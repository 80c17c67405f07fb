"""Checkpoints and recovery in one process: restart strategies, exactly-once, savepoints."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from reflow import Flow, JobStatus
from reflow.checkpoint import FileCheckpointStorage
from reflow.graph.restart import (
    ExponentialBackoffRestart,
    FailureRateRestart,
    FixedDelayRestart,
)
from reflow.runtime import ExecutorSettings, LocalExecutor
from reflow.testing import TestingSink, TestingSource, run_job

N = 3_000


class FlakyUntil:
    """Fails on one record during the first ``failures`` attempts."""

    def __init__(self, at: int, failures: int) -> None:
        self.at = at
        self.failures = failures
        self.seen = 0

    async def __call__(self, x: int) -> int:
        if x % 100 == 0:
            await asyncio.sleep(0.005)  # slow enough for checkpoints to happen
        if x == self.at and self.seen < self.failures:
            self.seen += 1
            raise RuntimeError(f"flaky failure {self.seen} at {x}")
        return x


def _job(
    tmp: Path, flaky: FlakyUntil, restart: Any, parallelism: int = 2
) -> tuple[Any, TestingSink, TestingSink]:
    flow = Flow("recover", parallelism=parallelism, batch_size=20)
    rows, sums = TestingSink(exactly_once=True), TestingSink(exactly_once=True)
    stream = flow.source(TestingSource(range(N), parallelism=1)).map(flaky, id="flaky")
    stream.sink(rows, id="rows")
    stream.key_by(lambda x: x % 7).reduce(lambda a, b: a + b, emit="final", id="sums").sink(sums)
    job = flow.to_job(job_id="recover-job")
    from dataclasses import replace

    from reflow.graph.job import CheckpointConfig

    job.config = replace(
        job.config,
        checkpoint=CheckpointConfig(str(tmp / "ckpt"), interval_ms=30, timeout_ms=5_000),
        restart=restart,
    )
    return job, rows, sums


def test_fixed_delay_restarts_from_the_checkpoint_and_finishes_exactly_once(tmp_path: Path) -> None:
    flaky = FlakyUntil(at=2_500, failures=2)
    job, rows, sums = _job(tmp_path, flaky, FixedDelayRestart(attempts=3, delay_s=0.01))
    result = run_job(job)
    assert result.status is JobStatus.COMPLETED, result.error
    assert result.restarts == 2
    assert sorted(rows.records) == list(range(N))  # nothing lost, nothing twice
    expected = {k: sum(x for x in range(N) if x % 7 == k) for k in range(7)}
    assert {r["key"]: r["value"] for r in sums.records} == expected
    storage = FileCheckpointStorage(tmp_path / "ckpt")
    assert storage.checkpoints("recover-job"), "checkpoints were written"


def test_past_the_attempts_the_job_fails_with_error_and_step(tmp_path: Path) -> None:
    flaky = FlakyUntil(at=2_000, failures=10)
    job, _, _ = _job(tmp_path, flaky, FixedDelayRestart(attempts=2, delay_s=0))
    result = run_job(job)
    assert result.status is JobStatus.FAILED
    assert result.restarts == 2
    assert result.step_id == "flaky"
    assert "flaky failure 3 at 2000" in (result.error or "")


def test_exponential_backoff_delays_with_a_manual_clock() -> None:
    tracker = ExponentialBackoffRestart(1.0, 5.0, 2.0, max_attempts=5).tracker()
    assert [tracker.on_failure(0) for _ in range(6)] == [1.0, 2.0, 4.0, 5.0, 5.0, None]


def test_failure_rate_gives_up_when_failures_cluster() -> None:
    spec = FailureRateRestart(max_failures_per_interval=2, interval_s=60, delay_s=3)
    tracker = spec.tracker()
    assert [tracker.on_failure(t) for t in (0, 10_000, 20_000)] == [3, 3, None]
    tracker = spec.tracker()
    # the failure at 0 has left the 60 s window when the one at 70 s comes
    assert [tracker.on_failure(t) for t in (0, 10_000, 70_000)] == [3, 3, 3]


def test_corrupt_latest_checkpoint_falls_back_to_the_previous(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    flaky = FlakyUntil(at=N + 1, failures=0)
    job, _, _ = _job(tmp_path, flaky, FixedDelayRestart(attempts=0))
    assert run_job(job).status is JobStatus.COMPLETED
    storage = FileCheckpointStorage(tmp_path / "ckpt")
    files = storage.checkpoints("recover-job")
    assert files, "the job took no checkpoint"
    if len(files) < 2:  # a loaded machine ran the job within one interval: write a later one
        data = storage.read(files[-1])
        storage.write(replace(data, checkpoint_id=storage.next_id("recover-job"), path=""))
        files = storage.checkpoints("recover-job")
    assert len(files) >= 2
    Path(files[-1]).write_bytes(Path(files[-1]).read_bytes()[:-10])  # a torn write
    with caplog.at_level("WARNING"):
        latest = storage.latest("recover-job")
    assert latest is not None
    assert latest.path == str(files[-2])
    assert "does not verify" in caplog.text


def _rescale_job(parallelism: int, tmp: Path, sink: TestingSink) -> Any:
    flow = Flow("rescale", parallelism=parallelism, batch_size=50)
    (
        flow.source(
            TestingSource(
                [{"k": i % 50, "v": i, "ts": i} for i in range(N)], parallelism=1, bounded=False
            )
        )
        .assign_timestamps("ts")
        .key_by("k")
        .reduce(lambda a, b: a + b, value="v", emit="updates", id="totals")
        .sink(sink)
    )
    job = flow.to_job(job_id="rescale-job")
    from dataclasses import replace

    from reflow.graph.job import CheckpointConfig

    job.config = replace(job.config, checkpoint=CheckpointConfig(str(tmp), interval_ms=60_000))
    return job


@pytest.mark.parametrize(("before", "after"), [(2, 4), (1, 3)])
def test_savepoint_and_resume_with_more_parallelism(
    tmp_path: Path, before: int, after: int
) -> None:
    """Keyed state moves by key group to the new subtasks; at parallelism 1 the keyed
    step was chained with its source (one vertex), at 3 it is a vertex of its own."""
    first = TestingSink()
    job = _rescale_job(before, tmp_path, first)

    async def take_savepoint() -> Any:
        with LocalExecutor(ExecutorSettings()) as executor:
            task = asyncio.create_task(executor.execute(job))
            while sum(1 for _ in first.records) < N:  # every record processed
                await asyncio.sleep(0.01)
            data = await executor.savepoint(job.job_id, stop=True)
            await task
            return data

    savepoint = asyncio.run(take_savepoint())
    assert savepoint is not None and savepoint.savepoint
    assert Path(savepoint.path).parent.name == "savepoints"
    totals_at_savepoint = {r["k"]: r["v"] for r in first.records}

    # Resume with more parallelism and feed one more record per key.
    second = TestingSink()
    resumed = _rescale_job(after, tmp_path, second)
    restored = FileCheckpointStorage(tmp_path).read(savepoint.path)

    async def resume() -> Any:
        with LocalExecutor(ExecutorSettings()) as executor:
            task = asyncio.create_task(executor.execute(resumed, restore=restored))
            while len(second.records) < 50:
                await asyncio.sleep(0.01)
            await executor.stop(resumed.job_id)
            return await task

    # The source resumes after its last record: the restored job gets no new input,
    # so give it some by extending the source before it is read again.
    source = resumed.stream_graph.nodes[0].payload
    source.items.extend([{"k": k, "v": 1_000_000, "ts": N + k} for k in range(50)])
    result = asyncio.run(resume())
    assert result.status is JobStatus.CANCELLED
    totals_after = {r["k"]: r["v"] for r in second.records}
    assert totals_after == {k: totals_at_savepoint[k] + 1_000_000 for k in range(50)}
    assert len(resumed.job_graph.vertex_of("totals").chained_nodes) >= 1
    assert resumed.job_graph.vertex_of("totals").parallelism == after
    assert (job.job_graph.vertex_of("totals") is job.job_graph.vertices[0]) == (before == 1)


def test_restarts_wait_on_the_injected_clock_with_exponential_backoff(tmp_path: Path) -> None:
    from reflow.eventtime import ManualClock
    from reflow.runtime import execute_with_recovery

    clock = ManualClock()
    attempts: list[int] = []

    def always_fails(x: int) -> int:
        attempts.append(clock.now_ms())
        raise RuntimeError("down")

    flow = Flow("backoff")
    flow.source(TestingSource([1])).map(always_fails, id="call").sink(TestingSink())
    job = flow.to_job()
    from dataclasses import replace

    job.config = replace(
        job.config, restart=ExponentialBackoffRestart(1.0, 3.0, 2.0, max_attempts=3)
    )

    async def scenario() -> Any:
        with LocalExecutor(ExecutorSettings(clock=clock)) as executor:
            task = asyncio.create_task(execute_with_recovery(executor, job))
            for _ in range(8):
                await clock.advance_and_settle(1.0)
            return await task

    result = asyncio.run(scenario())
    assert result.status is JobStatus.FAILED and result.step_id == "call"
    assert result.restarts == 3
    waits = [b - a for a, b in itertools.pairwise(attempts)]
    assert waits == [1_000, 2_000, 3_000]  # 1 s, 2 s, then 3 s (capped at max_delay)
