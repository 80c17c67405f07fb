"""Schedule policies (seed §3.4.4, §8.3): immediate, cron, dependency, event, custom."""

from __future__ import annotations

import abc
import dataclasses
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from reflow.loading import FILE_MODULE_PREFIX, import_module_or_file
from reflow.scheduler.cron import CronSchedule, ScheduleError

__all__ = [
    "CronPolicy",
    "CustomPolicy",
    "DependencyPolicy",
    "EventPolicy",
    "ImmediatePolicy",
    "SchedulePolicy",
    "check_storable",
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

        @dataclass(frozen=True)
        class WhenReady(CustomPolicy):
            flag: str = "ready.flag"

            async def triggers(self, clock):
                while True:
                    await clock.sleep(30 * 60)
                    yield clock.now_ms()

            def should_execute(self, job_id):
                return Path(self.flag).exists()

    The job store keeps the class by reference (``module:Class``, or ``file.py:Class``
    for a script) and its options (the dataclass fields, as JSON), so the policy
    survives a restart of the manager: define it at module level of an importable
    module, with JSON-serialisable fields.
    """

    kind = "custom"

    @abc.abstractmethod
    def triggers(self, clock: Any) -> AsyncIterator[int]:
        """Yield (epoch ms) whenever the job may run."""

    def should_execute(self, job_id: str) -> bool:
        return True

    def options(self) -> dict[str, Any]:
        """What the store keeps to make the policy again: the dataclass fields."""
        if dataclasses.is_dataclass(self):
            return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        return {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": "custom",
            "class": _class_reference(type(self)),
            "options": self.options(),
        }


def _class_reference(cls: type) -> str:
    """``module:Class`` (``/abs/file.py:Class`` for a class of the running script)."""
    if "<locals>" in cls.__qualname__:
        raise ScheduleError(
            f"custom policy {cls.__qualname__} is defined inside a function: the job store "
            "cannot make it again after a restart; define it at module level"
        )
    module = cls.__module__
    if module == "__main__":
        main_file = getattr(sys.modules["__main__"], "__file__", None)
        if not main_file:
            raise ScheduleError(
                f"custom policy {cls.__qualname__} is defined in an interactive session: "
                "the job store cannot make it again after a restart; put it in a module"
            )
        return f"{Path(main_file).resolve()}:{cls.__qualname__}"
    spec_file = getattr(sys.modules.get(module), "__file__", None)
    if module.startswith(FILE_MODULE_PREFIX) and spec_file:  # a job script imported by file
        return f"{Path(spec_file).resolve()}:{cls.__qualname__}"
    return f"{module}:{cls.__qualname__}"


def _load_class(reference: str) -> type:
    where, _, name = reference.rpartition(":")
    if not where or not name or any(p.startswith("_") for p in name.split(".")):
        raise ScheduleError(f"custom policy {reference!r} is not of the form module:Class")
    try:
        value: Any = import_module_or_file(where)
        for part in name.split("."):
            value = getattr(value, part)
    except Exception as exc:
        raise ScheduleError(
            f"custom policy {reference!r} cannot be loaded ({type(exc).__name__}: {exc}); "
            "the module must be importable where the job manager runs"
        ) from None
    if not (isinstance(value, type) and issubclass(value, CustomPolicy)):
        raise ScheduleError(f"{reference!r} is not a CustomPolicy subclass")
    return value


def check_storable(policy: SchedulePolicy) -> dict[str, Any]:
    """The policy's stored form, after checking that it makes the policy again."""
    data = policy.to_dict()
    if isinstance(policy, CustomPolicy):
        try:
            json.dumps(data["options"])
        except (TypeError, ValueError) as exc:
            raise ScheduleError(
                f"custom policy {type(policy).__qualname__}: its options must be JSON "
                f"values to be stored ({exc})"
            ) from None
        again = policy_from_dict(data, allow_custom=True)
        if again.to_dict() != data:
            raise ScheduleError(
                f"custom policy {type(policy).__qualname__} made from its stored form differs "
                f"({again.to_dict()} vs {data}); give it dataclass fields for what it holds"
            )
    return data


def policy_from_dict(data: dict[str, Any], *, allow_custom: bool = False) -> SchedulePolicy:
    """The policy a job file's ``schedule:`` block or the job store describes.
    ``allow_custom``: a custom policy's class may be imported (the store's own
    entries, written by ``JobManager.schedule``; never a job file or the API)."""
    kind = str(data.get("policy", "immediate")).replace("-", "_")
    if kind == "custom":
        if not allow_custom:
            raise ScheduleError(
                "custom policies are Python classes: schedule the job from Python, "
                "JobManager.schedule(job, MyPolicy())"
            )
        options = data.get("options") or {}
        cls = _load_class(str(data.get("class", "")))
        try:
            return cls(**options)  # type: ignore[no-any-return]
        except TypeError as exc:
            raise ScheduleError(f"custom policy {data.get('class')!r}: {exc}") from None
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
