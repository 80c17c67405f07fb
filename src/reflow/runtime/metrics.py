"""Per-step, per-subtask counters kept by the runtime, and their snapshots.

Counters are plain integers bumped once per micro-batch, never per record, so
they cost nothing measurable. The observability layer reads them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields

from reflow.operators.quality import RuleStats

__all__ = ["ExecutionMetrics", "StepCounters", "StepMetrics", "StepSummary"]


class StepMetrics:
    """Live counters of one step in one subtask."""

    __slots__ = (
        "batches",
        "connector_events",
        "dead_lettered",
        "kind",
        "late",
        "processing_ns",
        "quality",
        "records_in",
        "records_out",
        "rejected",
        "step_id",
        "subtask",
    )

    def __init__(self, step_id: str, subtask: int, kind: str) -> None:
        self.step_id = step_id
        self.subtask = subtask
        self.kind = kind
        self.records_in = 0
        self.records_out = 0
        self.rejected = 0
        self.dead_lettered = 0
        self.late = 0
        self.processing_ns = 0
        self.batches = 0
        self.connector_events: dict[str, int] = {}
        self.quality: dict[str, RuleStats] = {}


@dataclass(frozen=True, slots=True)
class StepCounters:
    """The counters of one step in one subtask at the moment of a snapshot."""

    step_id: str
    subtask: int
    kind: str
    records_in: int
    records_out: int
    rejected: int
    dead_lettered: int
    late: int
    processing_ns: int
    batches: int
    connector_events: Mapping[str, int]
    quality: Mapping[str, RuleStats] = field(default_factory=dict)

    @staticmethod
    def of(live: StepMetrics) -> StepCounters:
        """The live counters' values now (every field of this class, by name)."""
        values = {f.name: getattr(live, f.name) for f in fields(StepCounters)}
        values["connector_events"] = dict(live.connector_events)
        values["quality"] = {rule: stats.copy() for rule, stats in live.quality.items()}
        return StepCounters(**values)


@dataclass(frozen=True, slots=True)
class StepSummary:
    """A step's counters summed over its subtasks."""

    step_id: str
    kind: str
    subtasks: int
    records_in: int
    records_out: int
    rejected: int
    dead_lettered: int
    processing_seconds: float
    late: int = 0
    """Records that came after their window closed (sent to the "late" side output)."""
    connector_events: dict[str, int] = field(default_factory=dict)
    """A source's or sink's own counters (requests, retries, reconnects, ...)."""
    quality: dict[str, RuleStats] = field(default_factory=dict)
    """A quality step's rules: checks passed and failed, last failure, measure."""


@dataclass(frozen=True, slots=True)
class ExecutionMetrics:
    """A snapshot of a job's execution (seed §3.5.3 ``ExecutionMetrics``)."""

    steps: tuple[StepSummary, ...] = ()
    dropped_records: int = 0
    """Records dropped by DROP/LATEST overflow strategies, over all channels."""
    backpressure_seconds: float = 0.0
    """Time producers waited on full channels, over all channels."""
    elapsed_seconds: float = 0.0
    channels: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Channel name -> (batches queued, capacity)."""

    def step(self, step_id: str) -> StepSummary:
        for summary in self.steps:
            if summary.step_id == step_id:
                return summary
        raise KeyError(step_id)

    @staticmethod
    def summarize(
        live: Iterable[StepCounters],
        *,
        dropped: int = 0,
        blocked: float = 0.0,
        elapsed: float = 0.0,
        channels: dict[str, tuple[int, int]] | None = None,
    ) -> ExecutionMetrics:
        order: list[str] = []
        grouped: dict[str, list[StepCounters]] = {}
        for m in live:
            if m.step_id not in grouped:
                order.append(m.step_id)
                grouped[m.step_id] = []
            grouped[m.step_id].append(m)
        steps = tuple(
            StepSummary(
                step_id=step,
                kind=grouped[step][0].kind,
                subtasks=len(grouped[step]),
                records_in=sum(m.records_in for m in grouped[step]),
                records_out=sum(m.records_out for m in grouped[step]),
                rejected=sum(m.rejected for m in grouped[step]),
                dead_lettered=sum(m.dead_lettered for m in grouped[step]),
                processing_seconds=sum(m.processing_ns for m in grouped[step]) / 1e9,
                late=sum(m.late for m in grouped[step]),
                connector_events=_sum_events(grouped[step]),
                quality=_combine_quality(grouped[step]),
            )
            for step in order
        )
        return ExecutionMetrics(steps, dropped, blocked, elapsed, channels or {})


def _sum_events(metrics: list[StepCounters]) -> dict[str, int]:
    total: dict[str, int] = {}
    for m in metrics:
        for event, count in m.connector_events.items():
            total[event] = total.get(event, 0) + count
    return total


def _combine_quality(metrics: list[StepCounters]) -> dict[str, RuleStats]:
    rules: dict[str, list[RuleStats]] = {}
    for m in metrics:
        for rule, stats in m.quality.items():
            rules.setdefault(rule, []).append(stats)
    return {rule: RuleStats.combine(parts) for rule, parts in rules.items()}
