"""Recovery that holds on either executor: this module runs in the normal suite
on the local executor and again on Ray actors (tests/runtime/test_ray_executor.py
runs it with ``REFLOW_TEST_EXECUTOR=ray``). Failures are decided by files, not by
counters in the operator, because on Ray each attempt runs fresh copies of the
job in new processes."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import replace
from pathlib import Path

from reflow import Connectors, Flow, JobStatus
from reflow.graph.job import CheckpointConfig
from reflow.graph.restart import FixedDelayRestart
from reflow.testing import TestingSink, TestingSource, run_job

N = 20_000


# A failure in one attempt makes the other subtask of the step fail too if it
# meets a record >= from_record before the attempt is torn down: a subtask fails
# only if no failure happened in the last second, and restarts wait longer.
QUIET_S = 1.0
RESTART_DELAY_S = 1.3


class FailAfterCheckpoint:
    """Fails on a record >= ``from_record`` once a checkpoint exists, ``failures`` times
    in all, once per attempt (counted by marker files, so the count survives new
    processes)."""

    def __init__(self, from_record: int, failures: int, marks: Path, checkpoints: Path) -> None:
        self.from_record = from_record
        self.failures = failures
        self.marks = marks
        self.checkpoints = checkpoints
        self.seen = 0

    async def __call__(self, x: int) -> dict[str, int]:
        self.seen += 1
        if self.seen % 25 == 0:  # ~2 s per attempt: checkpoints complete meanwhile
            await asyncio.sleep(0.01)
        if x >= self.from_record and not any(self.checkpoints.rglob("chk-*")):
            # No checkpoint yet (a loaded machine): slow down, batch by batch, so one
            # completes between two batches before the failure is injected.
            await asyncio.sleep(0.02)
            return {"x": x}
        if x >= self.from_record:
            marks = list(self.marks.iterdir())
            failed = len(marks)
            recent = any(time.time() - m.stat().st_mtime < QUIET_S for m in marks)
            if failed < self.failures and not recent:
                (self.marks / f"failure-{failed}").touch()
                raise RuntimeError(f"injected failure {failed + 1} at {x}")
        return {"x": x}


def test_failures_restart_from_the_last_checkpoint_with_exactly_once_output(
    tmp_path: Path,
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    checkpoints = tmp_path / "ckpt"
    db = tmp_path / "out.db"
    # Source, flaky map and SQL sink are chained (two subtasks each): the map's pace
    # is the sources' pace, so checkpoints complete while they read.
    flow = Flow("recover-anywhere", parallelism=2, batch_size=100)
    stream = flow.source(TestingSource(range(N)), id="numbers").map(
        FailAfterCheckpoint(5_000, 2, marks, checkpoints), id="flaky"
    )
    stream.sink(
        Connectors.sql(
            url=f"sqlite:///{db}", table="numbers", create_table=True, delivery="exactly-once"
        ),
        id="rows",
    )
    sums = TestingSink()
    (
        stream.map(lambda r: r["x"])
        .key_by(lambda x: x % 7)
        .reduce(lambda a, b: a + b, emit="final", id="sums")
        .sink(sums)
    )
    job = flow.to_job(job_id="recover-anywhere")
    job.config = replace(
        job.config,
        checkpoint=CheckpointConfig(str(checkpoints), interval_ms=50, timeout_ms=20_000),
        restart=FixedDelayRestart(3, RESTART_DELAY_S),
    )

    result = run_job(job)

    assert result.status is JobStatus.COMPLETED, result.error
    assert result.restarts == 2
    assert len(list(marks.iterdir())) == 2
    # The last attempt resumed from a checkpoint: its source read only the rest.
    assert result.records_out("numbers") < N
    with sqlite3.connect(db) as conn:
        rows = sorted(x for (x,) in conn.execute("SELECT x FROM numbers"))
    assert rows == list(range(N))  # every record once, across two restarts
    expected = {k: sum(x for x in range(N) if x % 7 == k) for k in range(7)}
    assert {
        r["key"]: r["value"] for r in sums.records
    } == expected  # keyed state restored, not recounted
