"""Checkpoints after some subtasks finished (Flink's FLIP-147): a job whose one source
ends early keeps taking checkpoints while the other runs; a restore from one of them
reads nothing again from the finished source and writes every record once."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from reflow import Flow, JobStatus
from reflow.graph.job import CheckpointConfig
from reflow.graph.restart import FixedDelayRestart
from reflow.testing import TestingSink, TestingSource, run_job

SHORT = 100  # records 0..99: the source that finishes first
LONG = 8_000  # records 1000.. : the one that keeps running


def _latest_checkpoint(folder: Path) -> int:
    ids = [int(m.group(1)) for p in folder.rglob("chk-*") if (m := re.search(r"chk-(\d+)", p.name))]
    return max(ids, default=-1)


class FailAfterShortEnded:
    """Passes records through; once the short source's last record went by and two
    more checkpoints completed, fails once (a marker file remembers it)."""

    def __init__(self, marks: Path, checkpoints: Path) -> None:
        self.marks = marks
        self.checkpoints = checkpoints
        self.seen = 0

    async def __call__(self, x: int) -> int:
        self.seen += 1
        if self.seen % 20 == 0:
            await asyncio.sleep(0.005)  # the long source's pace: checkpoints meanwhile
        ended = self.marks / "short-ended"
        if x == SHORT - 1:
            ended.write_text(str(_latest_checkpoint(self.checkpoints)))
        failed = self.marks / "failed"
        if x >= 1_000 and ended.exists() and not failed.exists():
            after = int(ended.read_text())
            if _latest_checkpoint(self.checkpoints) >= after + 2:
                failed.touch()
                raise RuntimeError(f"injected failure at {x}")
        return x


def _job(tmp_path: Path, sink: TestingSink) -> Any:
    marks = tmp_path / "marks"
    marks.mkdir()
    checkpoints = tmp_path / "ckpt"
    flow = Flow("uneven", batch_size=20)
    short = flow.source(TestingSource(range(SHORT)), id="short")
    long = flow.source(TestingSource(range(1_000, 1_000 + LONG)), id="long")
    short.union(long, id="both").map(FailAfterShortEnded(marks, checkpoints), id="flaky").sink(
        sink, id="out"
    )
    job = flow.to_job(job_id="uneven")
    job.config = replace(
        job.config,
        checkpoint=CheckpointConfig(str(checkpoints), interval_ms=30, timeout_ms=20_000),
        restart=FixedDelayRestart(2, 0.1),
    )
    return job, marks


def test_checkpoints_go_on_after_a_source_finished_and_restore_exactly_once(
    tmp_path: Path,
) -> None:
    sink = TestingSink(exactly_once=True)
    job, marks = _job(tmp_path, sink)

    result = run_job(job)

    assert result.status is JobStatus.COMPLETED, result.error
    # Before, checkpoints stopped when the short source ended: the failure, which waits
    # for two checkpoints after that, never came.
    assert (marks / "failed").exists() and result.restarts == 1
    # The restore came from a checkpoint taken after the short source finished: it read
    # nothing again, and the long one only the rest.
    assert result.records_out("short") == 0
    assert result.records_out("long") < LONG
    expected = [*range(SHORT), *range(1_000, 1_000 + LONG)]
    assert sorted(sink.records) == expected  # every record once, none lost


def test_a_finished_subtask_is_in_every_later_checkpoint(tmp_path: Path) -> None:
    """Without a failure: the checkpoints taken after the short source ended hold its
    end position, and the job completes with every record once."""
    from reflow.checkpoint.storage import open_storage

    sink = TestingSink(exactly_once=True)
    job, marks = _job(tmp_path, sink)
    (marks / "failed").touch()  # no failure this time

    result = run_job(job)

    assert result.status is JobStatus.COMPLETED, result.error
    assert result.checkpoints is not None
    after = int((marks / "short-ended").read_text())
    assert result.checkpoints.last_id is not None and result.checkpoints.last_id > after
    storage = open_storage(str(tmp_path / "ckpt"))
    latest = storage.latest("uneven")
    assert latest is not None and latest.checkpoint_id > after
    assert latest.states[("short", 0)]["source"] is not None  # the finished source is there
    assert sorted(sink.records) == [*range(SHORT), *range(1_000, 1_000 + LONG)]
