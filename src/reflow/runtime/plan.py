"""From a Job to runnable subtasks: the plan of one execution and ``build_subtask``.

``make_plan`` resolves, once per execution, what every subtask shares:
connectors (a wrong option fails here, before any I/O), the dead-letter
output, the state backend, the restore plan, and the inboxes -- made on
demand by an ``InboxFactory``, so the local executor gives every subtask a
local ``Channel`` while a Ray actor gives its own subtask a ``Channel`` and
the others' inboxes as remote proxies. ``build_subtask(plan, vertex, index)``
then builds one subtask: its fused chain, its routers, its restored state.
Both executors use these two functions; neither subclasses the other.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from reflow.checkpoint.coordinator import CheckpointCoordinator
from reflow.checkpoint.restore import RestorePlan
from reflow.checkpoint.storage import CheckpointData
from reflow.connectors.base import ConnectorContext, SinkWriter, read_all
from reflow.connectors.registry import resolve_sink, resolve_source
from reflow.errors import ExecutionError
from reflow.eventtime.clock import Clock
from reflow.graph.job import ErrorMode, ErrorPolicy, Job, JobConfig
from reflow.graph.job_graph import JobEdge, JobGraph, JobVertex
from reflow.graph.partitioning import Partitioning, same_key_selector
from reflow.graph.stream_graph import NodeKind
from reflow.operators.base import OperatorContext, OperatorSpec
from reflow.runtime.base import (
    ExecutionPart,
    ExecutionSnapshot,
    ExecutorSettings,
    SubtaskState,
    watermark_or_none,
)
from reflow.runtime.channel import Channel
from reflow.runtime.error_policy import DeadLetterOutput, RecordErrorHandler
from reflow.runtime.loops import BLOCKED_AFTER_S, LoopWatch, await_in_loop
from reflow.runtime.metrics import StepCounters, StepMetrics
from reflow.runtime.task import Router, Stage, Subtask
from reflow.state.backend import StateBackend, create_backend

__all__ = ["Execution", "InboxFactory", "Plan", "build_subtask", "make_plan", "probe_connectors"]


class InboxFactory(Protocol):
    def __call__(self, vertex: JobVertex, index: int, capacity: int, senders: int) -> Any:
        """The inbox of subtask ``index`` of ``vertex`` (a Channel or a proxy of one)."""
        ...


def local_inbox(vertex: JobVertex, index: int, capacity: int, senders: int) -> Channel:
    return Channel(f"{vertex.head.step_id}#{index}", capacity, senders)


@dataclass
class Plan:
    """What building the subtasks of one execution needs, resolved once."""

    job: Job
    settings: ExecutorSettings
    batch_size: int
    io_pool: ThreadPoolExecutor
    compute_pool: ThreadPoolExecutor
    sources: dict[str, Any]
    sinks: dict[str, Any]
    restore: RestorePlan
    inbox_factory: InboxFactory
    gate: asyncio.Event
    dead_letters: DeadLetterOutput | None = None
    state: StateBackend | None = None
    bounded: bool = True
    inboxes: dict[tuple[int, int], Any] = field(default_factory=dict)
    channels: list[Channel] = field(default_factory=list)
    """The local channels made so far (their statistics are the execution's)."""

    def inbox(self, vertex_id: int, index: int) -> Any:
        key = (vertex_id, index)
        inbox = self.inboxes.get(key)
        if inbox is None:
            graph = self.job.job_graph
            vertex = graph.vertex(vertex_id)
            senders = sum(
                1
                if edge.partitioning is Partitioning.FORWARD
                else graph.vertex(edge.source_vertex).parallelism
                for edge in vertex.inputs
            )
            default = self.job.config.channel_capacity or self.settings.channel_capacity
            capacity = min(
                (e.capacity for e in vertex.inputs if e.capacity is not None),
                default=_buffered_capacity(
                    graph, vertex, self.job.config, self.batch_size, default
                ),
            )
            inbox = self.inboxes[key] = self.inbox_factory(vertex, index, capacity, senders)
            if isinstance(inbox, Channel):
                self.channels.append(inbox)
        return inbox


def make_plan(
    job: Job,
    settings: ExecutorSettings,
    pools: tuple[ThreadPoolExecutor, ThreadPoolExecutor],
    restore: CheckpointData | None = None,
    inbox_factory: InboxFactory = local_inbox,
) -> Plan:
    """Resolve the job's connectors, dead-letter output and state backend.

    Raises:
        ReflowError: a connector's options are wrong (before any I/O).
    """
    graph = job.job_graph
    io_pool, compute_pool = pools
    batch_size = job.config.batch_size or settings.batch_size
    policy = job.config.error_policy
    sources = {
        n.step_id: resolve_source(n.payload)
        for v in graph.vertices
        for n in v.chained_nodes
        if n.kind is NodeKind.SOURCE
    }
    sinks = {
        n.step_id: resolve_sink(n.payload)
        for v in graph.vertices
        for n in v.chained_nodes
        if n.kind is NodeKind.SINK
    }
    plan = Plan(
        job,
        settings,
        batch_size,
        io_pool,
        compute_pool,
        sources,
        sinks,
        RestorePlan(restore),
        inbox_factory,
        asyncio.Event(),
        bounded=all(
            sources[n.step_id].bounded if n.traits.bounded is None else n.traits.bounded
            for n in graph.stream_graph.sources
        ),
    )
    plan.gate.set()
    steps = [n.step_id for n in graph.stream_graph.nodes]
    steps += [e.exchange for e in graph.edges if e.exchange is not None]  # key_by policies
    quality_steps = any(n.traits.operator_type == "quality" for n in graph.stream_graph.nodes)
    if policy.dead_letter is not None and (
        quality_steps or any(policy.mode_for(step) is ErrorMode.DEAD_LETTER for step in steps)
    ):
        dl_writer = resolve_sink(policy.dead_letter).create_writer(
            ConnectorContext(
                "dead-letter", 0, 1, job.job_id, batch_size, io_pool, clock=settings.clock
            )
        )
        plan.dead_letters = DeadLetterOutput(dl_writer, plan.restore.dead_letter_states())
    if any(n.traits.stateful for n in graph.stream_graph.nodes):
        plan.state = create_backend(
            settings.state_backend,
            path=settings.state_path,
            max_entries=settings.state_max_entries,
            block_cache_bytes=settings.state_block_cache_bytes,
        )
    return plan


def senders_of(graph: JobGraph, vertex: JobVertex, index: int) -> list[tuple[int, int]]:
    """The (edge id, upstream subtask) pairs that send to subtask ``index`` of ``vertex``."""
    return [
        (edge.edge_id, upstream)
        for edge in vertex.inputs
        for upstream in range(graph.vertex(edge.source_vertex).parallelism)
        if edge.partitioning is not Partitioning.FORWARD or upstream == index
    ]


def build_subtask(plan: Plan, vertex: JobVertex, index: int) -> Subtask:
    """Subtask ``index`` of ``vertex``: its readers, operators and writers made from
    the plan, its state taken over from the plan's restore, its routers to the
    inboxes downstream."""
    job = plan.job
    graph = job.job_graph
    policy = job.config.error_policy
    clock = plan.settings.clock
    stages: list[Stage] = []
    holder: list[Subtask] = []
    sink_restores: dict[int, list[Any]] = {}
    sink_adopts: dict[int, list[Any]] = {}
    reader = None
    source_position = None
    source_metrics = None
    handlers: dict[str, RecordErrorHandler] = {}
    for node in vertex.chained_nodes:
        metrics = StepMetrics(node.step_id, index, node.kind.value)
        handler = handlers[node.step_id] = RecordErrorHandler(
            job.job_id, node.step_id, policy.mode_for(node.step_id), metrics, plan.dead_letters
        )
        ctx = ConnectorContext(
            node.step_id,
            index,
            vertex.parallelism,
            job.job_id,
            plan.batch_size,
            plan.io_pool,
            handler,
            checkpointing=job.config.checkpoint is not None,
            events=metrics.connector_events,
            clock=clock,
        )
        if node.kind is NodeKind.SOURCE:
            reader = plan.sources[node.step_id].create_reader(ctx)
            source_metrics = metrics
            source_position = plan.restore.source_position(node.step_id, index, vertex.parallelism)
            if source_position is not None:
                reader.restore(source_position)
            continue
        previous = plan.restore.states(node.step_id, index, vertex.parallelism)
        if node.kind is NodeKind.SINK:
            writer: SinkWriter = plan.sinks[node.step_id].create_writer(ctx)
            stages.append(Stage(metrics, writer=writer))
            # Each subtask's uncommitted earlier states, then its latest, in checkpoint
            # order (writers' restore is idempotent: committed ones are skipped).
            pending = [
                state
                for p in previous
                for state in (*p.get("sink_uncommitted", ()), p.get("sink"))
                if state is not None
            ]
            # After a rescale subtask 0 finishes every old subtask's commits; the
            # others only learn from the states what not to reuse.
            if pending and (
                index == 0 or not plan.restore.rescaled(node.step_id, vertex.parallelism)
            ):
                sink_restores[len(stages) - 1] = pending
            elif pending:
                sink_adopts[len(stages) - 1] = pending
            continue
        spec = node.payload
        if not isinstance(spec, OperatorSpec):
            raise ExecutionError(
                f"step {node.step_id!r}: {spec!r} is not an operator; "
                "use Operators.<name>(...) or subclass reflow.operators.Operator",
                step_id=node.step_id,
            )
        op_ctx = OperatorContext(
            node.step_id,
            index,
            vertex.parallelism,
            handler,
            job.job_id,
            clock=clock,
            state=plan.state,
            timestamp_of=vertex.timestamps_of(node.step_id),
            emit_side=_side_emitter(holder, metrics),
            load_source=_source_loader(job.job_id, plan.batch_size, plan.io_pool, clock),
            bounded_input=plan.bounded,
            dead_letter=RecordErrorHandler(
                job.job_id,
                node.step_id,
                ErrorMode.SKIP if plan.dead_letters is None else ErrorMode.DEAD_LETTER,
                metrics,
                plan.dead_letters,
            ),
            quality=metrics.quality,
        )
        logic = spec.build(op_ctx)
        if node is vertex.head and vertex.inputs:
            logic.keys_from_input = all(
                edge.partitioning is Partitioning.HASH
                and same_key_selector(edge.key_selector, node.traits.input_key_selector)
                for edge in vertex.inputs
            )
        stages.append(Stage(metrics, logic=logic))
        if previous:
            logic.restore_state([p.get("logic") for p in previous])
            plan.restore.restore_keyed(
                plan.state, node.step_id, index, vertex.parallelism, logic.partition_key
            )
    routers = [
        Router(
            edge,
            [plan.inbox(edge.target_vertex, i) for i in range(_parallelism(graph, edge))],
            index,
            (edge.edge_id, index),
            forwards_watermarks=edge.carries_watermarks,
            reject=_exchange_handler(edge, handlers, policy, job.job_id, plan.dead_letters),
        )
        for edge in vertex.outputs
    ]
    subtask = Subtask(
        job_id=job.job_id,
        vertex_name=vertex.vertex_name,
        index=index,
        stages=stages,
        routers=routers,
        inbox=plan.inbox(vertex.vertex_id, index) if vertex.inputs else None,
        reader=reader,
        source_metrics=source_metrics,
        dead_letters=plan.dead_letters,
        gate=plan.gate,
        compute_pool=plan.compute_pool,
        clock=clock,
        senders=list(senders_of(graph, vertex, index)),
    )
    holder.append(subtask)
    subtask.sink_restores = sink_restores
    subtask.sink_adopts = sink_adopts
    subtask.source_step = vertex.head.step_id if vertex.head.kind is NodeKind.SOURCE else None
    subtask.position = source_position  # until the reader is open: where it restarts
    subtask.state = plan.state
    return subtask


def _exchange_handler(
    edge: JobEdge,
    handlers: dict[str, RecordErrorHandler],
    policy: ErrorPolicy,
    job_id: str,
    dead_letters: DeadLetterOutput | None,
) -> RecordErrorHandler | None:
    """Who takes a record whose key the edge's router cannot compute: the policy of
    the ``key_by`` step the exchange was declared as (counted with the sending step),
    else the sending step's."""
    sender = handlers.get(edge.source_step)
    if edge.exchange is None or sender is None:
        return sender
    return RecordErrorHandler(
        job_id, edge.exchange, policy.mode_for(edge.exchange), sender.metrics, dead_letters
    )


def _parallelism(graph: JobGraph, edge: Any) -> int:
    return graph.vertex(edge.target_vertex).parallelism


def _buffered_capacity(
    graph: JobGraph, vertex: JobVertex, config: JobConfig, batch_size: int, default: int
) -> int:
    """Batches the inbox of ``vertex`` holds: seed §10.4's ``buffer.sinkBuffer`` into a
    vertex with a sink, ``buffer.sourceBuffer`` after a vertex with a source (records,
    rounded up to whole batches), else ``default``."""
    records: list[int] = []
    if config.sink_buffer is not None and any(
        n.kind is NodeKind.SINK for n in vertex.chained_nodes
    ):
        records.append(config.sink_buffer)
    if config.source_buffer is not None and any(
        n.kind is NodeKind.SOURCE
        for e in vertex.inputs
        for n in graph.vertex(e.source_vertex).chained_nodes
    ):
        records.append(config.source_buffer)
    if not records:
        return default
    return max(1, -(-min(records) // batch_size))


def _side_emitter(holder: list[Subtask], metrics: StepMetrics) -> Callable[[str, list[Any]], None]:
    def emit(tag: str, records: list[Any]) -> None:
        holder[0].emit_side(tag, records, metrics)

    return emit


def _source_loader(
    job_id: str, batch_size: int, io_pool: ThreadPoolExecutor, clock: Clock
) -> Callable[[Any], Awaitable[list[Any]]]:
    async def load(payload: Any) -> list[Any]:
        source = resolve_source(payload)
        reader = source.create_reader(
            ConnectorContext("lookup", 0, 1, job_id, batch_size, io_pool, clock=clock)
        )
        return await read_all(reader)

    return load


class Execution:
    """The live objects of one job's execution in this process (the whole job on the
    local executor; one subtask on a Ray actor)."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.plan: Plan | None = None
        self.subtasks: list[Subtask] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.started = time.perf_counter()
        self.finished: float | None = None
        self.cancelled = False
        self.coordinator: CheckpointCoordinator | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        """The loop the job runs on (its own thread's under ``reflow serve``)."""
        self.watch = LoopWatch(job.job_id, self._step_of)
        self.own_pools: list[ThreadPoolExecutor] = []
        """Thread pools of this job alone (seed §10.4 ``resources.threadPool``)."""

    @property
    def channels(self) -> list[Channel]:
        return [] if self.plan is None else self.plan.channels

    @property
    def state(self) -> StateBackend | None:
        return None if self.plan is None else self.plan.state

    @property
    def dead_letters(self) -> DeadLetterOutput | None:
        return None if self.plan is None else self.plan.dead_letters

    def close_own_pools(self) -> None:
        for pool in self.own_pools:
            # A thread stuck in a blocking call must not hold up the job's end.
            pool.shutdown(wait=False, cancel_futures=True)
        self.own_pools.clear()

    def _step_of(self, task: asyncio.Task[Any]) -> str | None:
        for candidate, subtask in zip(self.tasks, self.subtasks, strict=False):
            if candidate is task:
                return subtask.current_step
        return None

    def part(self) -> ExecutionPart:
        """The counters of this process's subtasks and channels now."""
        steps: list[StepCounters] = []
        states: list[SubtaskState] = []
        for subtask in list(self.subtasks):
            live = subtask.step_metrics
            steps.extend(StepCounters.of(m) for m in live)
            states.append(
                SubtaskState(
                    subtask.name,
                    live[-1].step_id if live else subtask.name,
                    subtask.index,
                    subtask.blocked_ns / 1e9,
                    watermark_or_none(subtask.watermark),
                    subtask.done,
                )
            )
        return ExecutionPart(
            tuple(steps), tuple(states), tuple(c.statistics() for c in list(self.channels))
        )

    def snapshot(self) -> ExecutionSnapshot:
        end = self.finished if self.finished is not None else time.perf_counter()
        blocked = self.watch.blocked
        return ExecutionSnapshot.assemble(
            self.job,
            [self.part()],
            running=self.finished is None,
            elapsed_seconds=end - self.started,
            checkpoints=None if self.coordinator is None else self.coordinator.stats,
            blocked=None if blocked is None else blocked.describe(),
        )

    async def probe_connectors(self, timeout_s: float) -> list[tuple[str, Any]]:
        """Each source's and sink's health, asked on the job's own loop; none while
        that loop is blocked (the executor's health says so)."""
        if self.watch.blocked is not None:
            return []
        try:
            return await asyncio.wait_for(
                await_in_loop(self.loop, probe_connectors(self.subtasks, timeout_s)),
                timeout_s + BLOCKED_AFTER_S,
            )
        except (TimeoutError, RuntimeError):  # blocked meanwhile, or the job ended
            return []


async def probe_connectors(subtasks: list[Subtask], timeout_s: float) -> list[tuple[str, Any]]:
    """Ask each source and sink of ``subtasks`` whether its system answers:
    (name, (connected, detail)), (name, None) when it cannot tell, or (name, reason)
    when it did not answer within ``timeout_s``."""
    probes: list[tuple[str, Any]] = []
    for subtask in subtasks:
        if subtask.reader is not None and subtask.source_step is not None:
            probes.append((f"source {subtask.source_step!r}", subtask.reader.health()))
        for stage in subtask.stages:
            if stage.writer is not None:
                probes.append((f"sink {stage.metrics.step_id!r}", stage.writer.health()))
    results = await asyncio.gather(
        *(asyncio.wait_for(p, timeout_s) for _, p in probes), return_exceptions=True
    )
    return [
        (name, f"no answer ({type(r).__name__})" if isinstance(r, BaseException) else r)
        for (name, _), r in zip(probes, results, strict=True)
    ]
