"""Health checks (seed §7.3): scheduler, executor and connectors -> UP / DEGRADED / DOWN.

- scheduler: DOWN if its loop is not running; DEGRADED if the queue is fuller than
  ``queue_threshold`` of its capacity; else UP.
- executor: DEGRADED if a running job's last checkpoint failed (storage full or
  unwritable), or if a running subtask spent more than ``backpressure_threshold``
  of the time since the previous check blocked on full channels; else UP.
- connectors: DOWN if a running job's source or sink reports it cannot reach its
  system; else UP.
- quality (when a running job has quality rules): DEGRADED while a rule marked
  critical is breached (its last violation is younger than its ``hold``); else UP.

The overall status is the worst component's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from reflow.runtime.base import Executor

__all__ = ["ComponentHealth", "HealthChecker", "HealthReport"]

UP, DEGRADED, DOWN = "UP", "DEGRADED", "DOWN"
_RANK = {UP: 0, DEGRADED: 1, DOWN: 2}
# A connector that does not answer its probe within this time counts as down.
PROBE_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class ComponentHealth:
    name: str
    status: str
    reason: str


@dataclass(frozen=True, slots=True)
class HealthReport:
    status: str
    components: list[ComponentHealth] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "components": {
                c.name: {"status": c.status, "reason": c.reason} for c in self.components
            },
        }


class HealthChecker:
    def __init__(
        self,
        executor: Executor,
        manager: Any = None,
        *,
        backpressure_threshold: float = 0.5,
        queue_threshold: float = 0.8,
    ) -> None:
        self.executor = executor
        self.manager = manager
        self.backpressure_threshold = backpressure_threshold
        self.queue_threshold = queue_threshold
        self._previous: dict[str, tuple[float, float]] = {}

    def _scheduler(self) -> ComponentHealth | None:
        manager = self.manager
        if manager is None:
            return None
        if not getattr(manager, "alive", False):
            return ComponentHealth("scheduler", DOWN, "the scheduler loop is not running")
        queue = manager.queue
        load = len(queue) / queue.capacity
        if load > self.queue_threshold:
            return ComponentHealth(
                "scheduler",
                DEGRADED,
                f"job queue {len(queue)}/{queue.capacity} is over {self.queue_threshold:.0%}",
            )
        return ComponentHealth("scheduler", UP, f"running, {len(queue)} runs queued")

    def _executor(self) -> ComponentHealth:
        now = time.monotonic()
        worst: tuple[float, str] = (0.0, "")
        running = self.executor.snapshots(running_only=True)
        for snap in running:
            for subtask in snap.subtasks:
                key = f"{snap.job_id}/{subtask.name}"
                previous = self._previous.get(key)
                self._previous[key] = (now, subtask.blocked_seconds)
                if previous is None or now <= previous[0]:
                    continue
                ratio = (subtask.blocked_seconds - previous[1]) / (now - previous[0])
                if ratio > worst[0]:
                    worst = (ratio, f"job {snap.job_id} subtask {subtask.name}")
        for snap in running:
            if snap.blocked is not None:
                return ComponentHealth("executor", DEGRADED, f"job {snap.job_id}: {snap.blocked}")
        for snap in running:
            stats = snap.checkpoints
            if stats is not None and stats.consecutive_failures > 0:
                return ComponentHealth(
                    "executor",
                    DEGRADED,
                    f"job {snap.job_id}: {stats.consecutive_failures} checkpoint(s) "
                    f"failed in a row: {stats.last_failure}",
                )
        if worst[0] > self.backpressure_threshold:
            return ComponentHealth(
                "executor",
                DEGRADED,
                f"backpressure: {worst[1]} blocked {worst[0]:.0%} of the time",
            )
        return ComponentHealth("executor", UP, f"{len(running)} jobs running")

    def _quality(self) -> ComponentHealth | None:
        now_ms = self.executor.settings.clock.now_ms()
        rules = 0
        breached = []
        for snap in self.executor.snapshots(running_only=True):
            for step in snap.metrics.steps:
                for rule, stats in step.quality.items():
                    rules += 1
                    if stats.critical and stats.breached(now_ms):
                        breached.append(
                            f"job {snap.job_id} step {step.step_id}: critical rule {rule!r} "
                            f"({stats.check}) failed {stats.failed} of "
                            f"{stats.passed + stats.failed} checks, the last "
                            f"{(now_ms - (stats.last_failed_ms or now_ms)) / 1000:.0f} s ago"
                        )
        if not rules:
            return None
        if breached:
            return ComponentHealth("quality", DEGRADED, "; ".join(breached))
        return ComponentHealth("quality", UP, f"{rules} rules, no critical rule breached")

    async def _connectors(self) -> ComponentHealth:
        results: list[tuple[str, Any]] = []
        for snap in self.executor.snapshots(running_only=True):
            results.extend(await self.executor.probe_connectors(snap.job_id, PROBE_TIMEOUT_SECONDS))
        if not results:
            return ComponentHealth("connectors", UP, "no connector in use")
        down = []
        checked = 0
        for name, result in results:
            if isinstance(result, str):
                down.append(f"{name}: {result}")
            elif result is not None:
                checked += 1
                connected, detail = result
                if not connected:
                    down.append(f"{name}: {detail}")
        if down:
            return ComponentHealth("connectors", DOWN, "; ".join(down))
        return ComponentHealth("connectors", UP, f"{checked} connections checked")

    async def check(self) -> HealthReport:
        components = [
            c for c in (self._scheduler(), self._executor(), self._quality()) if c is not None
        ]
        components.append(await self._connectors())
        worst = max(components, key=lambda c: _RANK[c.status]).status
        return HealthReport(worst, components)
