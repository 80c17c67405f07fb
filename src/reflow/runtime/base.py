"""What the rest of reflow sees of the runtime: the executor interface and a
read-only snapshot of each job's execution.

``server/``, ``scheduler/``, ``cli/`` and the UI start, stop, pause and
savepoint jobs through an ``Executor`` and read ``ExecutionSnapshot`` values:
frozen, taken at one moment, with UTC times. They never touch the runtime's
live objects (subtasks, channels, the coordinator), so the local executor and
the Ray driver, which hold very different live objects, look the same to them,
and a new figure is added in one place: the snapshot.

A snapshot is assembled from ``ExecutionPart`` values, one per process that
runs subtasks (the whole job in the local executor, one per actor on Ray);
``ExecutionSnapshot.metrics`` is the single merge of them into per-step sums.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar

from reflow.checkpoint.storage import CheckpointData
from reflow.connectors.base import DEFAULT_BATCH_SIZE
from reflow.errors import ExecutionError, JobFailedError
from reflow.eventtime.clock import Clock, SystemClock
from reflow.eventtime.watermarks import MAX_WATERMARK, MIN_WATERMARK
from reflow.graph.job import Job, JobStatus
from reflow.runtime.channel import ChannelStatistics
from reflow.runtime.collector import DEFAULT_GC_THRESHOLD
from reflow.runtime.metrics import ExecutionMetrics, StepCounters
from reflow.state.backend import DEFAULT_MAX_ENTRIES

if TYPE_CHECKING:
    from reflow.checkpoint.coordinator import CheckpointStats

__all__ = [
    "DEFAULT_CHANNEL_CAPACITY",
    "RETAINED_EXECUTIONS",
    "CheckpointSummary",
    "ExecutionPart",
    "ExecutionSnapshot",
    "ExecutionTable",
    "Executor",
    "ExecutorSettings",
    "JobResult",
    "SubtaskState",
    "create_executor",
]

# Batches a channel holds before its producers wait: with ~500-record batches
# this keeps a few thousand records in flight per edge, enough to ride out
# jitter, little enough to bound memory.
DEFAULT_CHANNEL_CAPACITY = 8
# Ended executions kept for metrics and the API after they finish.
RETAINED_EXECUTIONS = 50


@dataclass(frozen=True, slots=True)
class ExecutorSettings:
    """Executor settings; the system config's ``executor`` and ``state`` sections map onto these."""

    parallelism: int = 1
    batch_size: int = DEFAULT_BATCH_SIZE
    channel_capacity: int = DEFAULT_CHANNEL_CAPACITY
    io_threads: int = 16
    compute_threads: int = 4
    clock: Clock = field(default_factory=SystemClock)
    state_backend: str = "memory"
    """memory or rocksdb (seed §6.1 ``state.backend``)."""
    state_path: str | None = None
    """Folder of RocksDB state; None uses a temporary folder per job."""
    state_max_entries: int = DEFAULT_MAX_ENTRIES
    """Entries the memory backend may hold before it fails with a hint to use RocksDB."""
    state_block_cache_bytes: int | None = None
    """RocksDB's block cache (seed §6.1 ``state.rocksdb.blockCacheSize``)."""
    io_threads_started: int = 0
    """I/O threads started with the pool rather than on first use (``threadPool.coreSize``)."""
    gc_threshold: int | None = DEFAULT_GC_THRESHOLD
    """The cyclic collector's first threshold while jobs run (``reflow.runtime.collector``);
    None leaves Python's."""


