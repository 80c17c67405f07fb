"""Failures at the edges of a checkpoint.

A checkpoint triggered while a restarted subtask is still opening (its sink
connecting and committing what the restore gave it) stores the source's restored
position, not "nothing read yet": a later restart from that checkpoint goes on
where the input was, rather than reading it again from the start (which an
exactly-once sink would commit a second time).

A checkpoint that is stored but whose commit fails is complete (the restart
restores it): the log says so before the restart names it, and the job's error
says which checkpoint failed to commit where; also when the commit comes after the
input ended. A sink that fails while the checkpoint is taken (its pre-commit could
not flush) fails the job at once, rather than the checkpoint timing out while the
job goes on without those records."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reflow import Job, JobStatus, Operators
from reflow.connectors.base import (
    BufferedSinkWriter,
    ConnectorContext,
    Sink,
    SinkWriter,
    SourceReader,
)
from reflow.graph.restart import FixedDelayRestart
from reflow.testing import TestingSink, TestingSource, run_job

EVENTS = [{"n": i} for i in range(300)]


class _Wrapped(SourceReader):
    """TestingSource's reader, ``inner``, with something added by a subclass."""

    def __init__(self, inner: SourceReader) -> None:
        self.inner = inner

    def snapshot(self) -> Any:
        return self.inner.snapshot()

    def restore(self, position: Any) -> None:
        self.inner.restore(position)

    async def open(self) -> None:
        await self.inner.open()

    async def read_batch(self) -> list[Any] | None:
        return await self.inner.read_batch()


class _Wrapping(TestingSource):
    """A TestingSource of EVENTS whose readers ``wrap`` makes from its own."""

    def __init__(self, wrap: Callable[[SourceReader], SourceReader]) -> None:
        super().__init__(EVENTS)
        self.wrap = wrap

    def create_reader(self, ctx: ConnectorContext) -> SourceReader:
        return self.wrap(super().create_reader(ctx))


class _Attempts:
    """What the test sees of each attempt: how often the reader opened, and the
    checkpoints committed since."""

    def __init__(self) -> None:
        self.opens = 0
        self.committed_since_open: list[int] = []
        self.a_commit = asyncio.Event()


class _Reader(_Wrapped):
    """TestingSource's reader; in the second attempt its first batch waits until a
    checkpoint of that attempt has committed (taken before any record was read)."""

    def __init__(self, inner: SourceReader, attempts: _Attempts) -> None:
        super().__init__(inner)
        self.attempts = attempts
        self.first = True

    async def open(self) -> None:
        self.attempts.opens += 1
        self.attempts.committed_since_open = []
        self.attempts.a_commit = asyncio.Event()
        await self.inner.open()

    async def read_batch(self) -> list[Any] | None:
        if self.first and self.attempts.opens == 2:
            self.first = False
            await self.attempts.a_commit.wait()
        return await self.inner.read_batch()


class _SlowSink(TestingSink):
    """Exactly-once; each writer takes a while to open (a connection being made,
    checkpoints triggered every 5 ms meanwhile) and reports its commits."""

    def __init__(self, attempts: _Attempts) -> None:
        super().__init__(exactly_once=True)
        self.attempts = attempts

    def create_writer(self, ctx: ConnectorContext) -> SinkWriter:
        writer = super().create_writer(ctx)
        attempts = self.attempts
        commit = writer.commit

        async def slow_open() -> None:
            for _ in range(30):
                await asyncio.sleep(0.005)

        async def reporting_commit(checkpoint_id: int) -> None:
            await commit(checkpoint_id)
            attempts.committed_since_open.append(checkpoint_id)
            attempts.a_commit.set()

        setattr(writer, "open", slow_open)  # noqa: B010 -- a test probe
        setattr(writer, "commit", reporting_commit)  # noqa: B010 -- a test probe
        return writer


