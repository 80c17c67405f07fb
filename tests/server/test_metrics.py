"""A scrape of /metrics has every metric of seed §7.2, with the right values."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from reflow import Flow, Job, Operators
from reflow.runtime import ExecutorSettings, LocalExecutor
from reflow.server.metrics import ReflowCollector
from reflow.testing import TestingSink, TestingSource
from tests.conftest import source_blocked

SEED_METRICS = {
    "job.running": "reflow_job_running",
    "job.completed": "reflow_job_completed",
    "job.failed": "reflow_job_failed",
    "job.duration": "reflow_job_duration_seconds",
    "operator.records.in": "reflow_operator_records_in",
    "operator.records.out": "reflow_operator_records_out",
    "operator.processing.time": "reflow_operator_processing_seconds",
    "operator.backpressure": "reflow_operator_backpressure_seconds",
    "system.cpu.usage": "reflow_system_cpu_usage",
    "system.memory.usage": "reflow_system_memory_usage_bytes",
    "threadpool.active": "reflow_threadpool_active",
    "threadpool.queue.size": "reflow_threadpool_queue_size",
}


def _scrape(executor: LocalExecutor, registry: CollectorRegistry | None = None) -> dict[str, Any]:
    if registry is None:
        registry = CollectorRegistry()
        registry.register(ReflowCollector(executor))
    text = generate_latest(registry).decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def _value(families: dict[str, Any], name: str, **labels: str) -> float:
    for sample in families[name].samples:
        if sample.name.endswith("_created"):
            continue
        if all(sample.labels.get(k) == v for k, v in labels.items()):
            return float(sample.value)
    raise KeyError((name, labels))


def _job() -> Job:
    return (
        Job.builder()
        .name("ten-k")
        .id("ten-k")
        .parallelism(2)
        .source(TestingSource(range(10_000)), id="numbers")
        .transform(Operators.filter(lambda x: x % 4 == 0), id="quarter")
        .sink(TestingSink(parallelism=1), id="out")
        .build()
    )


def test_every_seed_metric_with_correct_values() -> None:
    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        with LocalExecutor(ExecutorSettings()) as executor:
            await executor.execute(_job())
            first = _scrape(executor)
            second_job = _job()
            second_job.job_id = "ten-k-again"
            await executor.execute(second_job)
            return first, _scrape(executor)

    first, second = asyncio.run(scenario())
    for seed, name in SEED_METRICS.items():
        assert name in first, f"{seed} ({name}) missing"
    assert _value(first, "reflow_job_completed") == 1
    assert _value(second, "reflow_job_completed") == 2  # job.completed increments
    assert _value(first, "reflow_job_running") == 0
    assert _value(first, "reflow_job_failed") == 0
    assert _value(first, "reflow_job_duration_seconds", le="+Inf") == 1
    step = {"job_id": "ten-k"}
    read = sum(
        _value(first, "reflow_operator_records_out", **step, step_id="numbers", subtask=str(i))
        for i in range(2)
    )
    filtered_in = sum(
        _value(first, "reflow_operator_records_in", **step, step_id="quarter", subtask=str(i))
        for i in range(2)
    )
    filtered_out = sum(
        _value(first, "reflow_operator_records_out", **step, step_id="quarter", subtask=str(i))
        for i in range(2)
    )
    written = _value(first, "reflow_operator_records_in", **step, step_id="out", subtask="0")
    assert (read, filtered_in, filtered_out, written) == (10_000, 10_000, 2_500, 2_500)
    assert (
        _value(
            first, "reflow_connector_records", job_id="ten-k", step_id="out", direction="written"
        )
        == 2_500
    )
    assert _value(first, "reflow_system_memory_usage_bytes") > 10_000_000
    assert _value(first, "reflow_threadpool_active", pool="io") >= 0


def _fast_source_into(step: Callable[[int], Awaitable[int]], name: str) -> Any:
    """Job ``<name>-job``: an endless source "fast" into one subtask of ``step``."""
    flow = Flow(name, batch_size=10)
    flow.source(TestingSource(range(100_000), bounded=False), id="fast").rebalance().map(
        step, concurrency=1, parallelism=1, id=name
    ).sink(TestingSink())
    return flow.to_job(job_id=f"{name}-job")


def test_running_job_backpressure_and_channel_fill_are_exported() -> None:
    async def slow(x: int) -> int:
        await asyncio.sleep(0.002)
        return x

    job = _fast_source_into(slow, "slow")

    async def scenario() -> dict[str, Any]:
        with LocalExecutor(ExecutorSettings(channel_capacity=2)) as executor:
            registry = CollectorRegistry()
            registry.register(ReflowCollector(executor))
            task = asyncio.create_task(executor.execute(job))
            await source_blocked(executor, job.job_id)
            _scrape(executor, registry)  # the first scrape starts the rate windows
            await asyncio.sleep(0.5)
            families = _scrape(executor, registry)
            await executor.stop(job.job_id)
            await task
            return families

    families = asyncio.run(scenario())
    assert _value(families, "reflow_job_running") == 1
    ratio = _value(
        families, "reflow_operator_backpressure_ratio", job_id="slow-job", step_id="fast"
    )
    assert ratio > 0.5  # the source spent most of its time blocked on the full channel
    assert _value(families, "reflow_channel_fill_ratio", job_id="slow-job") > 0


def test_a_continuously_blocked_source_reads_blocked_at_every_scrape() -> None:
    """A source stuck on a full channel for the whole measurement: before, its blocked
    time was only counted when the wait ended, so every scrape read 0 and the one after
    the wait jumped to 1. The ratio is a fraction of each scrape interval, near 1 each time."""
    release = asyncio.Event()

    async def stuck(x: int) -> int:
        await release.wait()
        return x

    job = _fast_source_into(stuck, "stuck")

    async def scenario() -> list[float]:
        with LocalExecutor(ExecutorSettings(channel_capacity=2)) as executor:
            registry = CollectorRegistry()
            registry.register(ReflowCollector(executor))
            task = asyncio.create_task(executor.execute(job))
            await source_blocked(executor, job.job_id)
            _scrape(executor, registry)  # the first scrape starts the rate windows
            ratios = []
            for _ in range(4):
                await asyncio.sleep(0.05)
                families = _scrape(executor, registry)
                ratios.append(
                    _value(
                        families,
                        "reflow_operator_backpressure_ratio",
                        job_id="stuck-job",
                        step_id="fast",
                    )
                )
            release.set()
            await executor.stop(job.job_id)
            await task
            return ratios

    ratios = asyncio.run(scenario())
    assert all(0.5 < r <= 1.0 for r in ratios), ratios


def test_the_log_reporter_writes_the_key_figures(caplog: Any) -> None:
    from reflow.eventtime import ManualClock
    from reflow.server.metrics import report_periodically

    clock = ManualClock()

    async def scenario() -> None:
        with LocalExecutor(ExecutorSettings(clock=clock)) as executor:
            await executor.execute(_job())
            reporter = asyncio.create_task(report_periodically(executor, 60))
            await asyncio.sleep(0)
            await clock.advance_and_settle(60)
            reporter.cancel()

    with caplog.at_level("INFO", logger="reflow.metrics"):
        asyncio.run(scenario())
    (record,) = [r for r in caplog.records if getattr(r, "event", None) == "METRICS"]
    assert record.jobs_completed == 1 and record.jobs_running == 0