@dataclass(slots=True)
class JobResult:
    """The outcome of one execution (seed §3.5.3 ``JobResult``)."""

    job_id: str
    job_name: str
    status: JobStatus
    metrics: ExecutionMetrics
    start_time: datetime | None
    end_time: datetime | None
    error: str | None = None
    step_id: str | None = None
    exception: BaseException | None = field(default=None, repr=False)
    checkpoints: CheckpointStats | None = None
    restarts: int = 0
    earlier_attempts: list[tuple[int, int, float, str | None]] = field(default_factory=list)
    """(records read, records written, seconds, error) of each attempt before this one."""

    @property
    def duration_seconds(self) -> float:
        return self.metrics.elapsed_seconds

    def records_in(self, step_id: str) -> int:
        return self.metrics.step(step_id).records_in

    def records_out(self, step_id: str) -> int:
        return self.metrics.step(step_id).records_out

    @property
    def records_read(self) -> int:
        """Records the job's sources read."""
        return sum(s.records_out for s in self.metrics.steps if s.kind == "source")

    @property
    def records_written(self) -> int:
        """Records the job's sinks took."""
        return sum(s.records_in for s in self.metrics.steps if s.kind == "sink")

    def raise_for_status(self) -> JobResult:
        """Raise JobFailedError (naming the step and the cause) if the job FAILED;
        the result itself otherwise."""
        if self.status is JobStatus.FAILED:
            step = f" at step {self.step_id!r}" if self.step_id else ""
            raise JobFailedError(
                f"job {self.job_name!r} ({self.job_id}) failed{step}: {self.error}",
                result=self,
                step_id=self.step_id,
            ) from self.exception
        return self

    def summary(self) -> str:
        """The per-step table ``reflow run`` prints when a job ends."""
        m = self.metrics
        restarts = ""
        if self.restarts:
            restarts = f" after {self.restarts} restart{'s' if self.restarts > 1 else ''}"
        total_seconds = m.elapsed_seconds + sum(a[2] for a in self.earlier_attempts)
        lines = [
            f"Job {self.job_name!r} ({self.job_id}) {self.status.value} "
            f"in {total_seconds:.2f}s{restarts}",
            f"  {'step':<24} {'kind':<9} {'subtasks':>8} {'records in':>12} "
            f"{'records out':>12} {'rejected':>9}",
        ]
        for s in m.steps:
            rec_in = "-" if s.kind == "source" else f"{s.records_in:,}"
            rec_out = "-" if s.kind == "sink" else f"{s.records_out:,}"
            lines.append(
                f"  {s.step_id:<24} {s.kind:<9} {s.subtasks:>8} {rec_in:>12} {rec_out:>12} "
                f"{s.rejected:>9,}"
            )
        read, written = self.records_read, self.records_written
        rate = read / m.elapsed_seconds if m.elapsed_seconds > 0 else 0.0
        lines.append(f"  read {read:,} records, wrote {written:,} ({rate:,.0f} records/s)")
        rejected = sum(s.rejected for s in m.steps)
        if rejected:
            dead = sum(s.dead_lettered for s in m.steps)
            lines.append(f"  rejected {rejected:,} records ({dead:,} to the dead-letter sink)")
        if m.dropped_records:
            lines.append(f"  dropped by overflow strategies: {m.dropped_records:,}")
        if self.earlier_attempts:
            # The table is the last attempt's; a restart rewinds to a checkpoint, so
            # earlier attempts' records are partly read again.
            all_read = read + sum(a[0] for a in self.earlier_attempts)
            all_written = written + sum(a[1] for a in self.earlier_attempts)
            lines.append(
                f"  the table shows attempt {len(self.earlier_attempts) + 1} "
                f"({m.elapsed_seconds:.2f}s); all {len(self.earlier_attempts) + 1} attempts "
                f"read {all_read:,} records and wrote {all_written:,} (restarts re-read what "
                "came after their checkpoint)"
            )
            for number, (a_read, a_written, seconds, error) in enumerate(self.earlier_attempts, 1):
                lines.append(
                    f"  attempt {number}: read {a_read:,}, wrote {a_written:,} in "
                    f"{seconds:.2f}s, failed: {error}"
                )
        if self.error:
            lines.append(f"  error: {self.error}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        error = f", error={self.error[:80]!r}" if self.error else ""
        return (
            f"JobResult(job={self.job_name!r}, status={self.status.value}, "
            f"read={self.records_read}, written={self.records_written}, "
            f"seconds={self.metrics.elapsed_seconds:.3f}{error})"
        )


@dataclass(frozen=True, slots=True)
class SubtaskState:
    """One subtask at the moment of a snapshot."""

    name: str
    """``<vertex name>#<index>``."""
    step_id: str
    """The last step of the subtask's chain (its figures are shown under this step)."""
    index: int
    blocked_seconds: float
    """Time spent waiting to hand batches downstream (backpressure), the wait in
    progress included."""
    watermark: int | None
    """The subtask's event-time watermark; None before the first or after the last."""
    finished: bool


@dataclass(frozen=True, slots=True)
class CheckpointSummary:
    """A job's checkpoint counters at the moment of a snapshot."""

    completed: int = 0
    failed: int = 0
    last_id: int | None = None
    last_duration_s: float = 0.0
    last_size_bytes: int = 0
    last_path: str | None = None
    last_alignment_s: float = 0.0
    consecutive_failures: int = 0
    last_failure: str | None = None

    @staticmethod
    def of(stats: CheckpointStats) -> CheckpointSummary:
        """The live counters' values now (every field of this class, by name)."""
        return CheckpointSummary(
            **{f.name: getattr(stats, f.name) for f in fields(CheckpointSummary)}
        )


@dataclass(frozen=True, slots=True)
class ExecutionPart:
    """What one process running subtasks of a job reports: the whole job on the
    local executor, one actor's subtask on Ray."""

    steps: tuple[StepCounters, ...] = ()
    subtasks: tuple[SubtaskState, ...] = ()
    channels: tuple[ChannelStatistics, ...] = ()


@dataclass(frozen=True, slots=True)
class ExecutionSnapshot:
    """A job's execution at one moment, as the server, scheduler, CLI and UI read it."""

    job_id: str
    job_name: str
    status: JobStatus
    running: bool
    started_at: datetime | None
    """UTC."""
    ended_at: datetime | None
    """UTC; None while running."""
    elapsed_seconds: float
    steps: tuple[StepCounters, ...] = ()
    subtasks: tuple[SubtaskState, ...] = ()
    channels: tuple[ChannelStatistics, ...] = ()
    checkpoints: CheckpointSummary | None = None
    """None when the job runs without checkpoints."""
    blocked: str | None = None
    """Set while a step holds the job's event loop (what and for how long)."""

    @staticmethod
    def assemble(
        job: Job,
        parts: Iterable[ExecutionPart],
        *,
        running: bool,
        elapsed_seconds: float,
        checkpoints: CheckpointStats | None = None,
        blocked: str | None = None,
    ) -> ExecutionSnapshot:
        steps: list[StepCounters] = []
        subtasks: list[SubtaskState] = []
        channels: list[ChannelStatistics] = []
        for part in parts:
            steps.extend(part.steps)
            subtasks.extend(part.subtasks)
            channels.extend(part.channels)
        return ExecutionSnapshot(
            job.job_id,
            job.job_name,
            job.status,
            running,
            job.start_time,
            None if running else job.end_time,
            elapsed_seconds,
            tuple(steps),
            tuple(subtasks),
            tuple(channels),
            None if checkpoints is None else CheckpointSummary.of(checkpoints),
            blocked,
        )

    @property
    def metrics(self) -> ExecutionMetrics:
        """Per-step sums over the subtasks (the job's ``ExecutionMetrics``)."""
        return ExecutionMetrics.summarize(
            self.steps,
            dropped=sum(c.dropped_records for c in self.channels),
            blocked=sum(c.blocked_seconds for c in self.channels),
            elapsed=self.elapsed_seconds,
            channels={c.name: (c.size, c.capacity) for c in self.channels},
        )

    def blocked_seconds_by_step(self) -> dict[str, float]:
        """Backpressure time per step, over its subtasks."""
        out: dict[str, float] = {}
        for subtask in self.subtasks:
            out[subtask.step_id] = out.get(subtask.step_id, 0.0) + subtask.blocked_seconds
        return out


def watermark_or_none(watermark: int) -> int | None:
    """A subtask's watermark as a snapshot shows it: None before the first
    watermark and after the last."""
    return watermark if MIN_WATERMARK < watermark < MAX_WATERMARK else None


class Tracked(Protocol):
    """An execution as an executor keeps it."""

    job: Job
    finished: float | None
    """perf_counter at the end; None while running."""

    def snapshot(self) -> ExecutionSnapshot: ...

    async def probe_connectors(self, timeout_s: float) -> list[tuple[str, Any]]: ...


E = TypeVar("E", bound=Tracked)


class ExecutionTable(Generic[E]):
    """The part of an executor that keeps its executions -- the running ones and
    the last ``RETAINED_EXECUTIONS`` ended ones -- and answers for them (the read
    side of the ``Executor`` protocol). Jobs may run on loops in other threads:
    the table is read through copies."""

    def __init__(self) -> None:
        self._executions: dict[str, E] = {}
        self.totals = {"completed": 0, "failed": 0, "cancelled": 0}
        """Jobs that ended on this executor, by outcome (job.completed, job.failed)."""
        self.durations: list[float] = []
        """Seconds each ended job ran (job.duration)."""

    def _track(self, execution: E) -> None:
        self._executions[execution.job.job_id] = execution

    def _ended(self, execution: E, seconds: float) -> None:
        """Count the outcome of an execution that just ended and forget the oldest."""
        outcome = execution.job.status.value.lower()
        self.totals[outcome] = self.totals.get(outcome, 0) + 1
        self.durations.append(seconds)
        ended = [k for k, e in list(self._executions.items()) if e.finished is not None]
        for key in ended[:-RETAINED_EXECUTIONS]:
            self._executions.pop(key, None)

    def _execution(self, job_id: str) -> E:
        execution = self._executions.get(job_id)
        if execution is None:
            raise ExecutionError(f"no job {job_id!r} ran on this executor")
        return execution

    def snapshots(self, *, running_only: bool = False) -> list[ExecutionSnapshot]:
        return [
            e.snapshot()
            for e in list(self._executions.values())
            if not running_only or e.finished is None
        ]

    def snapshot(self, job_id: str) -> ExecutionSnapshot:
        return self._execution(job_id).snapshot()

    def status(self, job_id: str) -> JobStatus:
        return self._execution(job_id).job.status

    def is_running(self, job_id: str) -> bool:
        execution = self._executions.get(job_id)
        return execution is not None and execution.finished is None

    async def probe_connectors(self, job_id: str, timeout_s: float) -> list[tuple[str, Any]]:
        execution = self._executions.get(job_id)
        if execution is None or execution.finished is not None:
            return []
        return await execution.probe_connectors(timeout_s)


class Executor(Protocol):
    """What runs jobs: the local executor and the Ray executor."""

    settings: ExecutorSettings
    totals: dict[str, int]
    """Jobs that ended on this executor, by outcome (completed, failed, cancelled)."""
    durations: list[float]
    """Seconds each ended job ran."""
    runs_on_own_loops: bool
    """Whether a job may run on an event loop of its own, in its own thread (so a
    blocking user function stalls only its job)."""

    async def execute(self, job: Job, restore: CheckpointData | None = None) -> JobResult:
        """Run ``job`` to its end (restoring ``restore``); never raises for job errors."""
        ...

    async def stop(self, job_id: str) -> None: ...

    def stop_nowait(self, job_id: str) -> None:
        """``stop`` for synchronous callers, from any thread."""
        ...

    def pause(self, job_id: str) -> None: ...

    def resume(self, job_id: str) -> None: ...

    async def savepoint(self, job_id: str, *, stop: bool = False) -> CheckpointData | None:
        """A savepoint of a running job with checkpointing (then stop it, if asked)."""
        ...

    def status(self, job_id: str) -> JobStatus: ...

    def snapshot(self, job_id: str) -> ExecutionSnapshot:
        """The job's execution now (running, or one of the recently ended)."""
        ...

    def snapshots(self, *, running_only: bool = False) -> list[ExecutionSnapshot]:
        """Every running execution and the recently ended ones."""
        ...

    def is_running(self, job_id: str) -> bool: ...

    async def probe_connectors(self, job_id: str, timeout_s: float) -> list[tuple[str, Any]]:
        """Each source's and sink's health: (name, (connected, detail)), (name, None)
        when it cannot tell, (name, reason) when it did not answer in time."""
        ...

    def pool_stats(self) -> dict[str, tuple[int, int]]:
        """Thread pool -> (active threads, queued tasks)."""
        ...

    def close(self) -> None: ...


def create_executor(
    settings: ExecutorSettings | None = None,
    *,
    kind: Literal["local", "ray"] = "local",
    address: str | None = None,
) -> Executor:
    """The local executor, or the Ray executor (``address``: a running cluster's
    ``HOST:PORT``; without it an initialised or new local Ray)."""
    if kind == "ray":
        from reflow.runtime.ray import RayExecutor

        return RayExecutor(settings, address=address)
    from reflow.runtime.local import LocalExecutor

    return LocalExecutor(settings)
