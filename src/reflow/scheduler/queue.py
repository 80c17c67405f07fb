"""The job queue (seed §3.4.2, §5.2): priorities, aging against starvation, a bound.

A queued run's effective priority grows by one for every ``aging_seconds`` it
waits, so a low-priority run overtakes newer high-priority ones after at most
(priority gap x aging_seconds). Ties go to the run queued first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reflow.errors import ReflowError

__all__ = ["JobQueue", "QueueFullError", "QueuedRun"]

# Waiting this long raises a run's priority by one step.
DEFAULT_AGING_SECONDS = 60.0


class QueueFullError(ReflowError):
    """The queue holds ``jobQueueSize`` runs already."""


@dataclass(slots=True)
class QueuedRun:
    run_id: str
    job_id: str
    priority: int
    queued_ms: int
    slots: int = 1
    """Executor capacity the run needs (its parallelism)."""
    payload: Any = field(default=None, repr=False)


class JobQueue:
    def __init__(self, capacity: int = 1000, aging_seconds: float = DEFAULT_AGING_SECONDS) -> None:
        self.capacity = capacity
        self.aging_ms = aging_seconds * 1000
        self.runs: list[QueuedRun] = []

    def __len__(self) -> int:
        return len(self.runs)

    def push(self, run: QueuedRun) -> None:
        if len(self.runs) >= self.capacity:
            raise QueueFullError(
                f"the job queue is full ({self.capacity} runs); raise scheduler.jobQueueSize "
                "or wait for runs to finish"
            )
        self.runs.append(run)

    def effective_priority(self, run: QueuedRun, now_ms: int) -> float:
        return run.priority + (now_ms - run.queued_ms) / self.aging_ms

    def pop(
        self,
        now_ms: int,
        free_slots: int,
        eligible: Callable[[QueuedRun], bool] | None = None,
    ) -> QueuedRun | None:
        """The most urgent run that fits in ``free_slots`` (and is ``eligible``), or None."""
        best: QueuedRun | None = None
        best_key: tuple[float, int] | None = None
        for run in self.runs:
            if run.slots > free_slots or (eligible is not None and not eligible(run)):
                continue
            key = (self.effective_priority(run, now_ms), -run.queued_ms)
            if best_key is None or key > best_key:
                best, best_key = run, key
        if best is not None:
            self.runs.remove(best)
        return best

    def remove_job(self, job_id: str) -> list[QueuedRun]:
        removed = [r for r in self.runs if r.job_id == job_id]
        self.runs = [r for r in self.runs if r.job_id != job_id]
        return removed
