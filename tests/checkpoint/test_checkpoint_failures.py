"""A checkpoint that cannot be written (full disk) is logged, counted, leaves no
temporary file and marks health DEGRADED; the next checkpoints are tried, and the
job fails only past its tolerance. The exactly-once output stays whole."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from reflow import Flow, JobStatus
from reflow.connectors.base import ConnectorContext, SourceReader
from reflow.graph.job import CheckpointConfig, Job
from reflow.runtime import LocalExecutor
from reflow.server.health import HealthChecker
from reflow.testing import TestingSink, TestingSource

N = 3_000
# Polling steps while waiting for the job to reach a state (not a timing assertion).
POLL_SECONDS = 0.005
MAX_POLLS = 4_000


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs: a disk that can really fill up."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"a full disk needs a tmpfs mount (root): {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _fill(folder: Path) -> Path:
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


class _Gate(SourceReader):
    """Hands out the inner reader's batches, holding at each position until its gate opens."""

    def __init__(self, inner: SourceReader, gates: dict[int, asyncio.Event]) -> None:
        self.inner = inner
        self.gates = gates

    def snapshot(self) -> Any:
        return self.inner.snapshot()

    def restore(self, position: Any) -> None:
        self.inner.restore(position)

    async def read_batch(self) -> list[Any] | None:
        position = int(self.inner.snapshot())
        for at, gate in self.gates.items():
            if position >= at:
                await gate.wait()
        return await self.inner.read_batch()


class GatedSource(TestingSource):
    def __init__(self, items: list[Any], gates: dict[int, asyncio.Event]) -> None:
        super().__init__(items, parallelism=1)
        self.gates = gates

    def create_reader(self, ctx: ConnectorContext) -> SourceReader:
        return _Gate(super().create_reader(ctx), self.gates)


def _job(folder: Path, source: TestingSource, sink: TestingSink, tolerable: int) -> Job:
    flow = Flow(f"ckpt-fail-{uuid.uuid4().hex[:6]}", batch_size=50)
    flow.source(source).map(lambda x: x, id="same").sink(sink, id="out")
    job = flow.to_job()
    checkpoint = CheckpointConfig(
        str(folder), interval_ms=20, timeout_ms=5_000, tolerable_failures=tolerable
    )
    job.config = replace(job.config, checkpoint=checkpoint)
    return job


async def _until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(MAX_POLLS):
        if condition():
            return
        await asyncio.sleep(POLL_SECONDS)
    raise AssertionError(f"never happened: {what}")


def test_a_full_disk_fails_checkpoints_then_they_complete_and_output_is_whole(
    small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="reflow.checkpoint.coordinator")
    gates = {1_000: asyncio.Event(), 2_000: asyncio.Event()}
    sink = TestingSink(exactly_once=True)
    job = _job(small_disk, GatedSource(list(range(N)), gates), sink, tolerable=1_000)
    executor = LocalExecutor()
    seen: dict[str, Any] = {}

    async def scenario() -> Any:
        running = asyncio.ensure_future(executor.execute(job))
        await _until(lambda: executor.is_running(job.job_id), "the job started")
        execution = executor.execution(job.job_id)
        coordinator = execution.coordinator
        assert coordinator is not None
        stats = coordinator.stats
        health = HealthChecker(executor)
        await _until(lambda: stats.completed >= 1, "a first checkpoint")
        filler = _fill(small_disk)
        gates[1_000].set()
        await _until(lambda: stats.failed >= 2, "two checkpoints failing on the full disk")
        seen["health"] = (await health.check()).to_dict()
        seen["tmp_files"] = [p.name for p in small_disk.rglob("*.tmp")]
        completed_before = stats.completed
        filler.unlink()
        await _until(
            lambda: stats.completed > completed_before, "a checkpoint after space came back"
        )
        seen["health_after"] = (await health.check()).to_dict()
        gates[2_000].set()
        return await running

    try:
        result = asyncio.run(scenario())
    finally:
        executor.close()
    assert result.status is JobStatus.COMPLETED, result.error
    assert sorted(sink.records) == list(range(N))  # each record once
    assert result.checkpoints is not None and result.checkpoints.failed >= 2
    assert seen["tmp_files"] == []
    assert seen["health"]["status"] == "DEGRADED"
    assert "checkpoint" in str(seen["health"]) and "No space left" in str(seen["health"])
    assert seen["health_after"]["status"] == "UP"
    failures = [r for r in caplog.records if getattr(r, "event", None) == "CHECKPOINT_FAILED"]
    assert len(failures) >= 2 and "No space left" in failures[0].getMessage()


def test_past_its_tolerance_the_job_fails_naming_the_storage_problem(small_disk: Path) -> None:
    _fill(small_disk)
    gates = {100: asyncio.Event()}  # never opens: only checkpoints can end this job
    sink = TestingSink(exactly_once=True)
    job = _job(small_disk, GatedSource(list(range(N)), gates), sink, tolerable=2)
    executor = LocalExecutor()
    try:
        result = asyncio.run(executor.execute(job))
    finally:
        executor.close()
        with contextlib.suppress(OSError):
            (small_disk / "filler").unlink()
    assert result.status is JobStatus.FAILED
    assert "3 checkpoints failed in a row (tolerated: 2)" in (result.error or "")
    assert "No space left" in (result.error or "")
    assert sink.records == []  # nothing was committed without a checkpoint
