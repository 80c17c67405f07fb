"""An autoscaler per job, in the spirit of Flink's Kubernetes-operator autoscaler.

Every ``interval`` it samples the run's counters. Over the stabilisation
``window`` (the oldest sample it keeps) it computes, for each vertex that is not a
source, its *utilisation*: the time its subtasks spent processing per second per
subtask (busy time, 0..1), its backpressure (time blocked handing batches on),
and its input rate. A vertex outside ``target ± boundary`` gets the parallelism
that brings it back to the target, ``ceil(p * utilisation / target)``, within
``[min_parallelism, max_parallelism]`` (at most the 128 key groups). A vertex
held back by backpressure is not scaled up: the step downstream is the
bottleneck. After a rescale it waits ``cooldown`` and a full window of new samples.

Sources keep their parallelism (their read positions belong to their subtasks),
and so do the steps chained with them; the autoscaler leaves them alone and says
so once. With ``dry_run`` it only recommends. Every decision and its inputs are
logged (event ``AUTOSCALER_DECISION``), kept for the API and the UI, and counted
in the metrics.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from reflow.errors import ConfigError
from reflow.graph.job import Job
from reflow.graph.partitioning import MAX_KEY_GROUPS
from reflow.runtime.base import ExecutionSnapshot

__all__ = ["Autoscaler", "AutoscalerConfig", "Decision", "VertexLoad"]

# Decisions kept per run for the API and the UI.
KEPT_DECISIONS = 100
# A vertex blocked more than this share of the time is held back, not a bottleneck.
BACKPRESSURED = 0.5


@dataclass(frozen=True, slots=True)
class AutoscalerConfig:
    """A job's ``autoscaler:`` block (durations in milliseconds)."""

    enabled: bool = True
    dry_run: bool = False
    target_utilization: float = 0.7
    utilization_boundary: float = 0.2
    window_ms: int = 60_000
    cooldown_ms: int = 120_000
    interval_ms: int = 10_000
    min_parallelism: int = 1
    max_parallelism: int = MAX_KEY_GROUPS

    def __post_init__(self) -> None:
        if not 0 < self.target_utilization <= 1:
            raise ConfigError("autoscaler: target_utilization is a share of time in (0, 1]")
        if not 0 <= self.utilization_boundary < self.target_utilization:
            raise ConfigError(
                "autoscaler: utilization_boundary must be >= 0 and below target_utilization"
            )
        if not 1 <= self.min_parallelism <= self.max_parallelism <= MAX_KEY_GROUPS:
            raise ConfigError(
                f"autoscaler: need 1 <= min_parallelism <= max_parallelism <= {MAX_KEY_GROUPS} "
                "(keyed state moves by key group)"
            )
        if min(self.window_ms, self.interval_ms) <= 0 or self.cooldown_ms < 0:
            raise ConfigError("autoscaler: window and interval must be > 0, cooldown >= 0")

    @staticmethod
    def of(job: Job, defaults: Mapping[str, Any] | None = None) -> AutoscalerConfig | None:
        """The job's autoscaler, if it has one enabled: its ``metadata["autoscaler"]``
        over the system's ``defaults`` (``system.autoscaler``), which also give one
        to a job without a block when they say ``enabled``."""
        given = job.metadata.get("autoscaler")
        base = dict(defaults or {})
        if isinstance(given, Mapping):
            config = AutoscalerConfig(**{**base, "enabled": True, **given})
        elif base.get("enabled"):
            config = AutoscalerConfig(**base)
        else:
            return None
        return config if config.enabled else None


@dataclass(frozen=True, slots=True)
class VertexLoad:
    """A vertex's figures over the window."""

    steps: tuple[str, ...]
    parallelism: int
    utilization: float
    backpressure: float
    input_rate: float
    recommended: int


@dataclass(frozen=True, slots=True)
class Decision:
    at: float
    """Epoch seconds."""
    run_id: str
    steps: tuple[str, ...]
    parallelism: int
    recommended: int
    utilization: float
    backpressure: float
    input_rate: float
    action: str
    """scale_up, scale_down, or fixed (a source's vertex)."""
    applied: bool
    """False in dry-run mode (a recommendation) and for fixed vertices."""
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class _Sample:
    at_ms: int
    busy_ns: dict[int, int]
    blocked_s: dict[int, float]
    records_in: dict[int, int]


