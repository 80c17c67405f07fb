"""One subtask: a source reader or an input channel, a fused operator chain, and outputs.

Inside the chain, a micro-batch goes from one operator's logic to the next by
plain function calls; nothing per record touches the event loop. At the end of
the chain, routers send the batch on each outgoing JobEdge by its
partitioning; a full downstream channel makes ``send`` wait, which stops this
subtask and, in turn, its own producers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from reflow.connectors.base import SinkWriter, SourceReader
from reflow.graph.job_graph import JobEdge
from reflow.graph.partitioning import MAX_KEY_GROUPS, Partitioning, key_group_table, stable_hash
from reflow.operators.base import OperatorLogic
from reflow.runtime.channel import END_OF_STREAM, Channel
from reflow.runtime.error_policy import DeadLetterOutput
from reflow.runtime.metrics import StepMetrics

__all__ = ["Router", "Stage", "Subtask"]

logger = logging.getLogger(__name__)

SYNC, ASYNC, BLOCKING, SINK = range(4)


class Stage:
    """One operator (or the sink) of a chain, with its counters."""

    __slots__ = ("logic", "metrics", "mode", "writer")

    def __init__(
        self,
        metrics: StepMetrics,
        logic: OperatorLogic | None = None,
        writer: SinkWriter | None = None,
    ) -> None:
        self.metrics = metrics
        self.logic = logic
        self.writer = writer
        if writer is not None:
            self.mode = SINK
        elif logic is not None and logic.is_async:
            self.mode = ASYNC
        elif logic is not None and logic.blocking:
            self.mode = BLOCKING
        else:
            self.mode = SYNC


class Router:
    """Sends a subtask's output batches over one JobEdge."""

    def __init__(self, edge: JobEdge, channels: list[Channel], subtask_index: int) -> None:
        self.edge = edge
        self.overflow = edge.overflow
        self.partitioning = edge.partitioning
        if edge.partitioning is Partitioning.FORWARD:
            self.targets = [channels[subtask_index]]
        else:
            self.targets = list(channels)
        self.key_selector: Callable[[Any], Any] | None = edge.key_selector
        self.table = key_group_table(len(channels))
        self.next_target = subtask_index % len(self.targets)

    async def send(self, batch: list[Any]) -> None:
        part = self.partitioning
        if part is Partitioning.FORWARD:
            await self.targets[0].send(batch, self.overflow)
        elif part is Partitioning.HASH:
            key = self.key_selector
            assert key is not None
            table = self.table
            buckets: list[list[Any]] = [[] for _ in self.targets]
            for record in batch:
                buckets[table[stable_hash(key(record)) % MAX_KEY_GROUPS]].append(record)
            for channel, bucket in zip(self.targets, buckets, strict=True):
                if bucket:
                    await channel.send(bucket, self.overflow)
        elif part is Partitioning.REBALANCE:
            target = self.next_target
            self.next_target = (target + 1) % len(self.targets)
            await self.targets[target].send(batch, self.overflow)
        else:  # BROADCAST: one list per target, records shared
            for channel in self.targets:
                await channel.send(list(batch), self.overflow)

    def close(self) -> None:
        for channel in self.targets:
            channel.close_sender()


class Subtask:
    """Runs one parallel instance of a JobVertex until its input ends."""

    def __init__(
        self,
        *,
        job_id: str,
        vertex_name: str,
        index: int,
        stages: list[Stage],
        routers: list[Router],
        inbox: Channel | None,
        reader: SourceReader | None,
        source_metrics: StepMetrics | None,
        dead_letters: DeadLetterOutput | None,
        gate: asyncio.Event,
        compute_pool: Executor | None,
    ) -> None:
        self.job_id = job_id
        self.name = f"{vertex_name}#{index}"
        self.index = index
        self.stages = stages
        self.routers = routers
        self.inbox = inbox
        self.reader = reader
        self.source_metrics = source_metrics
        self.dead_letters = dead_letters
        self.gate = gate
        self.compute_pool = compute_pool
        self.current_step: str | None = None

    async def _push(self, batch: list[Any], start: int = 0) -> None:
        stages = self.stages
        for position in range(start, len(stages)):
            stage = stages[position]
            metrics = stage.metrics
            self.current_step = metrics.step_id
            metrics.records_in += len(batch)
            metrics.batches += 1
            began = time.perf_counter_ns()
            mode = stage.mode
            if mode == SYNC:
                batch = stage.logic.process(batch)  # type: ignore[union-attr]
            elif mode == SINK:
                await stage.writer.write(batch)  # type: ignore[union-attr]
                metrics.processing_ns += time.perf_counter_ns() - began
                return
            elif mode == ASYNC:
                batch = await stage.logic.process_async(batch)  # type: ignore[union-attr]
            else:
                loop = asyncio.get_running_loop()
                batch = await loop.run_in_executor(
                    self.compute_pool,
                    stage.logic.process,  # type: ignore[union-attr]
                    batch,
                )
            metrics.processing_ns += time.perf_counter_ns() - began
            metrics.records_out += len(batch)
            if not batch:
                return
        for router in self.routers:
            self.current_step = router.edge.target_step
            await router.send(batch)

    async def _drain_dead_letters(self) -> None:
        if self.dead_letters is not None and self.dead_letters.pending:
            await self.dead_letters.drain()

    async def run(self) -> None:
        """Open, process until end of input, flush, and close (also on failure)."""
        try:
            for stage in self.stages:
                if stage.writer is not None:
                    self.current_step = stage.metrics.step_id
                    await stage.writer.open()
            if self.reader is not None:
                await self._run_source(self.reader)
            else:
                await self._run_inbox()
            await self._finish()
        finally:
            await self._close()

    async def _run_source(self, reader: SourceReader) -> None:
        metrics = self.source_metrics
        assert metrics is not None
        self.current_step = metrics.step_id
        await reader.open()
        gate = self.gate
        push = self._push
        while True:
            if not gate.is_set():
                await gate.wait()
            self.current_step = metrics.step_id
            batch = await reader.read_batch()
            if batch is None:
                return
            if batch:
                metrics.records_out += len(batch)
                metrics.batches += 1
                await push(batch)
            if self.dead_letters is not None and self.dead_letters.pending:
                await self.dead_letters.drain()

    async def _run_inbox(self) -> None:
        inbox = self.inbox
        assert inbox is not None
        push = self._push
        while True:
            batch = await inbox.receive()
            if batch is END_OF_STREAM:
                return
            await push(batch)
            if self.dead_letters is not None and self.dead_letters.pending:
                await self.dead_letters.drain()

    async def _finish(self) -> None:
        for position, stage in enumerate(self.stages):
            if stage.logic is not None:
                self.current_step = stage.metrics.step_id
                tail = stage.logic.finish()
                if tail:
                    stage.metrics.records_out += len(tail)
                    await self._push(tail, position + 1)
            elif stage.writer is not None:
                self.current_step = stage.metrics.step_id
                await stage.writer.flush()
        await self._drain_dead_letters()
        for router in self.routers:
            router.close()

    async def _close(self) -> None:
        if self.reader is not None:
            await _quietly(self.reader.close(), self.name)
        for stage in self.stages:
            if stage.logic is not None:
                try:
                    stage.logic.close()
                except Exception:
                    logger.exception(
                        "subtask %s: closing %s failed", self.name, stage.metrics.step_id
                    )
            if stage.writer is not None:
                await _quietly(stage.writer.close(), self.name)


async def _quietly(awaitable: Any, name: str) -> None:
    try:
        await awaitable
    except Exception:
        logger.exception("subtask %s: close failed", name)
