"""Seed §10.4's job-level ``resources:`` block: threadPool io/compute give the job its
own pools, buffer.sourceBuffer/sinkBuffer size the channels after sources and before
sinks, jvm.heap is the memory budget, and what has no CPython meaning says so."""

from __future__ import annotations

import asyncio
import io
import re
import threading
from pathlib import Path
from typing import Any, ClassVar

import pytest

from reflow import Flow, JobStatus
from reflow.cli import main
from reflow.config import load_job_text
from reflow.connectors.base import ConnectorContext, Sink, SinkWriter
from reflow.errors import ConfigError
from reflow.runtime import ExecutorSettings, LocalExecutor
from reflow.testing import TestingSource, memory_store, run_job

SEED_RESOURCES = """
job:
  name: resourced
  parallelism: 2
  chaining: false
  batch_size: 100
  resources:
    # the seed's §10.4 block as written
    jvm:
      heap: 4g
      metaspace: 512m
      gc: G1GC
    threadPool:
      io:
        coreSize: 20
        maxSize: 100
      compute:
        coreSize: 8
        maxSize: 16
    buffer:
      sourceBuffer: 1000
      sinkBuffer: 500
  source:
    connector: memory
    config: {collection: resources-in}
  operators:
    - {type: map, name: same}
  sink:
    connector: memory
    config: {collection: resources-out}
"""


def test_the_seeds_resources_block_loads_and_takes_effect_where_it_can() -> None:
    job = load_job_text(SEED_RESOURCES)
    config = job.config
    assert (config.io_threads, config.io_threads_started, config.compute_threads) == (100, 20, 16)
    assert (config.source_buffer, config.sink_buffer) == (1000, 500)
    assert job.metadata["memory"] == "4g"  # jvm.heap is the scheduler's memory budget
    notes = job.metadata["notes"]
    assert any("jvm.heap 4g is the job's memory budget" in n for n in notes)
    assert any("jvm.metaspace has no effect" in n and "CPython" in n for n in notes)
    assert any("jvm.gc has no effect" in n and "garbage collector" in n for n in notes)
    assert not any("buffer" in n for n in notes)  # both buffers have channels here


def test_validate_prints_what_of_the_block_has_no_effect(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(SEED_RESOURCES)
    memory_store["resources-in"] = []
    out = io.StringIO()
    assert main(["validate", str(path)], out=out) == 0
    text = out.getvalue()
    assert "note: resources.jvm.metaspace has no effect" in text
    assert "note: resources.jvm.gc has no effect" in text


def test_buffers_size_the_channels_after_sources_and_before_sinks() -> None:
    memory_store["resources-in"] = list(range(5_000))
    memory_store["resources-out"] = []
    job = load_job_text(SEED_RESOURCES)

    async def scenario() -> dict[str, int]:
        with LocalExecutor(ExecutorSettings()) as executor:
            result = await executor.execute(job)
            assert result.status is JobStatus.COMPLETED, result.error
            return {c.name: c.capacity for c in executor.snapshot(job.job_id).channels}

    capacities = asyncio.run(scenario())
    assert sorted(memory_store["resources-out"]) == list(range(5_000))
    # 1000 records after the source and 500 before the sink, in batches of 100.
    assert capacities == {"same#0": 10, "same#1": 10, "sink#0": 5, "sink#1": 5}


def test_a_buffer_without_a_channel_says_it_has_no_effect() -> None:
    chained = SEED_RESOURCES.replace("chaining: false", "chaining: true")
    notes = load_job_text(chained).metadata["notes"]
    assert any("buffer.sourceBuffer has no effect" in n for n in notes)
    assert any("buffer.sinkBuffer has no effect" in n for n in notes)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("memory: 2g\n    jvm: {heap: 4g}", "memory and jvm.heap both"),
        ("threadPool: {io: {coreSize: 8, maxSize: 4}}", "coreSize 8 is more than maxSize 4"),
        ("buffer: {sourceBuffer: 0}", "greater than 0"),
        ("jvm: {heapSize: 4g}", "heapSize"),
    ],
)
def test_wrong_resources_are_refused_at_their_line(block: str, message: str) -> None:
    text = SEED_RESOURCES.split("  resources:")[0] + "  resources:\n    " + block + "\n"
    text += SEED_RESOURCES.split("      sinkBuffer: 500\n")[1]
    with pytest.raises(ConfigError, match=message) as caught:
        load_job_text(text)
    assert re.match(r"<string>:[78]: job\.resources", str(caught.value))


class _ThreadNamesSink(Sink):
    """Records the name of the I/O thread each batch's blocking call ran on."""

    connector_type: ClassVar[str] = "thread-names"

    def __init__(self) -> None:
        self.names: list[str] = []

    def create_writer(self, ctx: ConnectorContext) -> SinkWriter:
        names = self.names

        class Writer(SinkWriter):
            async def write(self, batch: list[Any]) -> None:
                names.append(await ctx.run_blocking(lambda: threading.current_thread().name))

        return Writer()


def _compute_thread(x: int) -> str:
    return threading.current_thread().name


def test_thread_pools_of_the_job_are_its_own_bounded_and_closed_after_it() -> None:
    names_sink = _ThreadNamesSink()
    flow = Flow("pools", batch_size=50).resources(io_threads=2, compute_threads=2)
    flow.source(TestingSource(range(2_000))).map(
        _compute_thread, blocking=True, parallelism=3
    ).sink(names_sink)
    result = run_job(flow.to_job(job_id="pooled"))
    assert result.status is JobStatus.COMPLETED, result.error
    io_names = set(names_sink.names)
    assert io_names and all(n.startswith("reflow-io-pooled_") for n in io_names)
    assert len(io_names) <= 2

    # The map's output is its thread's name: the job's compute pool, at most 2 threads.
    compute = _ThreadNamesSink()
    flow = Flow("pools2", batch_size=50).resources(compute_threads=2)
    collected: list[str] = []

    def keep(name: str) -> str:
        collected.append(name)
        return name

    flow.source(TestingSource(range(2_000))).map(_compute_thread, blocking=True, parallelism=3).map(
        keep
    ).sink(compute)
    result = run_job(flow.to_job(job_id="computed"))
    assert result.status is JobStatus.COMPLETED, result.error
    assert len(collected) == 2_000
    used = set(collected)
    assert all(n.startswith("reflow-compute-computed_") for n in used)
    assert len(used) <= 2
    # without the setting the I/O calls run on the executor's shared pool
    assert all(n.startswith("reflow-io_") for n in compute.names)

    for thread in threading.enumerate():
        if thread.name.startswith(("reflow-io-pooled_", "reflow-compute-computed_")):
            thread.join(5)
            assert not thread.is_alive(), f"{thread.name} outlived its job"
