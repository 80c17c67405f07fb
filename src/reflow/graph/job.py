"""The Job: a JobGraph plus its metadata and lifecycle (seed §3.1).

The lifecycle is the state machine of seed §3.1.2, exactly; any other
transition raises InvalidTransitionError. A Job is definition and state only:
the executor in ``reflow.runtime`` runs it.
"""

from __future__ import annotations

import enum
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypedDict

from reflow.errors import ConfigError, GraphValidationError, InvalidTransitionError
from reflow.graph.durations import millis
from reflow.graph.job_graph import JobGraph
from reflow.graph.restart import NoRestart, RestartStrategy
from reflow.graph.stream_graph import NodeKind, SpelledEnum, StreamGraph, registered_builder

if TYPE_CHECKING:
    from reflow.api.builders import JobBuilder

__all__ = [
    "CheckpointConfig",
    "ErrorMode",
    "ErrorPolicy",
    "Job",
    "JobConfig",
    "JobStatus",
    "JobType",
    "check_job_id",
    "check_job_name",
]


class JobType(enum.Enum):
    """STREAMING jobs run until stopped; BATCH jobs end when their bounded input does."""

    STREAMING = "streaming"
    BATCH = "batch"


class JobStatus(enum.Enum):
    """The lifecycle states of seed §3.1.2."""

    CREATED = "CREATED"
    SCHEDULED = "SCHEDULED"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


# (from, to) -> the seed's name of the transition.
_TRANSITIONS: dict[tuple[JobStatus, JobStatus], str] = {
    (JobStatus.CREATED, JobStatus.SCHEDULED): "schedule",
    (JobStatus.SCHEDULED, JobStatus.RUNNING): "start",
    (JobStatus.RUNNING, JobStatus.PAUSED): "pause",
    (JobStatus.PAUSED, JobStatus.RUNNING): "resume",
    (JobStatus.RUNNING, JobStatus.COMPLETED): "complete",
    (JobStatus.RUNNING, JobStatus.FAILED): "fail",
    (JobStatus.FAILED, JobStatus.RUNNING): "retry",
    (JobStatus.RUNNING, JobStatus.CANCELLED): "cancel",
}


class ErrorMode(SpelledEnum):
    """What happens to a record that a user function or a parser rejects."""

    FAIL = "fail"
    """The job fails with the record, the step_id and the error (default)."""
    SKIP = "skip"
    """The record is counted and logged, and processing goes on."""
    DEAD_LETTER = "dead-letter"
    """The record goes to the dead-letter sink with the step_id and error attached."""


@dataclass(frozen=True, slots=True)
class ErrorPolicy:
    """The job's error policy, with per-step overrides.

    ``dead_letter`` is the sink (a Sink or connector spec) that receives
    rejected records as dicts ``{"step_id", "error", "error_type", "record", "time"}``.
    """

    mode: ErrorMode = ErrorMode.FAIL
    dead_letter: Any = None
    per_step: Mapping[str, ErrorMode] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Plain strings are accepted where a mode is expected: "skip", "DEAD_LETTER".
        object.__setattr__(self, "mode", ErrorMode(self.mode))
        object.__setattr__(
            self, "per_step", {step: ErrorMode(mode) for step, mode in self.per_step.items()}
        )
        modes = [self.mode, *self.per_step.values()]
        if ErrorMode.DEAD_LETTER in modes and self.dead_letter is None:
            raise GraphValidationError(
                "error policy 'dead-letter' needs a dead-letter sink: "
                "ErrorPolicy(mode=..., dead_letter=Connectors.file(path=...))"
            )

    def mode_for(self, step_id: str) -> ErrorMode:
        return self.per_step.get(step_id, self.mode)