@dataclass(slots=True)
class Autoscaler:
    """The autoscaler of one run."""

    config: AutoscalerConfig
    run_id: str
    since_ms: int
    """Start of the run, or of its last rescale: samples before it are not used."""
    samples: deque[_Sample] = field(default_factory=deque)
    decisions: deque[Decision] = field(default_factory=lambda: deque(maxlen=KEPT_DECISIONS))
    loads: list[VertexLoad] = field(default_factory=list)
    """The latest figures per vertex (for metrics and the API)."""
    counts: dict[str, int] = field(default_factory=dict)
    """Decisions by action."""
    last_sample_ms: int = -(2**62)
    told_fixed: bool = False
    standing: dict[tuple[str, ...], int] = field(default_factory=dict)
    """In dry-run mode: the recommendation in force per vertex (told once, again
    only when it changes)."""

    def due(self, now_ms: int) -> bool:
        return now_ms - self.last_sample_ms >= self.config.interval_ms

    def rescaled(self, now_ms: int) -> None:
        """The run restarted at a new parallelism: its counters start again."""
        self.since_ms = now_ms
        self.samples.clear()

    def observe(self, snapshot: ExecutionSnapshot, job: Job, now_ms: int) -> list[Decision]:
        """Take a sample; the decisions it leads to (none until the window is full)."""
        self.last_sample_ms = now_ms
        vertex_of = {
            n.step_id: v.vertex_id for v in job.job_graph.vertices for n in v.chained_nodes
        }
        sample = _Sample(now_ms, {}, {}, {})
        for step in snapshot.steps:
            vertex = vertex_of.get(step.step_id)
            if vertex is not None:
                sample.busy_ns[vertex] = sample.busy_ns.get(vertex, 0) + step.processing_ns
        for subtask in snapshot.subtasks:
            vertex = vertex_of.get(subtask.step_id)
            if vertex is not None:
                sample.blocked_s[vertex] = (
                    sample.blocked_s.get(vertex, 0.0) + subtask.blocked_seconds
                )
        heads = {v.vertex_id: v.head.step_id for v in job.job_graph.vertices}
        for step in snapshot.steps:
            if heads.get(vertex_of.get(step.step_id, -1)) == step.step_id:
                vertex = vertex_of[step.step_id]
                sample.records_in[vertex] = sample.records_in.get(vertex, 0) + step.records_in
        self.samples.append(sample)
        window = self.config.window_ms
        while len(self.samples) > 2 and now_ms - self.samples[1].at_ms >= window:
            self.samples.popleft()
        first = self.samples[0]
        if now_ms - first.at_ms < window or now_ms - self.since_ms < self.config.cooldown_ms:
            return self._fixed(job) if not self.told_fixed else []
        return [*self._fixed(job), *self._decide(job, first, sample)]

    def _fixed(self, job: Job) -> list[Decision]:
        if self.told_fixed:
            return []
        self.told_fixed = True
        fixed = [v for v in job.job_graph.vertices if v.is_source]
        return [
            self._record(
                tuple(n.step_id for n in v.chained_nodes),
                v.parallelism,
                v.parallelism,
                0.0,
                0.0,
                0.0,
                "fixed",
                "a source keeps its parallelism (its read positions belong to its subtasks), "
                "and so do the steps chained with it",
            )
            for v in fixed
        ]

    def _decide(self, job: Job, first: _Sample, last: _Sample) -> list[Decision]:
        config = self.config
        seconds = (last.at_ms - first.at_ms) / 1000
        loads = []
        decisions = []
        for vertex in job.job_graph.vertices:
            if vertex.is_source:
                continue
            vid, p = vertex.vertex_id, vertex.parallelism
            busy = (last.busy_ns.get(vid, 0) - first.busy_ns.get(vid, 0)) / 1e9
            blocked = last.blocked_s.get(vid, 0.0) - first.blocked_s.get(vid, 0.0)
            utilization = max(busy / (seconds * p), 0.0)
            backpressure = min(max(blocked / (seconds * p), 0.0), 1.0)
            rate = (last.records_in.get(vid, 0) - first.records_in.get(vid, 0)) / seconds
            target = config.target_utilization
            busy = utilization > target + config.utilization_boundary
            idle = utilization < target - config.utilization_boundary
            recommended = p
            if (busy and backpressure < BACKPRESSURED) or idle:
                recommended = math.ceil(p * utilization / target)
            recommended = min(max(recommended, config.min_parallelism), config.max_parallelism)
            steps = tuple(n.step_id for n in vertex.chained_nodes)
            loads.append(VertexLoad(steps, p, utilization, backpressure, rate, recommended))
            if config.dry_run:
                if self.standing.get(steps, p) == recommended:
                    continue
                self.standing[steps] = recommended
            if recommended == p:
                continue
            action = "scale_up" if recommended > p else "scale_down"
            reason = (
                f"utilization {utilization:.2f} over {seconds:.1f} s is outside "
                f"{target:.2f} ± {config.utilization_boundary:.2f}; "
                f"ceil({p} x {utilization:.2f} / {target:.2f}) -> {recommended}"
            )
            decisions.append(
                self._record(steps, p, recommended, utilization, backpressure, rate, action, reason)
            )
        self.loads = loads
        return decisions

    def _record(
        self,
        steps: tuple[str, ...],
        parallelism: int,
        recommended: int,
        utilization: float,
        backpressure: float,
        rate: float,
        action: str,
        reason: str,
    ) -> Decision:
        applied = action != "fixed" and not self.config.dry_run
        decision = Decision(
            time.time(),
            self.run_id,
            steps,
            parallelism,
            recommended,
            round(utilization, 4),
            round(backpressure, 4),
            round(rate, 2),
            action,
            applied,
            reason if applied or action == "fixed" else f"dry run, recommended only: {reason}",
        )
        self.decisions.append(decision)
        self.counts[action] = self.counts.get(action, 0) + 1
        return decision
