"""End-to-end backpressure: an unbounded fast source into a slow sink stays bounded."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import Callable
from typing import Any, ClassVar

from reflow import Connectors, Job, Operators, Overflow, StreamGraph
from reflow.connectors.base import ConnectorContext, Sink, SinkWriter
from reflow.graph.job import JobConfig
from reflow.runtime import ExecutorSettings, LocalExecutor


class SlowSink(Sink):
    """Takes 2 ms per batch: far slower than the generator. Calls ``observe`` after
    every batch and sets ``enough`` once ``wanted`` records arrived."""

    connector_type: ClassVar[str] = "slow"

    def __init__(self, wanted: int) -> None:
        self.received = 0
        self.wanted = wanted
        self.enough = asyncio.Event()
        self.observe: Callable[[], None] = lambda: None

    def create_writer(self, ctx: ConnectorContext) -> SinkWriter:
        sink = self

        class Writer(SinkWriter):
            async def write(self, batch: list[Any]) -> None:
                await asyncio.sleep(0.002)  # slow work, not a timing assertion
                sink.received += len(batch)
                sink.observe()
                if sink.received >= sink.wanted:
                    sink.enough.set()

        return Writer()


def _job(sink: SlowSink, overflow: Overflow = Overflow.BUFFER) -> Job:
    graph = (
        StreamGraph.builder("fast-into-slow")
        .add_source("gen", Connectors.datagen(), parallelism=1)
        .add_operator("pad", Operators.map(lambda r: {**r, "pad": "x" * 200}))
        .add_sink("slow", sink, parallelism=2)
        .connect("gen", "pad")
        .connect("pad", "slow", overflow=overflow)
        .build()
    )
    return Job(graph.to_job_graph(), config=JobConfig(batch_size=100))


def test_source_pauses_and_memory_stays_bounded() -> None:
    sink = SlowSink(wanted=3_000)
    job = _job(sink)
    settings = ExecutorSettings(channel_capacity=4, batch_size=100)

    async def scenario() -> tuple[int, int, int, int]:
        with LocalExecutor(settings) as executor:
            samples: list[int] = []

            def observe() -> None:  # records between source and sink, at every write
                produced = executor.snapshot(job.job_id).metrics.step("gen").records_out
                samples.append(produced - sink.received)

            sink.observe = observe
            tracemalloc.start()
            task = asyncio.create_task(executor.execute(job))
            await sink.enough.wait()
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            await executor.stop(job.job_id)
            result = await task
            assert result.status.value == "CANCELLED"
            return max(samples), peak, sink.received, int(result.metrics.backpressure_seconds)

    in_flight, peak, received, _ = asyncio.run(scenario())
    # Two sink subtasks with 4-batch inboxes, plus the batch each stage holds:
    # never more than ~13 batches of 100 records between source and sink.
    assert in_flight <= 13 * 100
    assert received >= 3_000  # 30 batches: the source was held back over and over
    assert peak < 20 * 1024 * 1024


def test_drop_strategy_keeps_the_source_running_and_counts_drops() -> None:
    sink = SlowSink(wanted=2_000)
    job = _job(sink, Overflow.DROP)
    settings = ExecutorSettings(channel_capacity=2, batch_size=100)

    async def scenario() -> tuple[int, int, int]:
        with LocalExecutor(settings) as executor:
            task = asyncio.create_task(executor.execute(job))
            await sink.enough.wait()
            await executor.stop(job.job_id)
            result = await task
            produced = result.metrics.step("pad").records_out
            return produced, result.metrics.dropped_records, sink.received

    produced, dropped, received = asyncio.run(scenario())
    assert dropped > 0
    # The source did not wait for the sink: with BUFFER it would have produced only
    # what the sink took plus two channels' worth (2 x 2 x 100).
    assert produced > received * 3
    # Nothing vanished unaccounted: delivered + dropped + still in flight = produced.
    assert produced - received - dropped <= 2 * 2 * 100 + 2 * 100