@dataclass(frozen=True, slots=True)
class CheckpointConfig:
    """Periodic checkpoints of a job (seed §4.5, §6.1 ``checkpoint``)."""

    path: str
    """Folder of the checkpoint storage (the job's checkpoints go under path/job_id)."""
    interval_ms: int = 60_000
    timeout_ms: int = 10_000
    retained: int = 3
    """Complete checkpoints kept; older ones are deleted."""
    tolerable_failures: int = 3
    """Checkpoints in a row that may fail (write error, timeout) before the job fails
    (Flink's ``tolerable-failed-checkpoints``; Flink's default is 0)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "interval_ms", millis(self.interval_ms, "checkpoint interval"))
        object.__setattr__(self, "timeout_ms", millis(self.timeout_ms, "checkpoint timeout"))
        if (
            self.interval_ms <= 0
            or self.timeout_ms <= 0
            or self.retained < 1
            or self.tolerable_failures < 0
        ):
            raise GraphValidationError(
                "checkpoint interval and timeout must be > 0, retained >= 1 and "
                "tolerable_failures >= 0"
            )


@dataclass(frozen=True, slots=True)
class JobConfig:
    """Per-job settings (seed §3.1.3 ``JobConfig``)."""

    parallelism: int | None = None
    chaining: bool = True
    error_policy: ErrorPolicy = field(default_factory=ErrorPolicy)
    checkpoint: CheckpointConfig | None = None
    restart: RestartStrategy = field(default_factory=NoRestart)
    batch_size: int | None = None
    """Records per micro-batch between subtasks; None takes the executor's default."""
    channel_capacity: int | None = None
    """Batches a channel holds before the producer waits; None takes the default."""
    io_threads: int | None = None
    """This job's own pool for blocking I/O (seed §10.4 ``threadPool.io.maxSize``);
    None shares the executor's."""
    io_threads_started: int | None = None
    """Threads of the job's I/O pool started with it (``threadPool.io.coreSize``)."""
    compute_threads: int | None = None
    """This job's own pool for ``blocking`` steps (``threadPool.compute.maxSize``);
    None shares the executor's."""
    source_buffer: int | None = None
    """Records the channels out of source vertices hold before the sources wait
    (seed §10.4 ``buffer.sourceBuffer``), rounded up to whole batches."""
    sink_buffer: int | None = None
    """Records the channels into sink vertices hold before upstream waits
    (``buffer.sinkBuffer``), rounded up to whole batches."""

    def __post_init__(self) -> None:
        for name in (
            "parallelism",
            "batch_size",
            "channel_capacity",
            "io_threads",
            "io_threads_started",
            "compute_threads",
            "source_buffer",
            "sink_buffer",
        ):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise GraphValidationError(f"{name} must be a whole number >= 1, not {value!r}")
        if self.io_threads_started is not None and self.io_threads_started > (
            self.io_threads or self.io_threads_started
        ):
            raise GraphValidationError(
                f"io_threads_started {self.io_threads_started} is more than "
                f"io_threads {self.io_threads}"
            )


class ResourceSettings(TypedDict, total=False):
    """Seed §10.4's per-job pools and buffers, as ``JobConfig`` fields (see there)."""

    io_threads: int | None
    io_threads_started: int | None
    compute_threads: int | None
    source_buffer: int | None
    sink_buffer: int | None


def _now() -> datetime:
    return datetime.now(UTC)


# A job id names folders (checkpoints, state) and URLs: letters, digits, '.', '_', '-',
# starting with a letter or digit, so "../x" or "a/b" can never leave its folder.
JOB_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# Names are shown in logs, the UI and metrics labels; beyond this they are noise.
MAX_JOB_NAME_CHARS = 200


def check_job_id(job_id: str) -> str:
    """``job_id`` if it is a safe id, else ConfigError saying what is allowed."""
    if not isinstance(job_id, str) or not JOB_ID_PATTERN.fullmatch(job_id):
        shown = repr(job_id)[:80]
        raise ConfigError(
            f"job id {shown} is not allowed: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (ids name checkpoint folders and URLs)"
        )
    return job_id


def check_job_name(name: str) -> str:
    """``name`` if it is at most MAX_JOB_NAME_CHARS printable characters."""
    if len(name) > MAX_JOB_NAME_CHARS or not name.isprintable():
        raise ConfigError(
            f"job name {name[:40]!r}... is not allowed: at most {MAX_JOB_NAME_CHARS} printable "
            "characters, no newlines or control characters"
        )
    return name


def written_target(payload: Any) -> str | None:
    """What a sink payload writes that no other sink of the job may write too (a
    file's path); None when it can be shared. Sinks and connector specs answer
    (``written_target()``); other payloads share what they write."""
    written = getattr(payload, "written_target", None)
    target = written() if callable(written) else None
    return target if isinstance(target, str) else None


