"""One subtask: a source reader or an input channel, a fused operator chain, and outputs.

Inside the chain, a micro-batch goes from one operator's logic to the next by
plain function calls; nothing per record touches the event loop. At the end of
the chain, routers send the batch on each outgoing JobEdge by its
partitioning; a full downstream channel makes ``send`` wait, which stops this
subtask and, in turn, its own producers.

Event time travels in-band: watermarks follow the data through the same
channels, a subtask's input watermark is the minimum over its senders (idle
ones excluded), and each operator sees ``on_watermark`` after every record
that preceded the watermark. A ticker on the injected clock drives
processing-time work and idle detection; a lock keeps its work and the data
path from interleaving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import operator
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Executor
from typing import Any
from zlib import crc32

from reflow.checkpoint.alignment import BarrierAligner
from reflow.checkpoint.barrier import Barrier, SenderFinished
from reflow.checkpoint.coordinator import CheckpointAcks, checkpoint_failure
from reflow.connectors.base import END_OF_INPUT, SinkWriter, SourceReader, rows_as_dicts
from reflow.errors import ExecutionError
from reflow.eventtime.clock import Clock
from reflow.eventtime.watermarks import MAX_WATERMARK, MIN_WATERMARK
from reflow.graph.job_graph import JobEdge
from reflow.graph.partitioning import MAX_KEY_GROUPS, Partitioning, key_group_table, stable_hash
from reflow.operators.base import KeyedBatch, OperatorLogic
from reflow.runtime.channel import END_OF_STREAM, Channel, Watermark
from reflow.runtime.error_policy import DeadLetterOutput
from reflow.runtime.metrics import StepMetrics
from reflow.state.backend import StateBackend

__all__ = ["Router", "Stage", "Subtask"]

logger = logging.getLogger(__name__)

SYNC, ASYNC, BLOCKING, SINK, SINK_OF_ROWS = range(5)
"""How a stage runs: an operator's ``process`` on the loop, awaited, or in the
compute pool; a sink given dicts for typed rows, or a sink that takes typed rows."""

# While its reader holds more records ready (a file's chunk, a backlog), a source
# advances event time once per this many records rather than after every batch:
# each watermark is a message every downstream subtask handles, and in a backlog
# they cost more than the records' own work (Nexmark Q5: 10,000 watermarks for
# 1M bids). Watermarks stay exact lower bounds; they only come less often, as in
# Flink's periodic emission, but counted in records so a run repeats exactly.
WATERMARK_EVERY_RECORDS = 1_000

# A source subtask gives the event loop a turn at least this often (seconds).
SOURCE_TURN_S = 0.01


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
            self.mode = SINK_OF_ROWS if writer.typed_rows else SINK
        elif logic is not None and logic.is_async:
            self.mode = ASYNC
        elif logic is not None and logic.blocking:
            self.mode = BLOCKING
        else:
            self.mode = SYNC


class Router:
    """Sends a subtask's output batches (and watermarks) over one JobEdge."""

    def __init__(
        self,
        edge: JobEdge,
        channels: list[Channel],
        subtask_index: int,
        sender: Hashable,
        forwards_watermarks: bool = True,
        reject: Callable[[Any, BaseException], None] | None = None,
    ) -> None:
        self.edge = edge
        self.sender = sender
        self.forwards_watermarks = forwards_watermarks
        """False when nothing downstream acts on watermarks: they are not sent."""
        self.overflow = edge.overflow
        self.partitioning = edge.partitioning
        if edge.partitioning is Partitioning.FORWARD:
            self.targets = [channels[subtask_index]]
        else:
            self.targets = list(channels)
        self.key_selector: Callable[[Any], Any] | None = edge.key_selector
        self.hands_over_keys = not isinstance(
            edge.key_selector, (operator.itemgetter, operator.attrgetter)
        )
        self.reject = reject
        """The error policy of the step whose key selector this edge runs."""
        self.table = key_group_table(len(channels))
        self.next_target = subtask_index % len(self.targets)

    async def send(self, batch: list[Any]) -> None:
        part = self.partitioning
        if part is Partitioning.FORWARD:
            await self.targets[0].send(batch, self.overflow, self.sender)
        elif part is Partitioning.HASH:
            if len(self.targets) == 1:
                await self.targets[0].send(batch, self.overflow, self.sender)
                return
            buckets = self._by_key(batch)
            for channel, bucket in zip(self.targets, buckets, strict=True):
                if bucket:
                    await channel.send(bucket, self.overflow, self.sender)
        elif part is Partitioning.REBALANCE:
            target = self.next_target
            self.next_target = (target + 1) % len(self.targets)
            await self.targets[target].send(batch, self.overflow, self.sender)
        else:  # BROADCAST: one list per target, records shared
            for channel in self.targets:
                await channel.send(list(batch), self.overflow, self.sender)

    def _by_key(self, batch: list[Any]) -> list[list[Any]]:
        """``batch`` split by key group into one bucket per target; a Python key
        selector's keys travel with the records (``KeyedBatch``) so the keyed step
        downstream does not run it again. A field getter (``itemgetter``) costs less
        to run again than its keys cost to hand over."""
        key = self.key_selector
        assert key is not None
        table = self.table
        hand_over = self.hands_over_keys
        buckets: list[list[Any]] = [KeyedBatch() if hand_over else [] for _ in self.targets]
        places = [bucket.append for bucket in buckets]
        keys = [bucket.keys.append for bucket in buckets] if hand_over else None  # type: ignore[attr-defined]
        for record in batch:
            try:  # a record without its key goes to the error policy
                k = key(record)
                # stable_hash, inlined for the common key types (same values).
                if type(k) is int:
                    h = ((k * 2654435761) & 0xFFFFFFFF) >> 16
                elif type(k) is str:
                    h = crc32(k.encode())
                else:
                    h = stable_hash(k)
            except Exception as exc:
                if self.reject is None:
                    raise
                self.reject(record, exc)
                continue
            target = table[h % MAX_KEY_GROUPS]
            places[target](record)
            if keys is not None:
                keys[target](k)
        return buckets

    def send_watermark(self, value: int | None) -> None:
        if self.forwards_watermarks:
            for channel in self.targets:
                channel.send_control(Watermark(self.sender, value))

    def send_barrier(self, checkpoint_id: int) -> None:
        for channel in self.targets:
            channel.send_control(Barrier(self.sender, checkpoint_id))

    def close(self) -> None:
        for channel in self.targets:
            channel.send_control(SenderFinished(self.sender))
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
        clock: Clock,
        senders: list[Hashable] | None = None,
    ) -> None:
        self.job_id = job_id
        self.name = f"{vertex_name}#{index}"
        self.index = index
        self.stages = stages
        self.routers = [r for r in routers if r.edge.side_output is None]
        self.side_routers: dict[str, list[Router]] = {}
        for router in routers:
            if router.edge.side_output is not None:
                self.side_routers.setdefault(router.edge.side_output, []).append(router)
        self.side_buffer: dict[str, list[Any]] = {}
        self.inbox = inbox
        self.reader = reader
        self.source_metrics = source_metrics
        self.dead_letters = dead_letters
        self.gate = gate
        self.compute_pool = compute_pool
        self.clock = clock
        self.current_step: str | None = None
        self.watermark = MIN_WATERMARK
        """The event time this subtask's output has reached (its routers' last watermark)."""
        self.input_watermark = MIN_WATERMARK
        """With an assigner in the chain: the inputs' watermark, which only the stages
        before the assigner see (the assigner makes the output's own)."""
        self.sender_watermarks: dict[Hashable, int] = dict.fromkeys(senders or (), MIN_WATERMARK)
        self.idle_senders: set[Hashable] = set()
        self.generator = next(
            (
                i
                for i, s in enumerate(stages)
                if s.logic is not None and s.logic.generates_watermarks
            ),
            None,
        )
        ticks = [s.logic.tick_interval_ms for s in stages if s.logic and s.logic.tick_interval_ms]
        self.tick_ms = min(ticks) if ticks else None
        self.lock = asyncio.Lock()
        self.unmarked = 0
        """Records read since event time last advanced (see ``WATERMARK_EVERY_RECORDS``)."""
        self.late_dropped = 0
        self.marked_idle = False
        # Checkpointing: set by the executor when the job takes checkpoints.
        self.acks: CheckpointAcks | None = None
        self.state: StateBackend | None = None
        self.source_step: str | None = None
        self.position: Any = None
        self.sink_restores: dict[int, list[Any]] = {}
        self.sink_adopts: dict[int, list[Any]] = {}
        self.uncommitted: dict[int, dict[int, Any]] = {}
        """Per sink stage, the pre-committed states whose checkpoint has completed for
        all the sink knows: a completion notice can still be on its way when the next
        checkpoint is taken (or be lost with a failure), so each checkpoint stores the
        states before it that were not committed yet, and a restore commits them all."""
        self.aligner = BarrierAligner(senders or ())
        self.finished = False
        self.reader_closed_by_executor = False
        """True: after a normal end the reader stays open until the executor has made
        the final commit (``END_OF_INPUT``) once the whole job finished, then closes it."""
        self.done = False
        """True once ``_finish`` completed: everything was sent, the routers closed."""
        self.last_snapshot_id = -1
        self.writers_closed_by_executor = False
        """True: at the end of input the sinks are neither flushed nor closed here; the
        executor flushes them once the whole job finished (the final commit) and closes
        them. Until then, checkpoints taken after this subtask finished pre-commit
        and commit what they hold, so a restore never writes their records twice."""
        self.blocked_done_ns = 0
        """Time of the finished waits to hand batches downstream."""
        self.blocked_since_ns = 0
        """perf_counter_ns at which the wait in progress began; 0 when not waiting."""

    @property
    def step_metrics(self) -> list[StepMetrics]:
        """The live counters of the steps of this subtask's chain, in chain order."""
        head = [] if self.source_metrics is None else [self.source_metrics]
        return head + [stage.metrics for stage in self.stages]

    @property
    def blocked_ns(self) -> int:
        """Time this subtask waited to hand batches downstream (backpressure), the
        wait in progress included: monotonic, never jumps when a long wait ends."""
        since = self.blocked_since_ns
        if since:
            return self.blocked_done_ns + time.perf_counter_ns() - since
        return self.blocked_done_ns

    # -- side outputs --------------------------------------------------------------------

    def emit_side(self, tag: str, records: list[Any], metrics: StepMetrics | None = None) -> None:
        """Collect records for side output ``tag``; sent after the current step."""
        if metrics is not None and tag == "late":
            metrics.late += len(records)
        self.side_buffer.setdefault(tag, []).extend(records)

    async def _flush_side(self) -> None:
        if not self.side_buffer:
            return
        buffered, self.side_buffer = self.side_buffer, {}
        for tag, records in buffered.items():
            routers = self.side_routers.get(tag)
            if not routers:
                self.late_dropped += len(records)
                logger.warning(
                    "job %s subtask %s: %d records for side output %r, which is not connected; "
                    "connect it (stream.late().sink(...)) to keep them",
                    self.job_id,
                    self.name,
                    len(records),
                    tag,
                )
                continue
            for router in routers:
                await router.send(records)

    # -- checkpoints --------------------------------------------------------------------

    @property
    def is_source(self) -> bool:
        return self.reader is not None

    async def inject_barrier(self, checkpoint_id: int) -> None:
        """(Source subtasks) take a snapshot between two batches and send the barrier on.

        A subtask that has finished acknowledges with its final state instead; one
        still finishing does so when done (``acks.pending_for``)."""
        async with self.lock:
            if self.done:
                await self.snapshot_finished(checkpoint_id)
            elif not self.finished:
                await self._checkpoint(checkpoint_id)

    async def acknowledge_finished(self, checkpoint_id: int) -> None:
        """(Done) acknowledge ``checkpoint_id`` with the final state."""
        async with self.lock:
            await self.snapshot_finished(checkpoint_id)

    async def snapshot_finished(self, checkpoint_id: int) -> None:
        """(Finished subtasks, lock held) acknowledge ``checkpoint_id`` with the final
        state: the source's end position, the operators' state after the end of input
        and what the sinks hold uncommitted. Once per checkpoint."""
        if checkpoint_id > self.last_snapshot_id:
            await self._checkpoint(checkpoint_id, send_barriers=False)

    async def _checkpoint(
        self, checkpoint_id: int, alignment_s: float = 0.0, send_barriers: bool = True
    ) -> None:
        self.last_snapshot_id = checkpoint_id
        states: dict[tuple[str, int], dict[str, Any]] = {}
        if self.source_step is not None:
            states[(self.source_step, self.index)] = {"source": self.position}
            if self.reader is not None and send_barriers:
                self.reader.on_checkpoint(checkpoint_id)
        previous = self.current_step
        try:
            for position, stage in enumerate(self.stages):
                step = self.current_step = stage.metrics.step_id
                entry: dict[str, Any] = {}
                if stage.logic is not None:
                    entry["logic"] = stage.logic.snapshot_state()
                    if self.state is not None:
                        entry["keyed"] = self.state.snapshot_scope(step, self.index)
                if stage.writer is not None:
                    entry["sink"] = await stage.writer.pre_commit(checkpoint_id)
                    pending = self.uncommitted.setdefault(position, {})
                    if pending:
                        entry["sink_uncommitted"] = [pending[c] for c in sorted(pending)]
                    if entry["sink"] is not None:
                        pending[checkpoint_id] = entry["sink"]
                states[(step, self.index)] = entry
            if self.dead_letters is not None:
                self.current_step = "dead-letter"
                written = await self.dead_letters.pre_commit(checkpoint_id)
                if written is not None and states:
                    states[next(reversed(states))]["dead_letters"] = written
        except ExecutionError:
            raise
        except Exception as exc:  # a sink that could not flush or stage: name where
            raise checkpoint_failure(
                checkpoint_id, self.current_step, self.name, exc, commit=False
            ) from exc
        self.current_step = previous
        assert self.acks is not None
        self.acks.acknowledge(checkpoint_id, self.name, states, alignment_s)
        if not send_barriers:
            return
        for router in self.routers:
            router.send_barrier(checkpoint_id)
        for routers in self.side_routers.values():
            for router in routers:
                router.send_barrier(checkpoint_id)

    async def notify_complete(self, checkpoint_id: int) -> None:
        """Checkpoint ``checkpoint_id`` is persisted: sinks commit what they pre-committed."""
        async with self.lock:
            if self.reader is not None:
                await self.reader.notify_checkpoint_complete(checkpoint_id)
            for position, stage in enumerate(self.stages):
                if stage.writer is not None:
                    self.current_step = stage.metrics.step_id
                    await stage.writer.commit(checkpoint_id)
                    pending = self.uncommitted.get(position, {})
                    for committed in [c for c in pending if c <= checkpoint_id]:
                        del pending[committed]

    async def _aligned(self, aligned: tuple[int, float] | None) -> None:
        """Every awaited barrier of a checkpoint arrived: snapshot, then replay what
        the alignment held back."""
        if aligned is not None:
            await self._checkpoint(*aligned)
            self.aligner.release()

    # -- data path ----------------------------------------------------------------------

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
            elif mode == SINK_OF_ROWS:
                await stage.writer.write(batch)  # type: ignore[union-attr]
                metrics.processing_ns += time.perf_counter_ns() - began
                return
            elif mode == SINK:
                await stage.writer.write(rows_as_dicts(batch))  # type: ignore[union-attr]
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
                break
        else:
            # Time in send() is time blocked on full channels (backpressure), plus a
            # negligible enqueue cost. The wait in progress counts as it goes, so a
            # subtask blocked for minutes reads as blocked at every scrape.
            began = self.blocked_since_ns = time.perf_counter_ns()
            try:
                for router in self.routers:
                    self.current_step = router.edge.target_step
                    await router.send(batch)
            finally:
                self.blocked_since_ns = 0
                self.blocked_done_ns += time.perf_counter_ns() - began
        if self.side_buffer:
            await self._flush_side()

    async def _emit_watermark(self, watermark: int, start: int, force: bool = False) -> None:
        """Advance event time to ``watermark`` from stage ``start`` on, then downstream."""
        stages = self.stages
        for position in range(start, len(stages)):
            logic = stages[position].logic
            if logic is None:
                continue
            if logic.generates_watermarks and not force:
                return  # an assigner further down makes its own watermarks
            self.current_step = stages[position].metrics.step_id
            fired = logic.on_watermark(watermark)
            if fired:
                stages[position].metrics.records_out += len(fired)
                await self._push(fired, position + 1)
        await self._flush_side()
        for router in self.routers:
            router.send_watermark(watermark)
        for routers in self.side_routers.values():
            for router in routers:
                router.send_watermark(watermark)

    async def _check_generator(self) -> None:
        if self.generator is None:
            return
        logic = self.stages[self.generator].logic
        assert logic is not None
        if logic.is_idle != self.marked_idle:
            self.marked_idle = logic.is_idle
            for router in self.routers:
                router.send_watermark(None if logic.is_idle else self.watermark)
        generated = logic.current_watermark()
        if generated is not None and generated > self.watermark:
            if self.unmarked < WATERMARK_EVERY_RECORDS and self.reader_backlogged():
                return  # more records are ready at once: advance event time after them
            self.unmarked = 0
            self.watermark = generated
            await self._emit_watermark(generated, self.generator + 1)

    async def _on_watermark_message(self, message: Watermark) -> None:
        if message.value is None:
            self.idle_senders.add(message.sender)
        else:
            self.idle_senders.discard(message.sender)
            previous = self.sender_watermarks.get(message.sender, MIN_WATERMARK)
            self.sender_watermarks[message.sender] = max(previous, message.value)
        active = [w for s, w in self.sender_watermarks.items() if s not in self.idle_senders]
        if not active:
            return
        combined = min(active)
        if self.generator is not None:
            # An assigner further down makes the output's watermark: the inputs' advance
            # the stages before it only. Taken as the output's, an input ahead of the
            # assigner held back every watermark it made, and the end's final one.
            if combined > self.input_watermark:
                self.input_watermark = combined
                await self._emit_watermark(combined, 0)
            return
        if combined > self.watermark:
            self.watermark = combined
            await self._emit_watermark(combined, 0)

    async def _tick(self) -> None:
        now = self.clock.now_ms()
        for position, stage in enumerate(self.stages):
            if stage.logic is not None and stage.logic.tick_interval_ms:
                self.current_step = stage.metrics.step_id
                fired = stage.logic.on_tick(now)
                if fired:
                    stage.metrics.records_out += len(fired)
                    await self._push(fired, position + 1)
        await self._check_generator()

    async def _ticker(self, interval_ms: int) -> None:
        while True:
            await self.clock.sleep(interval_ms / 1000)
            async with self.lock:
                await self._tick()

    def reader_backlogged(self) -> bool:
        return self.reader is not None and self.reader.backlogged()

    async def _process(self, batch: list[Any]) -> None:
        """One input batch: through the chain, then watermarks and dead letters."""
        await self._push(batch)
        if self.generator is not None:
            self.unmarked += len(batch)
            await self._check_generator()
        if self.dead_letters is not None and self.dead_letters.pending:
            await self.dead_letters.drain()

    async def _drain_dead_letters(self) -> None:
        if self.dead_letters is not None and self.dead_letters.pending:
            await self.dead_letters.drain()

    async def run(self) -> None:
        """Open, process until end of input, flush, and close (also on failure)."""
        ticker: asyncio.Task[None] | None = None
        try:
            # Under the lock: a checkpoint the coordinator triggers meanwhile (a
            # barrier at a source, a completion notice) waits until the sinks are
            # open and restored and the reader is open at its position, rather than
            # pre-committing or committing through a writer whose connection is
            # still being made, or storing a source position not yet known. One
            # section: a barrier queued on the lock gets it when it is released.
            async with self.lock:
                for position, stage in enumerate(self.stages):
                    if stage.writer is not None:
                        self.current_step = stage.metrics.step_id
                        await stage.writer.open()
                        if position in self.sink_restores:
                            await stage.writer.restore(self.sink_restores.pop(position))
                        if position in self.sink_adopts:
                            await stage.writer.adopt(self.sink_adopts.pop(position))
                if self.reader is not None:
                    assert self.source_metrics is not None
                    self.current_step = self.source_metrics.step_id
                    await self.reader.open()
                    if self.acks is not None:
                        self.position = self.reader.snapshot()
            if self.tick_ms:
                ticker = asyncio.create_task(self._ticker(self.tick_ms))
            if self.reader is not None:
                await self._run_source(self.reader)
            else:
                await self._run_inbox()
            if ticker is not None:
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker
                ticker = None
            await self._finish()
        finally:
            if ticker is not None:
                ticker.cancel()
            await self._close()

    async def _run_source(self, reader: SourceReader) -> None:
        metrics = self.source_metrics
        assert metrics is not None
        self.current_step = metrics.step_id
        checkpointing = self.acks is not None  # the reader is open (``run``)
        gate = self.gate
        lock = self.lock
        generator = None if self.generator is None else self.stages[self.generator].logic
        clock = self.clock
        perf_counter = time.perf_counter
        turned = perf_counter()
        while True:
            if not gate.is_set():
                await gate.wait()
            if perf_counter() - turned > SOURCE_TURN_S:
                # A reader with records ready and a chain that waits on nothing never
                # suspend: let checkpoints, timers and the API have the loop.
                await asyncio.sleep(0)
                turned = perf_counter()
            self.current_step = metrics.step_id
            if generator is not None:
                generator.input_waiting_since = clock.now_ms()
                batch = await reader.read_batch()
                generator.input_waiting_since = None
            else:
                batch = await reader.read_batch()
            if batch is None:
                return
            async with lock:
                if batch:
                    metrics.records_out += len(batch)
                    metrics.batches += 1
                    await self._process(batch)
                if checkpointing:
                    self.position = reader.snapshot()

    async def _run_inbox(self) -> None:
        inbox = self.inbox
        assert inbox is not None
        lock = self.lock
        generator = None if self.generator is None else self.stages[self.generator].logic
        clock = self.clock
        aligner = self.aligner
        replay = aligner.replay
        while True:
            if replay:
                item = replay.popleft()
            elif generator is not None:
                generator.input_waiting_since = clock.now_ms()
                item = await inbox.receive()
                generator.input_waiting_since = None
            else:
                item = await inbox.receive()
            if item is END_OF_STREAM:
                if aligner.held:  # a checkpoint that cannot complete: process what it held
                    aligner.release()
                    continue
                return
            async with lock:
                if type(item) is tuple:
                    if aligner.aligning is not None and item[0] in aligner.blocked:
                        aligner.held.append(item)
                        continue
                    await self._process(item[1])
                elif aligner.holds(item.sender):
                    aligner.held.append(item)
                elif isinstance(item, Watermark):
                    await self._on_watermark_message(item)
                elif isinstance(item, SenderFinished):
                    await self._aligned(aligner.on_sender_finished(item.sender))
                else:
                    await self._aligned(aligner.on_barrier(item))

    async def _finish(self) -> None:
        # Under the lock, as a batch is: a checkpoint that began before the end
        # (inject_barrier, awaiting its sinks' pre-commit) must not see the final
        # window firings reach a sink mid-snapshot (they would go into a part file
        # already being closed and be lost).
        async with self.lock:
            self.finished = True
            if self.reader is not None:
                self.reader.on_checkpoint(END_OF_INPUT)  # what it read belongs to the final commit
            # End of input: event time jumps to the end, so every window fires.
            if self.watermark < MAX_WATERMARK:
                self.watermark = MAX_WATERMARK
                await self._emit_watermark(MAX_WATERMARK, 0, force=True)
            for position, stage in enumerate(self.stages):
                if stage.logic is not None:
                    self.current_step = stage.metrics.step_id
                    tail = stage.logic.finish()
                    if tail:
                        stage.metrics.records_out += len(tail)
                        await self._push(tail, position + 1)
                elif stage.writer is not None and not self.writers_closed_by_executor:
                    self.current_step = stage.metrics.step_id
                    await stage.writer.flush()
            await self._flush_side()
            await self._drain_dead_letters()
            for router in self.routers:
                router.close()
            for routers in self.side_routers.values():
                for router in routers:
                    router.close()
            self.done = True
            # Checkpoints in progress whose barriers it will never see now: it
            # acknowledges them with its final state.
            while self.acks is not None and (
                ids := [i for i in self.acks.pending_for(self.name) if i > self.last_snapshot_id]
            ):
                await self.snapshot_finished(ids[0])

    async def _close(self) -> None:
        if self.reader is not None and not (self.finished and self.reader_closed_by_executor):
            await _quietly(self.reader.close(), self.name)
        for stage in self.stages:
            if stage.logic is not None:
                try:
                    stage.logic.close()
                except Exception:
                    logger.exception(
                        "subtask %s: closing %s failed", self.name, stage.metrics.step_id
                    )
            if stage.writer is not None and not self.writers_closed_by_executor:
                # Not while a completion notice is committing through the writer.
                async with self.lock:
                    await _quietly(stage.writer.close(), self.name)


async def _quietly(awaitable: Any, name: str) -> None:
    try:
        await awaitable
    except Exception:
        logger.exception("subtask %s: close failed", name)