def test_a_checkpoint_during_a_restarted_open_keeps_the_restored_source_position(
    tmp_path: Path,
) -> None:
    """Attempt 1 fails at event 200; attempt 2 fails on its first record, after a
    checkpoint it took while opening has committed; attempt 3 restarts from that
    checkpoint. Every event is committed once."""
    attempts = _Attempts()

    async def fail_twice(record: dict[str, int]) -> dict[str, int]:
        if record["n"] % 25 == 0:
            await asyncio.sleep(0.002)  # let checkpoints complete while records flow
        if (attempts.opens == 1 and record["n"] == 200) or attempts.opens == 2:
            raise RuntimeError("forced failure")
        return record

    sink = _SlowSink(attempts)
    job = (
        Job.builder()
        .batch_size(25)
        .checkpointing(str(tmp_path / "ckpt"), interval_ms=5)
        .restart_strategy(FixedDelayRestart(attempts=2, delay_s=0.01))
        .source(_Wrapping(lambda inner: _Reader(inner, attempts)))
        .transform(Operators.map(fail_twice, concurrency=1))
        .sink(sink)
        .build()
    )

    result = run_job(job)

    assert result.status is JobStatus.COMPLETED, result.error
    assert result.restarts == 2 and attempts.opens == 3
    counts = Counter(r["n"] for r in sink.records)
    assert sorted(counts) == list(range(len(EVENTS)))  # none lost
    assert set(counts.values()) == {1}  # none twice


class _FailingCommitSink(TestingSink):
    """Exactly-once; the first commit fails (a server gone while it commits)."""

    def __init__(self) -> None:
        super().__init__(exactly_once=True)
        self.failed = asyncio.Event()

    def create_writer(self, ctx: ConnectorContext) -> SinkWriter:
        writer = super().create_writer(ctx)
        commit = writer.commit

        async def failing_commit(checkpoint_id: int) -> None:
            if not self.failed.is_set():
                self.failed.set()
                raise RuntimeError("connection lost while committing")
            await commit(checkpoint_id)

        setattr(writer, "commit", failing_commit)  # noqa: B010 -- a test probe
        return writer


class _HalfwayReader(_Wrapped):
    """TestingSource's reader that, in the first attempt, stops halfway until the
    sink's first commit has failed (so the failure comes mid-run)."""

    def __init__(self, inner: SourceReader, sink: _FailingCommitSink) -> None:
        super().__init__(inner)
        self.sink = sink

    async def read_batch(self) -> list[Any] | None:
        if self.inner.snapshot() >= len(EVENTS) // 2:
            await self.sink.failed.wait()
        return await self.inner.read_batch()


def test_a_checkpoint_whose_commit_fails_is_logged_complete_before_the_restart_uses_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The checkpoint is stored, then its commit fails the job: the log says it
    completed before the restart says it starts from it, the error says where the
    commit failed, and nothing is lost or written twice."""
    sink = _FailingCommitSink()
    job = (
        Job.builder()
        .batch_size(25)
        .checkpointing(str(tmp_path / "ckpt"), interval_ms=5)
        .restart_strategy(FixedDelayRestart(attempts=1, delay_s=0.01))
        .source(_Wrapping(lambda inner: _HalfwayReader(inner, sink)))
        .sink(sink)
        .build()
    )

    with caplog.at_level(logging.INFO, logger="reflow"):
        result = run_job(job)

    assert result.status is JobStatus.COMPLETED, result.error
    assert result.restarts == 1
    messages = [r.getMessage() for r in caplog.records]
    (restart,) = [m for m in messages if "restarts from checkpoint" in m]
    restored = int(restart.rsplit(" ", 1)[1])
    assert len([m for m in messages if f"checkpoint {restored} completed" in m]) == 1
    # The first attempt's error names the checkpoint, the sink's step and the way on.
    (first,) = result.earlier_attempts
    assert first[3] is not None
    assert f"checkpoint {restored} is stored, but committing it at step 'sink'" in first[3]
    assert "RuntimeError: connection lost while committing" in first[3]
    assert [r["n"] for r in sink.records] == [e["n"] for e in EVENTS]


class _EndReader(_Wrapped):
    """TestingSource's reader that, at the end of its input (first attempt only),
    waits until one more checkpoint has taken its snapshot before it ends."""

    def __init__(self, inner: SourceReader, end: _End) -> None:
        super().__init__(inner)
        self.end = end
        self.snapshots = 0

    def on_checkpoint(self, checkpoint_id: int) -> None:
        self.snapshots += 1
        self.end.snapshot_taken.set()

    async def read_batch(self) -> list[Any] | None:
        batch = await self.inner.read_batch()
        if batch is None and not self.end.reached.is_set():
            self.end.snapshot_taken.clear()
            self.end.reached.set()
            await self.end.snapshot_taken.wait()
        return batch


class _End:
    def __init__(self) -> None:
        self.reached = threading.Event()
        """The first attempt's input ended (checkpoint storage then waits)."""
        self.finished = threading.Event()
        """The first attempt's subtask has finished (the stored write goes on)."""
        self.snapshot_taken = asyncio.Event()


