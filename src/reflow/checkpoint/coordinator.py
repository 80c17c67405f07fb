"""The checkpoint coordinator (seed §4.5).

Every ``interval``, the coordinator injects barrier *n* at the sources; each
subtask snapshots when the barrier has arrived on all its inputs (aligned) and
acknowledges. When every subtask has, the checkpoint is written atomically and
the sinks commit what they pre-committed (two-phase commit). A checkpoint that
does not complete within ``timeout`` is aborted; the job goes on.

Checkpoints go on after some subtasks finished (Flink's FLIP-147): a finished
subtask acknowledges with its final state (a source's end position, what its
sinks still hold uncommitted), and its downstream stops waiting for its barriers
once it reads that the sender finished. A job whose readers end unevenly (a small
Kafka partition, a short file split) keeps taking checkpoints for the rest of its
run; only when every subtask has finished do they stop, the final commit then
happening at the end of input.

The coordinator sees subtasks only as ``CheckpointParticipant``: the local
executor's subtasks and the Ray driver's proxies of its actors both are.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from reflow.checkpoint.storage import CheckpointData, CheckpointError, CheckpointStorage
from reflow.errors import ExecutionError
from reflow.eventtime.clock import Clock
from reflow.graph.job import Job

__all__ = [
    "CheckpointAcks",
    "CheckpointCoordinator",
    "CheckpointParticipant",
    "CheckpointStats",
    "TooManyCheckpointFailuresError",
    "checkpoint_failure",
]

logger = logging.getLogger(__name__)


class TooManyCheckpointFailuresError(CheckpointError):
    """More checkpoints failed in a row than the job tolerates: the job fails."""


@dataclass(slots=True)
class CheckpointStats:
    """Counters of a job's checkpoints (for metrics and logs)."""

    completed: int = 0
    failed: int = 0
    last_id: int | None = None
    last_duration_s: float = 0.0
    last_size_bytes: int = 0
    last_path: str | None = None
    last_alignment_s: float = 0.0
    """The longest barrier alignment of the last checkpoint, over all subtasks."""
    durations_s: list[float] = field(default_factory=list)
    consecutive_failures: int = 0
    """Failed checkpoints since the last one that completed (health is DEGRADED while > 0)."""
    last_failure: str | None = None


class CheckpointParticipant(Protocol):
    """A subtask as the coordinator drives it."""

    @property
    def name(self) -> str: ...

    @property
    def is_source(self) -> bool:
        """Barriers are injected here (it reads a source)."""
        ...

    @property
    def finished(self) -> bool:
        """Its input ended (it may still be sending what it holds)."""
        ...

    @property
    def done(self) -> bool:
        """It sent everything: no barrier reaches it any more."""
        ...

    async def inject_barrier(self, checkpoint_id: int) -> None:
        """(Sources) snapshot and send barrier ``checkpoint_id`` downstream."""
        ...

    async def acknowledge_finished(self, checkpoint_id: int) -> None:
        """(Done) acknowledge ``checkpoint_id`` with the final state."""
        ...

    async def notify_complete(self, checkpoint_id: int) -> None:
        """Checkpoint ``checkpoint_id`` is stored: commit what was pre-committed."""
        ...


class CheckpointAcks(Protocol):
    """Where subtasks report their snapshots (the coordinator, or on a Ray actor the
    worker that forwards them to the driver's coordinator)."""

    def acknowledge(
        self,
        checkpoint_id: int,
        subtask: str,
        states: dict[tuple[str, int], dict[str, Any]],
        alignment_s: float = 0.0,
    ) -> None: ...

    def pending_for(self, subtask: str) -> list[int]:
        """The checkpoints in progress that ``subtask`` has not acknowledged: a
        subtask that just finished acknowledges them with its final state."""
        ...


@dataclass(slots=True)
class _Pending:
    checkpoint_id: int
    expected: set[str]
    savepoint: bool
    started: float
    done: asyncio.Future[None]
    states: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    acked: set[str] = field(default_factory=set)
    alignment_s: float = 0.0


