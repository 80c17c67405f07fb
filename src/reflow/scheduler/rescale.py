"""Rescaling a running run: a savepoint, a stop, and a restart at the new
parallelism from that savepoint, under the same run id (so checkpoints and
exactly-once sinks carry on).

``JobManager.rescale`` asks for it; the run's own task (which awaited the
execution) sees the pending rescale when the execution stops and starts the
rescaled job from the savepoint. The time from the request until the new
execution runs is the rescale's downtime.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from reflow.checkpoint.storage import CheckpointData
from reflow.errors import ConfigError, ExecutionError, ReflowError
from reflow.graph.job import Job, JobStatus
from reflow.graph.rescale import current_parallelism
from reflow.runtime.base import Executor

__all__ = ["PendingRescale", "RescaleResult"]

# How long a rescale waits for the restarted execution to run.
RESTART_TIMEOUT_SECONDS = 120.0
# How long it then watches for the first records the restarted execution moves
# (on Ray, new actors take seconds to start, and report their counters each second).
PROCESSING_WAIT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class RescaleResult:
    run_id: str
    job_id: str
    before: dict[str, int]
    """Each step's parallelism before."""
    after: dict[str, int]
    savepoint: str
    stop_seconds: float
    """From the request until the savepoint was taken and the job stopped."""
    downtime_seconds: float
    """From the request until the restarted execution ran."""
    processing_seconds: float | None = None
    """From the request until the restarted execution moved its first records (None:
    no input came within PROCESSING_WAIT_SECONDS of the restart, an idle source)."""

    def describe(self) -> str:
        changed = {s: (self.before[s], p) for s, p in self.after.items() if self.before.get(s) != p}
        steps = ", ".join(f"{s} {a}->{b}" for s, (a, b) in changed.items()) or "no step changed"
        return (
            f"run {self.run_id} rescaled ({steps}): stopped in {self.stop_seconds:.2f} s, "
            f"running again after {self.downtime_seconds:.2f} s"
            + (
                ""
                if self.processing_seconds is None
                else f", processing after {self.processing_seconds:.2f} s"
            )
        )


@dataclass(slots=True)
class PendingRescale:
    """A rescale between the request and the restart."""

    job: Job
    """The job at its new parallelism."""
    requested: float = field(default_factory=time.monotonic)
    savepoint: asyncio.Future[CheckpointData | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    restarted: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the run's task starts the rescaled job."""


def check_rescalable(job: Job) -> None:
    if job.config.checkpoint is None:
        raise ConfigError(
            f"job {job.job_name!r} runs without checkpointing: a rescale restarts it from a "
            "savepoint; configure checkpoint: in the job file (path, interval)"
        )


async def take_and_stop(executor: Executor, run_id: str, pending: PendingRescale) -> CheckpointData:
    """The savepoint the rescaled job restarts from (the run stops after it)."""
    try:
        data = await executor.savepoint(run_id, stop=True)
    except BaseException:
        if not pending.savepoint.done():
            pending.savepoint.set_result(None)
        raise
    if not pending.savepoint.done():
        pending.savepoint.set_result(data)
    if data is None:
        raise ExecutionError(
            f"run {run_id}: the savepoint did not complete (a checkpoint failed or the run "
            "ended); the run goes on at its parallelism"
        )
    return data


async def wait_running(executor: Executor, run_id: str, pending: PendingRescale) -> float:
    """Seconds from the request until the restarted execution of ``run_id`` runs."""
    await asyncio.wait_for(pending.restarted.wait(), RESTART_TIMEOUT_SECONDS)
    since = pending.requested
    deadline = time.monotonic() + RESTART_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if executor.is_running(run_id) and executor.status(run_id) is JobStatus.RUNNING:
            return time.monotonic() - since
        await asyncio.sleep(0.005)
    raise ExecutionError(f"run {run_id} did not run again within {RESTART_TIMEOUT_SECONDS:g} s")


async def wait_processing(executor: Executor, run_id: str, pending: PendingRescale) -> float | None:
    """Seconds from the request until the restarted execution of ``run_id`` moved
    records (its steps' counters grew); None if none did within the wait. On Ray
    the counters arrive each second (``REPORT_SECONDS``), so it may be later than
    the records were."""

    def moved() -> int:
        try:
            steps = executor.snapshot(run_id).metrics.steps
        except (ReflowError, KeyError):
            return 0  # no counters yet
        return sum(step.records_in + step.records_out for step in steps)

    at_start = moved()
    deadline = time.monotonic() + PROCESSING_WAIT_SECONDS
    while time.monotonic() < deadline:
        if moved() > at_start:
            return time.monotonic() - pending.requested
        await asyncio.sleep(0.002)
    return None


def result_of(
    run_id: str,
    job_id: str,
    before: Job,
    after: Job,
    data: CheckpointData,
    stop: float,
    down: float,
    processing: float | None = None,
) -> RescaleResult:
    return RescaleResult(
        run_id,
        job_id,
        current_parallelism(before),
        current_parallelism(after),
        data.path,
        stop,
        down,
        processing,
    )