def _check_dead_letter_target(graph: StreamGraph, dead_letter: Any) -> None:
    """The dead-letter sink may not write a file a sink of the job writes: one would
    write over the other."""
    target = written_target(dead_letter) if dead_letter is not None else None
    if target is None:
        return
    for node in graph.nodes:
        if node.kind is NodeKind.SINK and written_target(node.payload) == target:
            raise GraphValidationError(
                f"the dead-letter sink and sink {node.step_id!r} both write {target}: one "
                "would write over the other; give the dead letters a path of their own",
                step_id=node.step_id,
            )


class Job:
    """A runnable job: id, name, type, status, config, JobGraph and timestamps."""

    def __init__(
        self,
        job_graph: JobGraph,
        *,
        job_id: str | None = None,
        name: str | None = None,
        job_type: JobType | None = None,
        config: JobConfig | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.job_id = check_job_id(job_id) if job_id else f"job-{uuid.uuid4().hex[:12]}"
        # A generated id differs on every build: nothing can resume a job by it.
        self.id_generated = not job_id
        self.job_name = check_job_name(name or job_graph.name)
        self.job_graph = job_graph
        self.config = config or JobConfig()
        _check_dead_letter_target(job_graph.stream_graph, self.config.error_policy.dead_letter)
        self.job_type = job_type or _infer_type(job_graph.stream_graph)
        self.status = JobStatus.CREATED
        self.create_time: datetime = _now()
        self.start_time: datetime | None = None
        self.end_time: datetime | None = None
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.history: list[tuple[JobStatus, datetime]] = [(JobStatus.CREATED, self.create_time)]
        self.error: str | None = None

    def copy(self) -> Job:
        """A new Job of the same graph, id, name, type, config and metadata, in state
        CREATED (a job object runs once; its specs build fresh steps for every run)."""
        again = Job(
            self.job_graph,
            job_id=self.job_id,
            name=self.job_name,
            job_type=self.job_type,
            config=self.config,
            metadata=self.metadata,
        )
        again.id_generated = self.id_generated
        return again

    @staticmethod
    def builder() -> JobBuilder:
        """A linear job: ``.source(...).transform(...)...sink(...)`` (seed §9.1); the
        builder is part of the user API (``reflow.api.builders``)."""
        return registered_builder("Job.builder")()  # type: ignore[no-any-return]

    @property
    def stream_graph(self) -> StreamGraph:
        return self.job_graph.stream_graph

    def transition(self, target: JobStatus) -> None:
        """Move to ``target``; raises InvalidTransitionError if §3.1.2 forbids it."""
        if (self.status, target) not in _TRANSITIONS:
            allowed = sorted(t.value for (f, t) in _TRANSITIONS if f is self.status)
            raise InvalidTransitionError(
                f"job {self.job_id!r} cannot go from {self.status.value} to {target.value}; "
                f"from {self.status.value} it can go to: {', '.join(allowed) or 'nothing (final)'}"
            )
        now = _now()
        if target is JobStatus.RUNNING and self.start_time is None:
            self.start_time = now
        if target.is_terminal:
            self.end_time = now
        self.status = target
        self.history.append((target, now))

    def schedule(self) -> None:
        self.transition(JobStatus.SCHEDULED)

    def start(self) -> None:
        self.transition(JobStatus.RUNNING)

    def pause(self) -> None:
        self.transition(JobStatus.PAUSED)

    def resume(self) -> None:
        self.transition(JobStatus.RUNNING)

    def complete(self) -> None:
        self.transition(JobStatus.COMPLETED)

    def fail(self, error: str) -> None:
        self.transition(JobStatus.FAILED)
        self.error = error

    def retry(self) -> None:
        self.transition(JobStatus.RUNNING)
        self.error = None

    def cancel(self) -> None:
        self.transition(JobStatus.CANCELLED)

    def __repr__(self) -> str:
        return f"Job(id={self.job_id!r}, name={self.job_name!r}, status={self.status.value})"


def _infer_type(graph: StreamGraph) -> JobType:
    bounded = [node.traits.bounded for node in graph.sources]
    return JobType.BATCH if bounded and all(b is True for b in bounded) else JobType.STREAMING