class CheckpointCoordinator:
    def __init__(
        self,
        job: Job,
        storage: CheckpointStorage,
        clock: Clock,
        subtasks: list[CheckpointParticipant],
        parallelism: dict[str, int],
        interval_ms: int,
        timeout_ms: int,
        tolerable_failures: int = 3,
        after_finish: bool = True,
    ) -> None:
        self.job = job
        self.storage = storage
        self.clock = clock
        self.subtasks = subtasks
        self.sources = [s for s in subtasks if s.is_source]
        self.after_finish = after_finish
        """False: checkpoints stop at the first subtask that finished (Ray actors
        report only that they ended, not their final state)."""
        self.parallelism = parallelism
        self.interval_ms = interval_ms
        self.timeout_ms = timeout_ms
        self.tolerable_failures = tolerable_failures
        self.next_id = storage.next_id(job.job_id)
        self.pending: dict[int, _Pending] = {}
        self.stats = CheckpointStats()
        self._trigger_lock = asyncio.Lock()
        self.savepoint_requested = asyncio.Event()
        self._current: asyncio.Future[CheckpointData | None] | None = None
        self._broken: ExecutionError | None = None
        """A snapshot or commit that failed: the job fails with it (see ``run``)."""
        self._broke = asyncio.Event()

    def acknowledge(
        self,
        checkpoint_id: int,
        subtask: str,
        states: dict[tuple[str, int], dict[str, Any]],
        alignment_s: float = 0.0,
    ) -> None:
        pending = self.pending.get(checkpoint_id)
        if pending is None:
            return  # the checkpoint was aborted
        pending.alignment_s = max(pending.alignment_s, alignment_s)
        pending.states.update(states)
        pending.acked.add(subtask)
        if pending.acked >= pending.expected and not pending.done.done():
            pending.done.set_result(None)

    async def run(self) -> None:
        """Trigger checkpoints every interval until cancelled.

        Raises:
            TooManyCheckpointFailuresError: more than ``tolerable_failures``
                checkpoints in a row failed; the executor fails the job with it.
        """
        while True:
            await self._pause()
            if all(s.finished for s in self.subtasks) or (
                not self.after_finish and any(s.finished for s in self.subtasks)
            ):
                return  # the job is ending: the final commit happens at end of input
            # Shielded: cancelling the coordinator (the job ended) must not cut a
            # checkpoint's commits short; settle() waits for them.
            self._current = asyncio.ensure_future(self.trigger())
            await asyncio.shield(self._current)
            if self.stats.consecutive_failures > self.tolerable_failures:
                raise TooManyCheckpointFailuresError(
                    f"job {self.job.job_id}: {self.stats.consecutive_failures} checkpoints "
                    f"failed in a row (tolerated: {self.tolerable_failures}); last: "
                    f"{self.stats.last_failure}. Fix the checkpoint storage, or raise "
                    "checkpoint.tolerable_failures"
                )

    async def _pause(self) -> None:
        """Sleep one interval; raise at once when a checkpoint outside this loop (a
        savepoint, taken for its caller) failed at a snapshot or commit. Its caller
        gets the error, but the job must fail with it too: a sink may have let go
        of what it could not pre-commit or commit, and only a restart from the last
        complete checkpoint writes that again."""
        nap = asyncio.ensure_future(self.clock.sleep(self.interval_ms / 1000))
        broke = asyncio.ensure_future(self._broke.wait())
        try:
            await asyncio.wait({nap, broke}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            nap.cancel()
            broke.cancel()
        if self._broken is not None:
            raise self._broken

    def _break(self, error: ExecutionError) -> ExecutionError:
        self._broken = error
        self._broke.set()
        return error

    async def settle(self) -> BaseException | None:
        """Wait for the checkpoint in progress, if any, to complete and commit: at the
        end of a job its sinks' final commit must come after it, not during it.

        Returns the error its commit failed with (None if it did not): the job then
        fails rather than completes, and its restart commits that checkpoint again
        from the stored state (a sink may have let go of what it failed to commit)."""
        current = self._current
        if current is None:
            return None
        (outcome,) = await asyncio.gather(current, return_exceptions=True)
        if isinstance(outcome, Exception):
            return outcome
        return None

    def abandon(self) -> None:
        """The job failed or was cancelled: stop the checkpoint in progress (what it
        staged stays in the sinks' checkpoint state; a restore commits it)."""
        if self._current is not None:
            self._current.cancel()

    def pending_for(self, subtask: str) -> list[int]:
        return [i for i, p in sorted(self.pending.items()) if subtask not in p.acked]

    def _failed(self, checkpoint_id: int, reason: str) -> None:
        self.stats.failed += 1
        self.stats.consecutive_failures += 1
        self.stats.last_failure = reason
        logger.warning(
            "job %s: checkpoint %d failed (%d in a row, %d tolerated): %s",
            self.job.job_id,
            checkpoint_id,
            self.stats.consecutive_failures,
            self.tolerable_failures,
            reason,
            extra={"job_id": self.job.job_id, "event": "CHECKPOINT_FAILED"},
        )

    async def trigger(self, savepoint: bool = False) -> CheckpointData | None:
        """Take one checkpoint (or savepoint); None if it was aborted."""
        async with self._trigger_lock:
            checkpoint_id = self.next_id
            self.next_id += 1
            loop = asyncio.get_running_loop()
            pending = _Pending(
                checkpoint_id,
                {s.name for s in self.subtasks},
                savepoint,
                time.perf_counter(),
                loop.create_future(),
            )
            self.pending[checkpoint_id] = pending
            owners: dict[asyncio.Future[None], CheckpointParticipant] = {
                asyncio.ensure_future(source.inject_barrier(checkpoint_id)): source
                for source in self.sources
            }
            if self.after_finish:
                # No barrier reaches a finished subtask: it acknowledges when asked.
                owners.update(
                    (asyncio.ensure_future(subtask.acknowledge_finished(checkpoint_id)), subtask)
                    for subtask in self.subtasks
                    if not subtask.is_source and subtask.done
                )
            injections = list(owners)
            timer = asyncio.ensure_future(self.clock.sleep(self.timeout_ms / 1000))
            broken: asyncio.Future[None] | None = None
            try:
                # Until every subtask acknowledged, the timeout, or a snapshot that
                # failed (a sink whose pre-commit could not flush): that one fails the
                # job, rather than the checkpoint timing out while what the sink let
                # go of is lost and the job goes on.
                waiting: set[asyncio.Future[Any]] = {pending.done, timer, *injections}
                while True:
                    done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                    broken = next((i for i in injections if i in done and _raised(i)), None)
                    if broken is not None or pending.done in done or timer in done:
                        break
                    waiting -= done
            except asyncio.CancelledError:  # abandoned: the job failed or was cancelled
                for injection in injections:
                    injection.cancel()
                raise
            finally:
                timer.cancel()
                if broken is not None:
                    for injection in injections:
                        injection.cancel()
                await asyncio.gather(*injections, return_exceptions=True)
                del self.pending[checkpoint_id]
            if broken is not None:
                error = broken.exception()
                assert isinstance(error, Exception)
                failure = _failed_at(checkpoint_id, owners[broken], error, commit=False)
                raise self._break(failure) from error
            if pending.done not in done:
                missing = ", ".join(sorted(pending.expected - pending.acked)[:5])
                self._failed(
                    checkpoint_id, f"aborted after {self.timeout_ms} ms; no snapshot from {missing}"
                )
                return None
            data = CheckpointData(
                job_id=self.job.job_id,
                checkpoint_id=checkpoint_id,
                states=pending.states,
                parallelism=dict(self.parallelism),
                savepoint=savepoint,
            )
            try:
                path = await asyncio.to_thread(self.storage.write, data)
            except (CheckpointError, OSError) as exc:
                # Nothing is committed: the sinks keep their pre-committed data for
                # the next checkpoint that completes.
                self._failed(checkpoint_id, str(exc))
                return None
            # Complete once stored (a restart restores it): counted and logged before
            # the sinks commit, so a failure during the commits (which cancels this)
            # does not leave a restart "from checkpoint n" that no log line completed.
            elapsed = time.perf_counter() - pending.started
            stats = self.stats
            stats.completed += 1
            stats.consecutive_failures = 0
            stats.last_id = checkpoint_id
            stats.last_duration_s = elapsed
            stats.last_size_bytes = _size(path)
            stats.last_path = path
            stats.last_alignment_s = pending.alignment_s
            stats.durations_s.append(elapsed)
            logger.info(
                "job %s: %s %d completed in %.3fs (%d bytes, alignment %.3fs) at %s",
                self.job.job_id,
                "savepoint" if savepoint else "checkpoint",
                checkpoint_id,
                elapsed,
                stats.last_size_bytes,
                pending.alignment_s,
                path,
                extra={"job_id": self.job.job_id, "event": "CHECKPOINT_COMPLETED"},
            )
            for subtask in self.subtasks:
                try:
                    await subtask.notify_complete(checkpoint_id)
                except Exception as exc:
                    failure = _failed_at(checkpoint_id, subtask, exc, commit=True)
                    raise self._break(failure) from exc
            return data


def _raised(future: asyncio.Future[Any]) -> bool:
    return not future.cancelled() and isinstance(future.exception(), Exception)


def _failed_at(
    checkpoint_id: int, subtask: CheckpointParticipant, error: Exception, *, commit: bool
) -> ExecutionError:
    """The error a failed snapshot or commit fails the job with (one that already
    names its step, as a subtask's own snapshot error does, as it is)."""
    # (getattr: an error re-raised from a Ray actor is an ExecutionError by class
    # without always carrying its attributes)
    if isinstance(error, ExecutionError) and getattr(error, "step_id", None) is not None:
        return error
    step = getattr(subtask, "current_step", None)
    return checkpoint_failure(checkpoint_id, step, subtask.name, error, commit=commit)


def checkpoint_failure(
    checkpoint_id: int, step: str | None, subtask: str, error: Exception, *, commit: bool
) -> ExecutionError:
    """A failed snapshot or commit of ``checkpoint_id`` at ``step`` of ``subtask``:
    which checkpoint, where, and what the restart does about it."""
    where = f"step {step!r} (subtask {subtask})" if step else f"subtask {subtask}"
    cause = f"{type(error).__name__}: {error}"
    if commit:
        text = (
            f"checkpoint {checkpoint_id} is stored, but committing it at {where} failed: "
            f"{cause}; the job's restart commits it again"
        )
    else:
        text = (
            f"checkpoint {checkpoint_id}: the snapshot at {where} failed: {cause}; the job "
            "restarts from its last complete checkpoint"
        )
    return ExecutionError(text, step_id=step)


def _size(location: str) -> int:
    import os

    return os.path.getsize(location) if not location.startswith("s3://") else 0
