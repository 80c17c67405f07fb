"""Prometheus exposition of the seed's metrics (§7.2), read live at scrape time.

Nothing is counted per record for this: a scrape reads the runtime's counters
(bumped per batch) and turns them into metric families. Seed names map to
Prometheus names with a ``reflow_`` prefix, dots as underscores, and the usual
``_total``/``_seconds``/``_bytes`` suffixes:

- job.running / completed / failed / duration: reflow_job_running,
  reflow_job_completed_total, reflow_job_failed_total, reflow_job_duration_seconds
- operator.records.in / out: reflow_operator_records_in_total, ..._out_total
- operator.processing.time: reflow_operator_processing_seconds_total
- operator.backpressure: reflow_operator_backpressure_seconds_total and
  reflow_operator_backpressure_ratio (time blocked per second, as Flink's)
- system.cpu.usage / memory.usage: reflow_system_cpu_usage,
  reflow_system_memory_usage_bytes, reflow_system_memory_usage_ratio
- threadpool.active / queue.size: reflow_threadpool_active, reflow_threadpool_queue_size
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from reflow.operators.quality import RuleStats
from reflow.runtime.base import Executor

__all__ = ["ReflowCollector", "log_report", "report_periodically"]

logger = logging.getLogger("reflow.metrics")

DURATION_BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0, float("inf"))
STEP_LABELS = ["job_id", "job_name", "step_id", "subtask"]


class ReflowCollector(Collector):
    """Reads an executor (and optionally a job manager) at every scrape."""

    def __init__(self, executor: Executor, manager: Any = None) -> None:
        self.executor = executor
        self.manager = manager
        self._last: dict[tuple[str, ...], tuple[float, float]] = {}

    def _rate(self, key: tuple[str, ...], value: float, now: float) -> float:
        previous = self._last.get(key)
        self._last[key] = (now, value)
        if previous is None or now <= previous[0]:
            return 0.0
        return (value - previous[1]) / (now - previous[0])

    def collect(self) -> Iterator[Metric]:
        import psutil

        now = time.monotonic()
        executor = self.executor
        snapshots = executor.snapshots()
        yield GaugeMetricFamily(
            "reflow_job_running",
            "Jobs running (job.running)",
            value=sum(1 for s in snapshots if s.running),
        )
        yield CounterMetricFamily(
            "reflow_job_completed",
            "Jobs completed (job.completed)",
            value=executor.totals["completed"],
        )
        yield CounterMetricFamily(
            "reflow_job_failed", "Jobs failed (job.failed)", value=executor.totals["failed"]
        )
        yield CounterMetricFamily(
            "reflow_job_cancelled", "Jobs cancelled", value=executor.totals.get("cancelled", 0)
        )
        durations = executor.durations
        buckets = [
            (str(b) if b != float("inf") else "+Inf", sum(1 for d in durations if d <= b))
            for b in DURATION_BUCKETS
        ]
        yield HistogramMetricFamily(
            "reflow_job_duration_seconds",
            "How long ended jobs ran (job.duration)",
            buckets=buckets,
            sum_value=sum(durations),
        )

        records_in = CounterMetricFamily(
            "reflow_operator_records_in",
            "Records into a step (operator.records.in)",
            labels=STEP_LABELS,
        )
        records_out = CounterMetricFamily(
            "reflow_operator_records_out",
            "Records out of a step (operator.records.out)",
            labels=STEP_LABELS,
        )
        processing = CounterMetricFamily(
            "reflow_operator_processing_seconds",
            "Time a step spent processing (operator.processing.time)",
            labels=STEP_LABELS,
        )
        rejected = CounterMetricFamily(
            "reflow_operator_records_rejected", "Records a step rejected", labels=STEP_LABELS
        )
        late = CounterMetricFamily(
            "reflow_operator_records_late", "Records later than their windows", labels=STEP_LABELS
        )
        rate = GaugeMetricFamily(
            "reflow_operator_records_per_second", "Records out per second", labels=STEP_LABELS
        )
        blocked = CounterMetricFamily(
            "reflow_operator_backpressure_seconds",
            "Time a subtask waited on full channels (operator.backpressure)",
            labels=STEP_LABELS,
        )
        blocked_ratio = GaugeMetricFamily(
            "reflow_operator_backpressure_ratio",
            "Time blocked per second since the previous scrape (0..1)",
            labels=STEP_LABELS,
        )
        connector = CounterMetricFamily(
            "reflow_connector_records",
            "Records read by sources and written by sinks",
            labels=["job_id", "step_id", "direction"],
        )
        connector_events = CounterMetricFamily(
            "reflow_connector_events",
            "Connector events: requests, retries, reconnects, bytes, commits, ...",
            labels=[*STEP_LABELS, "event"],
        )
        fill = GaugeMetricFamily(
            "reflow_channel_fill_ratio", "Batches queued / capacity", labels=["job_id", "channel"]
        )
        lag = GaugeMetricFamily(
            "reflow_watermark_lag_seconds",
            "Wall clock minus the subtask's event-time watermark",
            labels=["job_id", "subtask"],
        )
        checkpoint_duration = GaugeMetricFamily(
            "reflow_checkpoint_duration_seconds",
            "Duration of the last checkpoint",
            labels=["job_id"],
        )
        checkpoint_size = GaugeMetricFamily(
            "reflow_checkpoint_size_bytes", "Size of the last checkpoint", labels=["job_id"]
        )
        checkpoint_alignment = GaugeMetricFamily(
            "reflow_checkpoint_alignment_seconds",
            "Longest barrier alignment of the last checkpoint",
            labels=["job_id"],
        )
        checkpoints_done = CounterMetricFamily(
            "reflow_checkpoint_completed", "Checkpoints completed", labels=["job_id"]
        )
        checkpoints_failed = CounterMetricFamily(
            "reflow_checkpoint_failures", "Checkpoints aborted", labels=["job_id"]
        )
        quality = _QualityFamilies()
        wall_ms = executor.settings.clock.now_ms()
        for snap in snapshots:
            quality.add(snap, wall_ms)
            job_id = snap.job_id
            for m in snap.steps:
                labels = [job_id, snap.job_name, m.step_id, str(m.subtask)]
                records_in.add_metric(labels, m.records_in)
                records_out.add_metric(labels, m.records_out)
                processing.add_metric(labels, m.processing_ns / 1e9)
                rejected.add_metric(labels, m.rejected)
                late.add_metric(labels, m.late)
                key = (job_id, m.step_id, str(m.subtask))
                rate.add_metric(labels, max(self._rate(("out", *key), m.records_out, now), 0.0))
                if m.kind == "source":
                    connector.add_metric([job_id, m.step_id, "read"], m.records_out)
                elif m.kind == "sink":
                    connector.add_metric([job_id, m.step_id, "written"], m.records_in)
                for event, count in m.connector_events.items():
                    connector_events.add_metric([*labels, event], count)
            for subtask in snap.subtasks:
                labels = [job_id, snap.job_name, subtask.step_id, str(subtask.index)]
                blocked.add_metric(labels, subtask.blocked_seconds)
                ratio = self._rate(("bp", job_id, subtask.name), subtask.blocked_seconds, now)
                blocked_ratio.add_metric(labels, min(max(ratio, 0.0), 1.0))
                if subtask.watermark is not None:
                    lag.add_metric([job_id, subtask.name], (wall_ms - subtask.watermark) / 1000)
            for stats in snap.channels:
                fill.add_metric([job_id, stats.name], stats.size / stats.capacity)
            cs = snap.checkpoints
            if cs is not None:
                checkpoint_duration.add_metric([job_id], cs.last_duration_s)
                checkpoint_size.add_metric([job_id], cs.last_size_bytes)
                checkpoint_alignment.add_metric([job_id], cs.last_alignment_s)
                checkpoints_done.add_metric([job_id], cs.completed)
                checkpoints_failed.add_metric([job_id], cs.failed)
        yield from (
            records_in,
            records_out,
            processing,
            rejected,
            late,
            rate,
            blocked,
            blocked_ratio,
            connector,
            connector_events,
            fill,
            lag,
            checkpoint_duration,
            checkpoint_size,
            checkpoint_alignment,
            checkpoints_done,
            checkpoints_failed,
            *quality.families(),
        )

        process = psutil.Process()
        yield GaugeMetricFamily(
            "reflow_system_cpu_usage",
            "CPU used by this process since the previous scrape, in cores (system.cpu.usage)",
            value=process.cpu_percent(interval=None) / 100,
        )
        rss = process.memory_info().rss
        yield GaugeMetricFamily(
            "reflow_system_memory_usage_bytes", "Resident memory (system.memory.usage)", value=rss
        )
        yield GaugeMetricFamily(
            "reflow_system_memory_usage_ratio",
            "Resident memory / the machine's memory",
            value=rss / psutil.virtual_memory().total,
        )
        active = GaugeMetricFamily(
            "reflow_threadpool_active", "Busy threads (threadpool.active)", labels=["pool"]
        )
        queued = GaugeMetricFamily(
            "reflow_threadpool_queue_size", "Tasks waiting (threadpool.queue.size)", labels=["pool"]
        )
        for pool, (busy, waiting) in executor.pool_stats().items():
            active.add_metric([pool], busy)
            queued.add_metric([pool], waiting)
        yield active
        yield queued
        if self.manager is not None:
            yield GaugeMetricFamily(
                "reflow_scheduler_queue_size",
                "Runs waiting in the job queue",
                value=len(self.manager.queue),
            )
            yield from _autoscaler_families(getattr(self.manager, "autoscalers", {}))


def _autoscaler_families(autoscalers: dict[str, Any]) -> Iterator[Metric]:
    """Each autoscaled run's vertices (utilisation, backpressure, recommended
    parallelism) and its decisions by action."""
    labels = ["job_id", "step_id"]
    utilization = GaugeMetricFamily(
        "reflow_autoscaler_utilization",
        "Busy time per second per subtask over the autoscaler's window (0..1)",
        labels=labels,
    )
    backpressure = GaugeMetricFamily(
        "reflow_autoscaler_backpressure",
        "Time blocked on full channels per second per subtask over the window",
        labels=labels,
    )
    recommended = GaugeMetricFamily(
        "reflow_autoscaler_recommended_parallelism",
        "The parallelism the autoscaler computes for the vertex (its first step)",
        labels=labels,
    )
    decisions = CounterMetricFamily(
        "reflow_autoscaler_decisions",
        "Autoscaler decisions by action (scale_up, scale_down, fixed)",
        labels=["job_id", "action"],
    )
    for run_id, scaler in autoscalers.items():
        for load in scaler.loads:
            at = [run_id, load.steps[0]]
            utilization.add_metric(at, load.utilization)
            backpressure.add_metric(at, load.backpressure)
            recommended.add_metric(at, load.recommended)
        for action, count in scaler.counts.items():
            decisions.add_metric([run_id, action], count)
    yield from (utilization, backpressure, recommended, decisions)


def log_report(executor: Executor) -> dict[str, Any]:
    """The key figures the periodic log reporter writes (the seed's slf4j reporter)."""
    steps: dict[str, dict[str, int]] = {}
    running = executor.snapshots(running_only=True)
    for snap in running:
        for m in snap.steps:
            entry = steps.setdefault(f"{snap.job_id}/{m.step_id}", {"in": 0, "out": 0})
            entry["in"] += m.records_in
            entry["out"] += m.records_out
    return {
        "jobs_running": len(running),
        "jobs_completed": executor.totals["completed"],
        "jobs_failed": executor.totals["failed"],
        "steps": steps,
    }


async def report_periodically(executor: Executor, interval_seconds: float) -> None:
    """Log ``log_report`` every ``interval_seconds`` on the executor's clock."""
    while True:
        await executor.settings.clock.sleep(interval_seconds)
        logger.info("metrics", extra={"event": "METRICS", **log_report(executor)})


class _QualityFamilies:
    """Quality rules' results: ``reflow_quality_checks_total{rule,result}`` and the
    rules' measures (freshness lag, records per window, drift PSI, breached)."""

    def __init__(self) -> None:
        labels = ["job_id", "job_name", "step_id", "rule", "check"]
        self.checks = CounterMetricFamily(
            "reflow_quality_checks",
            "Records (or windows) a quality rule judged, by result (passed, failed)",
            labels=[*labels, "result"],
        )
        self.lag = GaugeMetricFamily(
            "reflow_quality_freshness_lag_seconds",
            "Largest event-time lag behind the clock in the last batch",
            labels=labels,
        )
        self.volume = GaugeMetricFamily(
            "reflow_quality_window_records",
            "Records in the last window a volume rule judged",
            labels=labels,
        )
        self.drift = GaugeMetricFamily(
            "reflow_quality_drift_psi",
            "Population stability index of the last window a drift rule judged",
            labels=labels,
        )
        self.breached = GaugeMetricFamily(
            "reflow_quality_breached",
            "1 while a rule's last violation is younger than its hold time",
            labels=[*labels, "critical"],
        )

    def add(self, snap: Any, now_ms: int) -> None:
        for step in snap.metrics.steps:  # each rule summed over the step's subtasks
            for rule, stats in step.quality.items():
                self._add(snap, step.step_id, rule, stats, now_ms)

    def _add(self, snap: Any, step_id: str, rule: str, stats: RuleStats, now_ms: int) -> None:
        labels = [snap.job_id, snap.job_name, step_id, rule, stats.check]
        self.checks.add_metric([*labels, "passed"], stats.passed)
        self.checks.add_metric([*labels, "failed"], stats.failed)
        breached = 1.0 if stats.breached(now_ms) else 0.0
        self.breached.add_metric([*labels, str(stats.critical).lower()], breached)
        family = {"freshness": self.lag, "volume": self.volume, "drift": self.drift}.get(
            stats.check
        )
        if family is not None and stats.value is not None:
            scale = 1000.0 if stats.check == "freshness" else 1.0
            family.add_metric(labels, stats.value / scale)

    def families(self) -> tuple[Any, ...]:
        return (self.checks, self.lag, self.volume, self.drift, self.breached)
