"""A checkpoint in progress when a chained source reaches its end: the final window
firings (the MAX watermark at end of input) wait for the snapshot, so no record
reaches a sink between its pre-commit and the end of it (where an exactly-once
sink would put it into a part already being closed and lose it)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

from reflow import Flow, JobStatus
from reflow.connectors.base import ConnectorContext, Sink, SinkWriter, Source, SourceReader
from reflow.graph.job import CheckpointConfig
from reflow.operators import Windows
from reflow.testing import run_job

EVENTS = [{"k": i % 3, "ts": i * 10} for i in range(300)]


class _Handshake:
    """Orders the race: the source's end waits for a checkpoint's pre-commit to
    begin; that pre-commit waits for the source's end, then yields the loop."""

    def __init__(self) -> None:
        self.pre_commit_began = asyncio.Event()
        self.input_ended = asyncio.Event()


class _Reader(SourceReader):
    def __init__(self, handshake: _Handshake, batch_size: int) -> None:
        self.handshake = handshake
        self.batch_size = batch_size
        self.position = 0

    def snapshot(self) -> Any:
        return self.position

    def restore(self, position: Any) -> None:
        self.position = int(position)

    async def read_batch(self) -> list[Any] | None:
        if self.position >= len(EVENTS):
            await self.handshake.pre_commit_began.wait()
            self.handshake.input_ended.set()
            return None
        batch = EVENTS[self.position : self.position + self.batch_size]
        self.position += len(batch)
        return batch


class _Source(Source):
    connector_type = "race-source"

    def __init__(self, handshake: _Handshake) -> None:
        self.handshake = handshake

    def create_reader(self, ctx: ConnectorContext) -> SourceReader:
        return _Reader(self.handshake, ctx.batch_size)


class _Staging(SinkWriter):
    """Exactly-once into ``committed``: a checkpoint's records appear when it completes."""

    def __init__(self, committed: list[Any]) -> None:
        self.committed = committed
        self.current: list[Any] = []
        self.staged: dict[int, list[Any]] = {}

    async def write(self, batch: list[Any]) -> None:
        self.current.extend(batch)

    async def pre_commit(self, checkpoint_id: int) -> Any:
        self.staged[checkpoint_id], self.current = self.current, []
        return checkpoint_id

    async def commit(self, checkpoint_id: int) -> None:
        for staged in sorted(c for c in self.staged if c <= checkpoint_id):
            self.committed.extend(self.staged.pop(staged))

    async def flush(self) -> None:
        await self.commit(max(self.staged, default=0))
        self.committed.extend(self.current)
        self.current = []


class _Writer(_Staging):
    """Notes every write that came mid-pre-commit."""

    def __init__(self, sink: _Sink) -> None:
        super().__init__(sink.committed)
        self.sink = sink
        self.in_pre_commit = False

    async def write(self, batch: list[Any]) -> None:
        if self.in_pre_commit:
            self.sink.mid_pre_commit.extend(batch)
        await super().write(batch)

    async def pre_commit(self, checkpoint_id: int) -> Any:
        handshake = self.sink.handshake
        self.in_pre_commit = True
        handshake.pre_commit_began.set()
        await handshake.input_ended.wait()
        for _ in range(20):  # the loop is free to run the source's end meanwhile
            await asyncio.sleep(0)
        staged = await super().pre_commit(checkpoint_id)
        self.in_pre_commit = False
        return staged


class _Sink(Sink):
    connector_type = "race-sink"
    supports_transaction = True

    def __init__(self, handshake: _Handshake) -> None:
        self.handshake = handshake
        self.committed: list[Any] = []
        self.mid_pre_commit: list[Any] = []

    def create_writer(self, ctx: ConnectorContext) -> SinkWriter:
        return _Writer(self)


def test_final_window_firings_wait_for_a_checkpoint_in_progress(tmp_path: Path) -> None:
    handshake = _Handshake()
    sink = _Sink(handshake)
    flow = Flow("race", batch_size=50)
    (
        flow.source(_Source(handshake), id="events")
        .assign_timestamps("ts")
        .key_by("k")
        .window(Windows.tumbling(1_000))
        .count(id="counts")
        .sink(sink, id="out")
    )
    job = flow.to_job(job_id="race")
    job.config = replace(
        job.config,
        checkpoint=CheckpointConfig(str(tmp_path / "ckpt"), interval_ms=10, timeout_ms=60_000),
    )

    result = run_job(job)

    assert result.status is JobStatus.COMPLETED, result.error
    assert sink.mid_pre_commit == []
    # Every event counted once: 3 windows of 100 events, each split over 3 keys.
    assert sum(r["value"] for r in sink.committed) == len(EVENTS)
    assert len(sink.committed) == 9


class _SlowOpening(_Staging):
    """Takes a while to open (a connection being made) and notes any checkpoint call
    that came before it was open."""

    def __init__(self, sink: _SlowSink) -> None:
        super().__init__(sink.committed)
        self.sink = sink
        self.open_done = False

    async def open(self) -> None:
        for _ in range(30):  # checkpoints every 5 ms meanwhile
            await asyncio.sleep(0.005)
        self.open_done = True

    def _seen(self, call: str) -> None:
        if not self.open_done:
            self.sink.too_early.append(call)

    async def write(self, batch: list[Any]) -> None:
        self._seen("write")
        await super().write(batch)

    async def pre_commit(self, checkpoint_id: int) -> Any:
        self._seen(f"pre_commit {checkpoint_id}")
        return await super().pre_commit(checkpoint_id)

    async def commit(self, checkpoint_id: int) -> None:
        self._seen(f"commit {checkpoint_id}")
        await super().commit(checkpoint_id)


class _SlowSink(Sink):
    connector_type = "slow-sink"
    supports_transaction = True

    def __init__(self) -> None:
        self.committed: list[Any] = []
        self.too_early: list[str] = []

    def create_writer(self, ctx: ConnectorContext) -> SinkWriter:
        return _SlowOpening(self)


def test_no_checkpoint_reaches_a_sink_before_it_is_open(tmp_path: Path) -> None:
    """A sink chained to its source opens (connects) while the coordinator already
    triggers checkpoints: they wait for the subtask to be open, so no pre-commit or
    commit reaches a writer without its connection."""
    from reflow.testing import TestingSource

    sink = _SlowSink()
    flow = Flow("slow-open", batch_size=10)
    flow.source(TestingSource(range(2_000)), id="numbers").sink(sink, id="out")
    job = flow.to_job(job_id="slow-open")
    job.config = replace(
        job.config,
        checkpoint=CheckpointConfig(str(tmp_path / "ckpt"), interval_ms=5, timeout_ms=60_000),
    )

    result = run_job(job)

    assert result.status is JobStatus.COMPLETED, result.error
    assert sink.too_early == []
    assert sorted(sink.committed) == list(range(2_000))
