"""Schedule policies (seed §3.4.4, §8.3): immediate, cron, dependency, event, custom."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from reflow.scheduler.cron import CronSchedule, ScheduleError

__all__ = [
    "CronPolicy",
    "CustomPolicy",
    "DependencyPolicy",
    "EventPolicy",
    "ImmediatePolicy",
    "SchedulePolicy",
    "policy_from_dict",
]

Misfire = Literal["fire_once", "skip"]
Overlap = Literal["skip", "queue", "allow"]


class SchedulePolicy:
    """When a job runs. Use the factories: ``SchedulePolicy.immediate()``, ``.cron(...)``,
    ``.depends_on(...)``, ``.on_event(...)``, or subclass ``CustomPolicy``."""

    kind: str = "policy"
    overlap: Overlap = "queue"

    @staticmethod
    def immediate() -> ImmediatePolicy:
        return ImmediatePolicy()

    @staticmethod
    def cron(
        expression: str,
        timezone: str = "UTC",
        *,
        misfire: Misfire = "fire_once",
        overlap: Overlap = "skip",
    ) -> CronPolicy:
        return CronPolicy(expression, timezone, misfire, overlap)

    @staticmethod
    def depends_on(*job_ids: str) -> DependencyPolicy:
        return DependencyPolicy(tuple(job_ids))

    dependsOn = depends_on

    @staticmethod
    def on_event(name: str) -> EventPolicy:
        return EventPolicy(name)

    onEvent = on_event

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class ImmediatePolicy(SchedulePolicy):
    """Run once, as soon as a slot is free."""

    kind: str = "immediate"

    def to_dict(self) -> dict[str, Any]:
        return {"policy": "immediate"}


@dataclass(frozen=True)
class CronPolicy(SchedulePolicy):
    """Run at the fire times of a cron expression in a time zone.

    ``misfire``: after downtime, ``fire_once`` runs once for all missed times,
    ``skip`` waits for the next time. ``overlap``: when a run of the job is still
    queued or running at a fire time, ``skip`` drops the new run, ``queue`` queues
    it, ``allow`` runs it alongside.
    """

    expression: str = "0 0 * * * ?"
    timezone: str = "UTC"
    misfire: Misfire = "fire_once"
    overlap: Overlap = "skip"
    kind: str = "cron"
    schedule: CronSchedule = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "schedule", CronSchedule(self.expression, self.timezone))

    def next_fire_time(self, after: datetime) -> datetime | None:
        return self.schedule.next_fire_time(after)

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": "cron",
            "expression": self.expression,
            "timezone": self.timezone,
            "misfire": self.misfire,
            "overlap": self.overlap,
        }


@dataclass(frozen=True)
class DependencyPolicy(SchedulePolicy):
    """Run when every upstream job has completed successfully since this job's last run."""

    upstream: tuple[str, ...] = ()
    kind: str = "depends_on"

    def __post_init__(self) -> None:
        if not self.upstream:
            raise ScheduleError("depends_on needs at least one upstream job id")

    def to_dict(self) -> dict[str, Any]:
        return {"policy": "depends_on", "upstream": list(self.upstream)}


@dataclass(frozen=True)
class EventPolicy(SchedulePolicy):
    """Run when the named event is posted (API, CLI ``reflow events post``, HTTP)."""

    event: str = ""
    kind: str = "on_event"

    def to_dict(self) -> dict[str, Any]:
        return {"policy": "on_event", "event": self.event}


class CustomPolicy(SchedulePolicy, abc.ABC):
    """A user policy (seed §8.3): an async stream of trigger times plus a condition.

    Example: every 30 minutes while a file exists::

        class WhenReady(CustomPolicy):
            async def triggers(self, clock):
                while True:
                    await clock.sleep(30 * 60)
                    yield clock.now_ms()

            def should_execute(self, job_id):
                return Path("ready.flag").exists()
    """

    kind = "custom"

    @abc.abstractmethod
    def triggers(self, clock: Any) -> AsyncIterator[int]:
        """Yield (epoch ms) whenever the job may run."""

    def should_execute(self, job_id: str) -> bool:
        return True

    def to_dict(self) -> dict[str, Any]:
        return {"policy": "custom", "class": f"{type(self).__module__}:{type(self).__qualname__}"}


def policy_from_dict(data: dict[str, Any]) -> SchedulePolicy:
    """The policy a job file's ``schedule:`` block or the job store describes."""
    kind = str(data.get("policy", "immediate")).replace("-", "_")
    if kind == "immediate":
        return ImmediatePolicy()
    if kind == "cron":
        if "expression" not in data:
            raise ScheduleError("a cron schedule needs 'expression' (e.g. \"0 0 * * * ?\")")
        return CronPolicy(
            str(data["expression"]),
            str(data.get("timezone", "UTC")),
            data.get("misfire", "fire_once"),
            data.get("overlap", "skip"),
        )
    if kind in ("depends_on", "dependency"):
        upstream = data.get("upstream") or data.get("jobs") or []
        if isinstance(upstream, str):
            upstream = [upstream]
        return DependencyPolicy(tuple(upstream))
    if kind in ("on_event", "event"):
        return EventPolicy(str(data.get("event", "")))
    raise ScheduleError(
        f"unknown schedule policy {kind!r}; use immediate, cron, depends_on or on_event"
    )