class _FailingLateCommitSink(TestingSink):
    """Exactly-once; the commit of a checkpoint that completes after the subtask
    has finished fails once (the server went away at the very end)."""

    def __init__(self, end: _End) -> None:
        super().__init__(exactly_once=True)
        self.end = end
        self.failed = False

    def create_writer(self, ctx: ConnectorContext) -> SinkWriter:
        writer = super().create_writer(ctx)
        commit = writer.commit

        async def failing_commit(checkpoint_id: int) -> None:
            if self.end.finished.is_set() and not self.failed:
                self.failed = True
                raise RuntimeError("connection lost while committing")
            await commit(checkpoint_id)

        setattr(writer, "commit", failing_commit)  # noqa: B010 -- a test probe
        return writer


def test_a_commit_failing_after_the_input_ended_fails_the_job_and_the_restart_commits_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpoint in progress when the subtasks finish is stored after they have,
    and its commit fails: the job does not report COMPLETED over it (a sink may have
    let go of those records); it fails, and the restart commits that checkpoint from
    the stored state. Every event arrives once."""
    from reflow.checkpoint.storage import FileCheckpointStorage
    from reflow.runtime.task import Subtask

    end = _End()
    write, finish = FileCheckpointStorage.write, Subtask._finish

    def waiting_write(self: FileCheckpointStorage, data: Any) -> str:
        if end.reached.is_set() and not end.finished.is_set():
            assert end.finished.wait(30), "the subtask did not finish"
        return write(self, data)

    async def reporting_finish(self: Subtask) -> None:
        await finish(self)
        if end.reached.is_set():
            end.finished.set()

    monkeypatch.setattr(FileCheckpointStorage, "write", waiting_write)
    monkeypatch.setattr(Subtask, "_finish", reporting_finish)
    sink = _FailingLateCommitSink(end)
    job = (
        Job.builder()
        .batch_size(25)
        .checkpointing(str(tmp_path / "ckpt"), interval_ms=5)
        .restart_strategy(FixedDelayRestart(attempts=1, delay_s=0.01))
        .source(_Wrapping(lambda inner: _EndReader(inner, end)))
        .sink(sink)
        .build()
    )

    result = run_job(job)

    assert result.status is JobStatus.COMPLETED, result.error
    assert sink.failed and result.restarts == 1
    (first,) = result.earlier_attempts
    assert first[3] is not None and "RuntimeError: connection lost while committing" in first[3]
    assert [r["n"] for r in sink.records] == [e["n"] for e in EVENTS]


class _FlushingWriter(BufferedSinkWriter):
    """At-least-once, 1,000 records a write; the first flush of a partial buffer (a
    checkpoint's pre-commit) fails, as a server that went away would."""

    def __init__(self, sink: _FlushingSink) -> None:
        super().__init__(batch_size=1_000, flush_interval=None)
        self.sink = sink

    async def write_records(self, records: list[Any]) -> None:
        if len(records) < self.batch_size and not self.sink.failed:
            self.sink.failed = True
            raise RuntimeError("server gone while flushing at a checkpoint")
        self.sink.records.extend(records)


class _FlushingSink(Sink):
    connector_type = "flushing"

    def __init__(self) -> None:
        self.records: list[Any] = []
        self.failed = False

    def create_writer(self, ctx: ConnectorContext) -> SinkWriter:
        return _FlushingWriter(self)


def test_a_sink_failing_its_pre_commit_fails_the_job_and_loses_nothing(tmp_path: Path) -> None:
    """A source chained to an at-least-once sink: the sink's flush at a checkpoint
    fails with records taken out of its buffer. The job fails at once, naming the
    checkpoint and the sink's step (it did not: the checkpoint timed out and the
    job went on without those records), and the restart writes them again."""
    many = [{"n": i} for i in range(3_000)]

    async def slow(record: dict[str, int]) -> dict[str, int]:
        if record["n"] % 25 == 0:
            await asyncio.sleep(0.002)  # let checkpoints come while records flow
        return record

    sink = _FlushingSink()
    job = (
        Job.builder()
        .batch_size(25)
        .checkpointing(str(tmp_path / "ckpt"), interval_ms=5, timeout_ms=5_000)
        .restart_strategy(FixedDelayRestart(attempts=1, delay_s=0.01))
        .source(TestingSource(many))
        .transform(Operators.map(slow, concurrency=1))
        .sink(sink, id="out")
        .build()
    )

    result = run_job(job)

    assert result.status is JobStatus.COMPLETED, result.error
    assert sink.failed and result.restarts == 1
    (first,) = result.earlier_attempts
    assert first[3] is not None and "the snapshot at step 'out'" in first[3]
    assert "RuntimeError: server gone while flushing at a checkpoint" in first[3]
    assert {r["n"] for r in sink.records} == set(range(len(many)))  # at least once


class _TimedWriter(BufferedSinkWriter):
    """At-least-once, 1,000 records a write or every millisecond; the first write
    by the timer fails (the server went away while the stream was quiet)."""

    def __init__(self, sink: _TimedSink) -> None:
        super().__init__(batch_size=1_000, flush_interval=0.001)
        self.sink = sink
        self.in_pre_commit = False

    async def pre_commit(self, checkpoint_id: int) -> Any:
        self.in_pre_commit = True
        try:
            return await super().pre_commit(checkpoint_id)
        finally:
            self.in_pre_commit = False

    async def write_records(self, records: list[Any]) -> None:
        sink = self.sink
        if sink.quiet.is_set() and not self.in_pre_commit and not sink.timer_failed.is_set():
            sink.timer_failed.set()
            raise RuntimeError("server gone during a timed flush")
        sink.records.extend(records)


class _TimedSink(Sink):
    connector_type = "timed"

    def __init__(self) -> None:
        self.records: list[Any] = []
        self.quiet = asyncio.Event()
        self.timer_failed = asyncio.Event()

    def create_writer(self, ctx: ConnectorContext) -> SinkWriter:
        return _TimedWriter(self)


class _QuietReader(_Wrapped):
    """TestingSource's reader that goes quiet at event 100 (first attempt) until the
    sink's timed flush has failed and a checkpoint has taken its snapshot since."""

    def __init__(self, inner: SourceReader, sink: _TimedSink) -> None:
        super().__init__(inner)
        self.sink = sink
        self.snapshot_since = asyncio.Event()

    def on_checkpoint(self, checkpoint_id: int) -> None:
        if self.sink.timer_failed.is_set():
            self.snapshot_since.set()

    async def read_batch(self) -> list[Any] | None:
        if self.inner.snapshot() == 100 and not self.snapshot_since.is_set():
            self.sink.quiet.set()
            await self.sink.timer_failed.wait()
            await self.snapshot_since.wait()
        return await self.inner.read_batch()


def test_a_failed_timed_flush_fails_the_next_checkpoint_not_only_the_next_write(
    tmp_path: Path,
) -> None:
    """A sink's timer flush fails while the stream is quiet, with records taken out
    of its buffer; the next thing the sink sees is a checkpoint, not a write. That
    checkpoint must not complete (it did, over the lost records: the job failed at
    the next write and restarted from it, past them); the restart from the one
    before writes them."""
    sink = _TimedSink()
    job = (
        Job.builder()
        .batch_size(25)
        .checkpointing(str(tmp_path / "ckpt"), interval_ms=5)
        .restart_strategy(FixedDelayRestart(attempts=1, delay_s=0.01))
        .source(_Wrapping(lambda inner: _QuietReader(inner, sink)))
        .sink(sink, id="out")
        .build()
    )

    result = run_job(job)

    assert result.status is JobStatus.COMPLETED, result.error
    assert result.restarts == 1
    (first,) = result.earlier_attempts  # failed by the snapshot or the write after it
    assert first[3] is not None and "step 'out'" in first[3]
    assert "RuntimeError: server gone during a timed flush" in first[3]
    assert {r["n"] for r in sink.records} == {e["n"] for e in EVENTS}  # at least once


class _EndOfFirstAttempt(_Wrapped):
    """TestingSource's reader that, at the end of the first attempt's input, says so
    and waits until the test lets it end (a later attempt ends at once)."""

    opens = 0

    def __init__(self, inner: SourceReader, at_end: asyncio.Event, go: asyncio.Event) -> None:
        super().__init__(inner)
        self.at_end, self.go = at_end, go

    async def open(self) -> None:
        _EndOfFirstAttempt.opens += 1
        self.attempt = _EndOfFirstAttempt.opens
        await self.inner.open()

    async def read_batch(self) -> list[Any] | None:
        batch = await self.inner.read_batch()
        if batch is None and self.attempt == 1:
            self.at_end.set()
            await self.go.wait()
        return batch


def test_a_savepoint_whose_pre_commit_fails_fails_the_job_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A savepoint (``reflow savepoint``, a rescale) of a running job whose
    at-least-once sink fails to flush its buffer at the pre-commit: the caller gets
    the error naming the sink's step, and the job fails with it too and restarts
    (it went on without the records the sink let go of, and wrote none of them)."""
    from reflow.errors import ExecutionError
    from reflow.runtime import ExecutorSettings, LocalExecutor, execute_with_recovery

    monkeypatch.setattr(_EndOfFirstAttempt, "opens", 0)
    sink = _FlushingSink()

    async def main() -> tuple[Any, str]:
        at_end, go = asyncio.Event(), asyncio.Event()
        job = (
            Job.builder()
            .batch_size(25)
            .checkpointing(str(tmp_path / "ckpt"), interval_ms=3_600_000)
            .restart_strategy(FixedDelayRestart(attempts=1, delay_s=0.01))
            .source(_Wrapping(lambda inner: _EndOfFirstAttempt(inner, at_end, go)))
            .sink(sink, id="out")
            .build()
        )
        with LocalExecutor(ExecutorSettings()) as executor:
            run = asyncio.create_task(execute_with_recovery(executor, job))
            await at_end.wait()  # every event read, all of them in the sink's buffer
            with pytest.raises(ExecutionError) as caught:
                await executor.savepoint(job.job_id)
            go.set()
            return await run, str(caught.value)

    result, error = asyncio.run(main())

    assert "the snapshot at step 'out'" in error
    assert "RuntimeError: server gone while flushing at a checkpoint" in error
    assert sink.failed
    assert result.status is JobStatus.COMPLETED, result.error
    # (it was COMPLETED with no restart, the sink holding none of the 300 records)
    assert sorted(r["n"] for r in sink.records) == [e["n"] for e in EVENTS]
    assert result.restarts == 1
    (first,) = result.earlier_attempts
    assert first[3] == error
