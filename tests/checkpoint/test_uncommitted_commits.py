"""A transactional sink whose checkpoint-complete notices never arrived (they were on
their way when the job failed) gets every uncommitted checkpoint back on restore, not
only the latest one: nothing it pre-committed is lost."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from reflow import Job, JobStatus, Operators
from reflow.connectors.base import ConnectorContext, SinkWriter
from reflow.graph.restart import FixedDelayRestart
from reflow.testing import TestingSink, TestingSource, run_job


class _RecordingSink(TestingSink):
    """An exactly-once TestingSink that keeps what each restore was given."""

    def __init__(self) -> None:
        super().__init__(exactly_once=True)
        self.restored: list[list[Any]] = []

    def create_writer(self, ctx: ConnectorContext) -> SinkWriter:
        writer = super().create_writer(ctx)
        restore = writer.restore

        async def recording_restore(states: list[Any]) -> None:
            self.restored.append(states)
            await restore(states)

        setattr(writer, "restore", recording_restore)  # noqa: B010 -- a test probe
        return writer


def test_every_uncommitted_checkpoint_is_restored_not_only_the_latest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first attempt's completion notices never reach the subtask (as when they
    wait behind a busy chain and the job fails first)."""
    from reflow.runtime.task import Subtask

    sink = _RecordingSink()
    failed = {"done": False}
    lost: list[int] = []
    notify = Subtask.notify_complete

    async def late_notice(self: Subtask, checkpoint_id: int) -> None:
        if not sink.restored:
            lost.append(checkpoint_id)
            return
        await notify(self, checkpoint_id)

    monkeypatch.setattr(Subtask, "notify_complete", late_notice)

    async def fail_after_two_checkpoints(record: dict[str, int]) -> dict[str, int]:
        if record["n"] % 50 == 0:
            await asyncio.sleep(0.002)  # let checkpoints complete while records flow
        if not failed["done"] and len(lost) >= 3:
            failed["done"] = True
            raise RuntimeError("forced failure")
        return record

    job = (
        Job.builder()
        .batch_size(25)
        .checkpointing(str(tmp_path / "ckpt"), interval_ms=30)
        .restart_strategy(FixedDelayRestart(attempts=2, delay_s=0.01))
        .source(TestingSource([{"n": i} for i in range(20_000)]))
        .transform(Operators.map(fail_after_two_checkpoints, concurrency=1))
        .sink(sink)
        .build()
    )
    result = run_job(job)
    assert result.status is JobStatus.COMPLETED, result.error
    assert failed["done"] and result.restarts == 1
    assert len(sink.restored) == 1 and len(sink.restored[0]) >= 3  # every pending checkpoint
    assert sorted(r["n"] for r in sink.records) == list(range(20_000))  # none lost, none twice
