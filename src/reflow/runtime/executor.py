"""The local executor: runs a Job's JobGraph as asyncio subtasks in this process (seed §3.5).

Each JobVertex runs as ``parallelism`` subtasks; every subtask of a vertex
with inputs has one bounded inbox channel. Blocking work goes to two bounded
thread pools (seed §6.1 ``executor.threadPool``, §10.4 io/compute). The
subtasks only meet through ``Channel`` objects, so a distributed executor can
run the same subtasks in other processes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from reflow.checkpoint.storage import CheckpointData, CheckpointError, open_storage
from reflow.connectors.base import DEFAULT_BATCH_SIZE, END_OF_INPUT, ConnectorContext, SinkWriter
from reflow.connectors.registry import resolve_sink, resolve_source
from reflow.errors import ExecutionError, JobFailedError, ReflowError
from reflow.eventtime.clock import Clock, SystemClock
from reflow.graph.job import ErrorMode, Job, JobConfig, JobStatus
from reflow.graph.job_graph import JobGraph, JobVertex
from reflow.graph.partitioning import MAX_KEY_GROUPS, Partitioning, key_group_table, stable_hash
from reflow.graph.stream_graph import NodeKind, StreamGraph
from reflow.operators.base import OperatorContext, OperatorSpec
from reflow.runtime.channel import Channel
from reflow.runtime.checkpointing import CheckpointCoordinator, CheckpointStats
from reflow.runtime.error_policy import DeadLetterOutput, RecordErrorHandler
from reflow.runtime.loops import BLOCKED_AFTER_S, Blocked, LoopWatch, await_in_loop, call_in_loop
from reflow.runtime.metrics import ExecutionMetrics, StepMetrics
from reflow.runtime.task import Router, Stage, Subtask
from reflow.state.backend import DEFAULT_MAX_ENTRIES, ScopeSnapshot, StateBackend, create_backend

__all__ = [
    "ExecutorSettings",
    "JobResult",
    "JobRunner",
    "LocalExecutor",
    "execute_with_recovery",
]

logger = logging.getLogger(__name__)

# Batches a channel holds before its producers wait: with ~500-record batches
# this keeps a few thousand records in flight per edge, enough to ride out
# jitter, little enough to bound memory.
DEFAULT_CHANNEL_CAPACITY = 8
# Ended executions kept for metrics and the API after they finish.
RETAINED_EXECUTIONS = 50


@dataclass(frozen=True, slots=True)
class ExecutorSettings:
    """Executor settings; the system config's ``executor`` and ``state`` sections map onto these."""

    parallelism: int = 1
    batch_size: int = DEFAULT_BATCH_SIZE
    channel_capacity: int = DEFAULT_CHANNEL_CAPACITY
    io_threads: int = 16
    compute_threads: int = 4
    clock: Clock = field(default_factory=SystemClock)
    state_backend: str = "memory"
    """memory or rocksdb (seed §6.1 ``state.backend``)."""
    state_path: str | None = None
    """Folder of RocksDB state; None uses a temporary folder per job."""
    state_max_entries: int = DEFAULT_MAX_ENTRIES
    """Entries the memory backend may hold before it fails with a hint to use RocksDB."""
    state_block_cache_bytes: int | None = None
    """RocksDB's block cache (seed §6.1 ``state.rocksdb.blockCacheSize``)."""
    io_threads_started: int = 0
    """I/O threads started with the pool rather than on first use (``threadPool.coreSize``)."""


@dataclass(slots=True)
class JobResult:
    """The outcome of one execution (seed §3.5.3 ``JobResult``)."""

    job_id: str
    job_name: str
    status: JobStatus
    metrics: ExecutionMetrics
    start_time: datetime | None
    end_time: datetime | None
    error: str | None = None
    step_id: str | None = None
    exception: BaseException | None = field(default=None, repr=False)
    checkpoints: CheckpointStats | None = None
    restarts: int = 0
    earlier_attempts: list[tuple[int, int, float, str | None]] = field(default_factory=list)
    """(records read, records written, seconds, error) of each attempt before this one."""

    @property
    def duration_seconds(self) -> float:
        return self.metrics.elapsed_seconds

    def records_in(self, step_id: str) -> int:
        return self.metrics.step(step_id).records_in

    def records_out(self, step_id: str) -> int:
        return self.metrics.step(step_id).records_out

    @property
    def records_read(self) -> int:
        """Records the job's sources read."""
        return sum(s.records_out for s in self.metrics.steps if s.kind == "source")

    @property
    def records_written(self) -> int:
        """Records the job's sinks took."""
        return sum(s.records_in for s in self.metrics.steps if s.kind == "sink")

    def raise_for_status(self) -> JobResult:
        """Raise JobFailedError (naming the step and the cause) if the job FAILED;
        the result itself otherwise."""
        if self.status is JobStatus.FAILED:
            step = f" at step {self.step_id!r}" if self.step_id else ""
            raise JobFailedError(
                f"job {self.job_name!r} ({self.job_id}) failed{step}: {self.error}",
                result=self,
                step_id=self.step_id,
            ) from self.exception
        return self

    def summary(self) -> str:
        """The per-step table ``reflow run`` prints when a job ends."""
        m = self.metrics
        restarts = ""
        if self.restarts:
            restarts = f" after {self.restarts} restart{'s' if self.restarts > 1 else ''}"
        total_seconds = m.elapsed_seconds + sum(a[2] for a in self.earlier_attempts)
        lines = [
            f"Job {self.job_name!r} ({self.job_id}) {self.status.value} "
            f"in {total_seconds:.2f}s{restarts}",
            f"  {'step':<24} {'kind':<9} {'subtasks':>8} {'records in':>12} "
            f"{'records out':>12} {'rejected':>9}",
        ]
        for s in m.steps:
            rec_in = "-" if s.kind == "source" else f"{s.records_in:,}"
            rec_out = "-" if s.kind == "sink" else f"{s.records_out:,}"
            lines.append(
                f"  {s.step_id:<24} {s.kind:<9} {s.subtasks:>8} {rec_in:>12} {rec_out:>12} "
                f"{s.rejected:>9,}"
            )
        read, written = self.records_read, self.records_written
        rate = read / m.elapsed_seconds if m.elapsed_seconds > 0 else 0.0
        lines.append(f"  read {read:,} records, wrote {written:,} ({rate:,.0f} records/s)")
        rejected = sum(s.rejected for s in m.steps)
        if rejected:
            dead = sum(s.dead_lettered for s in m.steps)
            lines.append(f"  rejected {rejected:,} records ({dead:,} to the dead-letter sink)")
        if m.dropped_records:
            lines.append(f"  dropped by overflow strategies: {m.dropped_records:,}")
        if self.earlier_attempts:
            # The table is the last attempt's; a restart rewinds to a checkpoint, so
            # earlier attempts' records are partly read again.
            all_read = read + sum(a[0] for a in self.earlier_attempts)
            all_written = written + sum(a[1] for a in self.earlier_attempts)
            lines.append(
                f"  the table shows attempt {len(self.earlier_attempts) + 1} "
                f"({m.elapsed_seconds:.2f}s); all {len(self.earlier_attempts) + 1} attempts "
                f"read {all_read:,} records and wrote {all_written:,} (restarts re-read what "
                "came after their checkpoint)"
            )
            for number, (a_read, a_written, seconds, error) in enumerate(self.earlier_attempts, 1):
                lines.append(
                    f"  attempt {number}: read {a_read:,}, wrote {a_written:,} in "
                    f"{seconds:.2f}s, failed: {error}"
                )
        if self.error:
            lines.append(f"  error: {self.error}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        error = f", error={self.error[:80]!r}" if self.error else ""
        return (
            f"JobResult(job={self.job_name!r}, status={self.status.value}, "
            f"read={self.records_read}, written={self.records_written}, "
            f"seconds={self.metrics.elapsed_seconds:.3f}{error})"
        )


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


def _pool(size: int, prefix: str, started: int = 0) -> ThreadPoolExecutor:
    """A pool of ``size`` threads with ``started`` of them running from the start."""
    pool = ThreadPoolExecutor(size, prefix)
    # A pool starts a thread per call while none is idle, so this many calls at once
    # leave that many threads waiting.
    warm = min(started, size)
    if warm:
        barrier = threading.Barrier(warm + 1)
        for _ in range(warm):
            pool.submit(barrier.wait, 5)
        barrier.wait(5)
    return pool


class _Execution:
    """The runtime objects of one running job."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.metrics: list[StepMetrics] = []
        self.channels: list[Channel] = []
        self.subtasks: list[Subtask] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.started = time.perf_counter()
        self.finished: float | None = None
        self.bounded = True
        self.dead_letters: DeadLetterOutput | None = None
        self.cancelled = False
        self.state: StateBackend | None = None
        self.coordinator: CheckpointCoordinator | None = None
        self.restore: CheckpointData | None = None
        self.rescaled: dict[str, list[ScopeSnapshot]] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        """The loop the job runs on (its own thread's under ``reflow serve``)."""
        self.watch = LoopWatch(job.job_id, self._step_of)
        self.own_pools: list[ThreadPoolExecutor] = []
        """Thread pools of this job alone (seed §10.4 ``resources.threadPool``)."""

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

    @property
    def blocked(self) -> Blocked | None:
        """Set while a step holds the job's event loop for over a second."""
        return self.watch.blocked

    async def probe_connectors(self, timeout_s: float) -> list[tuple[str, Any]]:
        """Each source's and sink's health (see ``probe_connectors``), asked on the
        job's own loop; none while that loop is blocked (the executor's health says so)."""
        if self.watch.blocked is not None:
            return []
        try:
            return await asyncio.wait_for(
                await_in_loop(self.loop, probe_connectors(self.subtasks, timeout_s)),
                timeout_s + BLOCKED_AFTER_S,
            )
        except (TimeoutError, RuntimeError):  # blocked meanwhile, or the job ended
            return []

    def snapshot(self) -> ExecutionMetrics:
        return summarize_execution(self.metrics, self.channels, self.started, self.finished)


class LocalExecutor:
    """Runs jobs in this process on asyncio (the seed's single-node mode)."""

    defers_final_commit = False
    """Whether sources commit what they read when the job's subtasks here end (the
    default), or later, when ``end_of_input`` is called (on a Ray actor: once every
    subtask of the job, on every actor, has ended cleanly)."""

    def __init__(self, settings: ExecutorSettings | None = None) -> None:
        self.settings = settings or ExecutorSettings()
        self._io_pool: ThreadPoolExecutor | None = None
        self._compute_pool: ThreadPoolExecutor | None = None
        self._executions: dict[str, _Execution] = {}
        self.totals = {"completed": 0, "failed": 0, "cancelled": 0}
        """Jobs that ended on this executor, by outcome (job.completed, job.failed)."""
        self.durations: list[float] = []
        """Seconds each ended job ran (job.duration)."""

    def _pools(self) -> tuple[ThreadPoolExecutor, ThreadPoolExecutor]:
        if self._io_pool is None or self._compute_pool is None:
            self._io_pool = _pool(
                self.settings.io_threads, "reflow-io", self.settings.io_threads_started
            )
            self._compute_pool = _pool(self.settings.compute_threads, "reflow-compute")
        return self._io_pool, self._compute_pool

    def _job_pools(self, execution: _Execution) -> tuple[ThreadPoolExecutor, ThreadPoolExecutor]:
        """The executor's pools, or the job's own where its config sizes them."""
        io_pool, compute_pool = self._pools()
        config = execution.job.config
        if config.io_threads is not None or config.io_threads_started is not None:
            started = config.io_threads_started or 0
            size = config.io_threads or max(self.settings.io_threads, started)
            io_pool = _pool(size, f"reflow-io-{execution.job.job_id}", started)
            execution.own_pools.append(io_pool)
        if config.compute_threads is not None:
            compute_pool = _pool(config.compute_threads, f"reflow-compute-{execution.job.job_id}")
            execution.own_pools.append(compute_pool)
        return io_pool, compute_pool

    def close(self) -> None:
        """Shut the thread pools down."""
        for pool in (self._io_pool, self._compute_pool):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        self._io_pool = self._compute_pool = None

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the seed's executor interface (§3.5.3) --------------------------------------------

    async def execute(self, job: Job, restore: CheckpointData | None = None) -> JobResult:
        """Run ``job`` to completion (bounded) or until stopped; never raises for job errors.

        The job moves CREATED -> SCHEDULED -> RUNNING -> COMPLETED / FAILED / CANCELLED
        (FAILED -> RUNNING when it is run again). With ``restore``, state, source
        positions and pending sink commits come from that checkpoint or savepoint.
        """
        if job.status is JobStatus.CREATED:
            job.schedule()
        execution = _Execution(job)
        execution.restore = restore
        execution.loop = asyncio.get_running_loop()
        self._executions[job.job_id] = execution
        try:
            self._build(execution)
        except ReflowError as exc:
            execution.close_own_pools()
            job.start()
            job.fail(str(exc))
            execution.finished = time.perf_counter()
            self.totals["failed"] += 1
            return self._result(execution, exc)
        if job.status is JobStatus.FAILED:
            job.retry()
        else:
            job.start()
        await self._built(execution)
        logger.info(
            "job %s (%s) started: %s, %s",
            job.job_id,
            job.job_name,
            _count(len(job.job_graph.vertices), "vertex", "vertices"),
            _count(len(execution.subtasks), "subtask", "subtasks"),
            extra={
                "job_id": job.job_id,
                "job_name": job.job_name,
                "event": "JOB_STARTED",
                "parallelism": job.job_graph.max_parallelism,
                "operators": len(job.stream_graph.nodes),
            },
        )
        try:
            async with execution.watch:
                error = await self._run(execution)
        finally:
            if execution.state is not None:
                execution.state.close()
        execution.finished = time.perf_counter()
        if execution.dead_letters is not None:
            await _close_writer(execution.dead_letters.writer, error is None)
        execution.close_own_pools()
        if execution.cancelled:
            job.cancel()
        elif error is None:
            job.complete()
        else:
            job.fail(str(error))
        result = self._result(execution, error)
        self.totals[job.status.value.lower()] = self.totals.get(job.status.value.lower(), 0) + 1
        self.durations.append(result.metrics.elapsed_seconds)
        self._forget_old()
        logger.info(
            "job %s finished: %s in %.3fs",
            job.job_id,
            job.status.value,
            result.metrics.elapsed_seconds,
            extra={
                "job_id": job.job_id,
                "job_name": job.job_name,
                "event": f"JOB_{job.status.value}",
                "duration_seconds": round(result.metrics.elapsed_seconds, 3),
            },
        )
        return result

    async def end_of_input(self, job_id: str) -> str | None:
        """Commit and close the sources of a job that ended cleanly with its final
        commit deferred (``defers_final_commit``); the error, if the commit failed."""
        execution = self._executions[job_id]
        error = await _final_commit(execution.subtasks)
        await _close_readers(execution.subtasks)
        return None if error is None else str(error)

    async def savepoint(self, job_id: str, *, stop: bool = False) -> CheckpointData | None:
        """Take a savepoint of a running job (it needs checkpointing configured)."""
        execution = self._executions.get(job_id)
        coordinator = execution.coordinator if execution else None
        loop = execution.loop if execution else None
        data = await await_in_loop(loop, take_savepoint(job_id, coordinator))
        if stop and data is not None:
            await self.stop(job_id)
        return data

    async def stop(self, job_id: str) -> None:
        """Cancel a running job; it ends CANCELLED."""
        self.stop_nowait(job_id)

    def stop_nowait(self, job_id: str) -> None:
        """``stop`` for synchronous callers: the job's tasks are cancelled (on the
        job's own loop, from any thread)."""
        execution = self._executions.get(job_id)
        if execution is None:
            raise ExecutionError(f"no job {job_id!r} runs on this executor")
        execution.cancelled = True
        call_in_loop(execution.loop, _cancel, execution)

    def pause(self, job_id: str) -> None:
        """Stop the sources reading; records in flight drain."""
        execution = self._executions[job_id]
        execution.job.pause()
        call_in_loop(execution.loop, execution.gate.clear)

    def resume(self, job_id: str) -> None:
        execution = self._executions[job_id]
        execution.job.resume()
        call_in_loop(execution.loop, execution.gate.set)

    # Jobs may run on loops in other threads: read the table through a copy.

    def executions(self) -> list[_Execution]:
        """Running executions and the most recent ended ones (for metrics and health)."""
        return list(self._executions.values())

    def running(self) -> list[_Execution]:
        return [e for e in list(self._executions.values()) if e.finished is None]

    def _forget_old(self) -> None:
        ended = [k for k, e in list(self._executions.items()) if e.finished is not None]
        for key in ended[:-RETAINED_EXECUTIONS]:
            self._executions.pop(key, None)

    def pool_stats(self) -> dict[str, tuple[int, int]]:
        """Thread pool -> (active threads, queued tasks) (threadpool.active / queue.size)."""
        stats = {}
        for name, pool in (("io", self._io_pool), ("compute", self._compute_pool)):
            if pool is None:
                stats[name] = (0, 0)
                continue
            threads = len(pool._threads)
            idle = pool._idle_semaphore._value
            stats[name] = (max(threads - idle, 0), pool._work_queue.qsize())
        return stats

    def status(self, job_id: str) -> JobStatus:
        execution = self._executions.get(job_id)
        if execution is None:
            raise ExecutionError(f"no job {job_id!r} ran on this executor")
        return execution.job.status

    def metrics(self, job_id: str) -> ExecutionMetrics:
        execution = self._executions.get(job_id)
        if execution is None:
            raise ExecutionError(f"no job {job_id!r} ran on this executor")
        return execution.snapshot()

    # -- building --------------------------------------------------------------------------

    def _build(self, execution: _Execution) -> None:
        job = execution.job
        graph = job.job_graph
        settings = self.settings
        batch_size = job.config.batch_size or settings.batch_size
        capacity_default = job.config.channel_capacity or settings.channel_capacity
        io_pool, compute_pool = self._job_pools(execution)
        policy = job.config.error_policy

        # Resolve every connector first: a wrong option fails before any I/O.
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
        if policy.dead_letter is not None and any(
            policy.mode_for(n.step_id) is ErrorMode.DEAD_LETTER for n in graph.stream_graph.nodes
        ):
            dl_sink = resolve_sink(policy.dead_letter)
            dl_writer = dl_sink.create_writer(
                ConnectorContext("dead-letter", 0, 1, job.job_id, batch_size, io_pool)
            )
            execution.dead_letters = DeadLetterOutput(dl_writer)

        if any(getattr(n.payload, "stateful", False) for n in graph.stream_graph.nodes):
            execution.state = create_backend(
                settings.state_backend,
                path=settings.state_path,
                max_entries=settings.state_max_entries,
                block_cache_bytes=settings.state_block_cache_bytes,
            )
        execution.bounded = all(src.bounded for src in sources.values())

        inboxes: dict[int, list[Channel]] = {}
        sender_keys: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for vertex in graph.vertices:
            for index in range(vertex.parallelism):
                sender_keys[(vertex.vertex_id, index)] = [
                    (edge.edge_id, upstream)
                    for edge in vertex.inputs
                    for upstream in range(graph.vertex(edge.source_vertex).parallelism)
                    if edge.partitioning is not Partitioning.FORWARD or upstream == index
                ]
            if not vertex.inputs:
                continue
            senders = sum(
                1
                if edge.partitioning is Partitioning.FORWARD
                else graph.vertex(edge.source_vertex).parallelism
                for edge in vertex.inputs
            )
            capacity = min(
                (e.capacity for e in vertex.inputs if e.capacity is not None),
                default=_buffered_capacity(graph, vertex, job.config, batch_size, capacity_default),
            )
            inboxes[vertex.vertex_id] = [
                self._inbox(vertex, i, capacity, senders) for i in range(vertex.parallelism)
            ]
            execution.channels.extend(
                c for c in inboxes[vertex.vertex_id] if isinstance(c, Channel)
            )

        for vertex in graph.vertices:
            for index in range(vertex.parallelism):
                if not self._hosts(vertex, index):
                    continue
                execution.subtasks.append(
                    self._subtask(
                        execution,
                        vertex,
                        index,
                        inboxes,
                        sources,
                        sinks,
                        batch_size,
                        io_pool,
                        compute_pool,
                        sender_keys[(vertex.vertex_id, index)],
                    )
                )

        config = job.config.checkpoint
        if config is not None:
            storage = open_storage(config.path, config.retained)
            parallelism = {
                node.step_id: vertex.parallelism
                for vertex in graph.vertices
                for node in vertex.chained_nodes
            }
            execution.coordinator = CheckpointCoordinator(
                job,
                storage,
                settings.clock,
                execution.subtasks,
                parallelism,
                config.interval_ms,
                config.timeout_ms,
                config.tolerable_failures,
            )
            for subtask in execution.subtasks:
                subtask.acks = execution.coordinator
                subtask.state = execution.state

    def _hosts(self, vertex: JobVertex, index: int) -> bool:
        """Whether this executor runs subtask ``index`` of ``vertex`` (all of them, here;
        a distributed executor's worker runs one)."""
        return True

    def _inbox(self, vertex: JobVertex, index: int, capacity: int, senders: int) -> Any:
        """The inbox of subtask ``index`` of ``vertex``: a local channel here; a
        distributed worker gives the inboxes of other workers' subtasks as proxies."""
        return Channel(f"{vertex.head.step_id}#{index}", capacity, senders)

    async def _built(self, execution: _Execution) -> None:
        """Called once the execution's subtasks exist, before they run."""

    def _subtask(
        self,
        execution: _Execution,
        vertex: JobVertex,
        index: int,
        inboxes: dict[int, list[Channel]],
        sources: dict[str, Any],
        sinks: dict[str, Any],
        batch_size: int,
        io_pool: ThreadPoolExecutor,
        compute_pool: ThreadPoolExecutor,
        senders: list[tuple[int, int]],
    ) -> Subtask:
        job = execution.job
        policy = job.config.error_policy
        stages: list[Stage] = []
        holder: list[Subtask] = []
        clock = self.settings.clock
        sink_restores: dict[int, list[Any]] = {}
        reader = None
        source_metrics = None
        handlers: dict[str, RecordErrorHandler] = {}
        for node in vertex.chained_nodes:
            metrics = StepMetrics(node.step_id, index, node.kind.value)
            execution.metrics.append(metrics)
            handler = handlers[node.step_id] = RecordErrorHandler(
                job.job_id,
                node.step_id,
                policy.mode_for(node.step_id),
                metrics,
                execution.dead_letters,
            )
            ctx = ConnectorContext(
                node.step_id,
                index,
                vertex.parallelism,
                job.job_id,
                batch_size,
                io_pool,
                handler,
                checkpointing=job.config.checkpoint is not None,
                events=metrics.connector_events,
            )
            previous = self._previous_states(execution, node.step_id, index, vertex.parallelism)
            if node.kind is NodeKind.SOURCE:
                reader = sources[node.step_id].create_reader(ctx)
                source_metrics = metrics
                positions = [p.get("source") for p in previous]
                if any(p is not None for p in positions):
                    if len(previous) != 1:
                        raise CheckpointError(
                            f"source {node.step_id!r} ran with parallelism "
                            f"{execution.restore.parallelism[node.step_id]} in the checkpoint "  # type: ignore[union-attr]
                            f"and {vertex.parallelism} now; a source keeps its parallelism "
                            "across a restore (set it on the source), other steps may change"
                        )
                    reader.restore(positions[0])
            elif node.kind is NodeKind.SINK:
                writer: SinkWriter = sinks[node.step_id].create_writer(ctx)
                stages.append(Stage(metrics, writer=writer))
                pending = [p.get("sink") for p in previous if p.get("sink") is not None]
                if pending and (len(previous) == 1 or index == 0):
                    sink_restores[len(stages) - 1] = pending
            else:
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
                    state=execution.state,
                    timestamp_of=_upstream_timestamp(job.job_graph.stream_graph, node.step_id),
                    emit_side=_side_emitter(holder, metrics),
                    load_source=self._source_loader(job.job_id, batch_size, io_pool),
                    bounded_input=execution.bounded,
                )
                logic = spec.build(op_ctx)
                stages.append(Stage(metrics, logic=logic))
                if previous:
                    logic.restore_state([p.get("logic") for p in previous])
                    self._restore_keyed(execution, node.step_id, index, vertex.parallelism, logic)
        routers = [
            Router(
                edge,
                inboxes[edge.target_vertex],
                index,
                (edge.edge_id, index),
                forwards_watermarks=_event_time_downstream(
                    job.job_graph.stream_graph, edge.target_step
                ),
                reject=handlers.get(edge.source_step),
            )
            for edge in vertex.outputs
        ]
        subtask = Subtask(
            job_id=job.job_id,
            vertex_name=vertex.vertex_name,
            index=index,
            stages=stages,
            routers=routers,
            inbox=inboxes[vertex.vertex_id][index] if vertex.inputs else None,
            reader=reader,
            source_metrics=source_metrics,
            dead_letters=execution.dead_letters,
            gate=execution.gate,
            compute_pool=compute_pool,
            clock=clock,
            senders=list(senders),
        )
        holder.append(subtask)
        subtask.sink_restores = sink_restores
        subtask.source_step = vertex.head.step_id if vertex.head.kind is NodeKind.SOURCE else None
        return subtask

    @staticmethod
    def _previous_states(
        execution: _Execution, step_id: str, index: int, parallelism: int
    ) -> list[dict[str, Any]]:
        """The checkpointed states of ``step_id`` that subtask ``index`` takes over."""
        restore = execution.restore
        if restore is None or step_id not in restore.parallelism:
            return []
        old = restore.parallelism[step_id]
        if old == parallelism:
            own = restore.states.get((step_id, index))
            return [own] if own is not None else []
        return [restore.states[(step_id, i)] for i in range(old) if (step_id, i) in restore.states]

    @staticmethod
    def _restore_keyed(
        execution: _Execution, step_id: str, index: int, parallelism: int, logic: Any
    ) -> None:
        restore, backend = execution.restore, execution.state
        if restore is None or backend is None:
            return
        old = restore.parallelism.get(step_id)
        if old == parallelism:
            snapshot = restore.states.get((step_id, index), {}).get("keyed")
            if snapshot is not None:
                backend.restore_scope(step_id, index, snapshot)
            return
        if step_id not in execution.rescaled:
            # Redistribute every entry by the key group of its record key.
            merged = ScopeSnapshot()
            for i in range(old or 0):
                part = restore.states.get((step_id, i), {}).get("keyed")
                if part is not None:
                    merged.merge(part)
            table = key_group_table(parallelism)

            def owner(name: str, key: Any) -> int:
                return table[stable_hash(logic.partition_key(name, key)) % MAX_KEY_GROUPS]

            execution.rescaled[step_id] = merged.split(owner, parallelism)
        backend.restore_scope(step_id, index, execution.rescaled[step_id][index])

    def _source_loader(
        self, job_id: str, batch_size: int, io_pool: ThreadPoolExecutor
    ) -> Callable[[Any], Awaitable[list[Any]]]:
        async def load(payload: Any) -> list[Any]:
            source = resolve_source(payload)
            reader = source.create_reader(
                ConnectorContext("lookup", 0, 1, job_id, batch_size, io_pool)
            )
            records: list[Any] = []
            await reader.open()
            try:
                while (batch := await reader.read_batch()) is not None:
                    records.extend(batch)
            finally:
                await reader.close()
            return records

        return load

    # -- running ---------------------------------------------------------------------------

    async def _run(self, execution: _Execution) -> BaseException | None:
        if execution.dead_letters is not None:
            await execution.dead_letters.writer.open()
        for subtask in execution.subtasks:
            # Sources commit what they read once the whole job has ended (_final_commit).
            subtask.reader_closed_by_executor = subtask.reader is not None
            # With checkpoints, sinks of subtasks that finish early go on taking part in
            # them; they are flushed (the final commit) once the whole job ended.
            subtask.writers_closed_by_executor = execution.coordinator is not None and any(
                stage.writer is not None for stage in subtask.stages
            )
        execution.tasks = [
            asyncio.create_task(subtask.run(), name=f"reflow:{subtask.name}")
            for subtask in execution.subtasks
        ]
        coordinator_task = None
        if execution.coordinator is not None:
            coordinator_task = asyncio.create_task(execution.coordinator.run())
        by_task = dict(zip(execution.tasks, execution.subtasks, strict=True))
        pending: set[asyncio.Task[None]] = set(execution.tasks)
        error: BaseException | None = None
        try:
            while pending:
                # The coordinator is watched too: it fails the job when more
                # checkpoints fail in a row than the job tolerates.
                if coordinator_task is None:
                    done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
                else:  # (the coordinator never ends by itself: wake on any subtask's end)
                    watched = {*pending, coordinator_task}
                    done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
                pending -= done
                if coordinator_task is not None and coordinator_task in done:
                    finished = coordinator_task
                    done.discard(finished)
                    coordinator_task = None
                    problem = None if finished.cancelled() else finished.exception()
                    if problem is not None:
                        error = problem
                        break
                failed = [t for t in done if not t.cancelled() and t.exception() is not None]
                if failed:
                    task = failed[0]
                    error = _attribute(task.exception(), by_task[task])
                    break
                if execution.cancelled:
                    break
        except asyncio.CancelledError:
            execution.cancelled = True
        if coordinator_task is not None:
            coordinator_task.cancel()
            await asyncio.gather(coordinator_task, return_exceptions=True)
        ended_cleanly = not pending and error is None and not execution.cancelled
        if execution.coordinator is not None:
            if ended_cleanly:
                await execution.coordinator.settle()
            else:
                execution.coordinator.abandon()
        if ended_cleanly:
            error = await _flush_writers(execution.subtasks)
            if error is None and self.defers_final_commit:
                return None  # readers stay open: end_of_input() commits and closes them
            if error is None:
                error = await _final_commit(execution.subtasks)
        await _close_readers(execution.subtasks)
        if pending or error is not None:
            for channel in execution.channels:
                channel.break_channel(error or asyncio.CancelledError())
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await _close_writers(execution.subtasks)
        return None if execution.cancelled and error is None else error

    def _result(self, execution: _Execution, error: BaseException | None) -> JobResult:
        job = execution.job
        return JobResult(
            job_id=job.job_id,
            job_name=job.job_name,
            status=job.status,
            metrics=execution.snapshot(),
            start_time=job.start_time,
            end_time=job.end_time,
            error=None if error is None else str(error),
            step_id=getattr(error, "step_id", None),
            exception=error,
            checkpoints=None if execution.coordinator is None else execution.coordinator.stats,
        )


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _cancel(execution: _Execution) -> None:
    execution.gate.set()
    for task in execution.tasks:
        task.cancel()


def summarize_execution(
    metrics: list[StepMetrics], channels: list[Any], started: float, finished: float | None
) -> ExecutionMetrics:
    """A running or ended execution's counters: its steps' metrics and its inboxes'
    statistics (dropped records, time blocked on full inboxes, fill)."""
    stats = [c.statistics() for c in channels]
    end = finished if finished is not None else time.perf_counter()
    return ExecutionMetrics.summarize(
        metrics,
        dropped=sum(s.dropped_records for s in stats),
        blocked=sum(s.blocked_seconds for s in stats),
        elapsed=end - started,
        channels={s.name: (s.size, s.capacity) for s in stats},
    )


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


async def take_savepoint(
    job_id: str, coordinator: CheckpointCoordinator | None
) -> CheckpointData | None:
    """A savepoint through a running job's coordinator (None if it was aborted)."""
    if coordinator is None:
        raise ExecutionError(
            f"job {job_id!r} is not running with checkpoints; configure checkpointing "
            "(checkpoint: in the job file) to take savepoints"
        )
    return await coordinator.trigger(savepoint=True)


def _upstream_timestamp(graph: StreamGraph, step_id: str) -> Callable[[Any], int] | None:
    """The timestamp extractor of the nearest upstream timestamp assigner, if any."""
    seen: set[str] = set()
    frontier = [step_id]
    while frontier:
        step = frontier.pop(0)
        if step in seen:
            continue
        seen.add(step)
        node = graph.node(step)
        extractor = getattr(node.payload, "timestamp_extractor", None)
        if extractor is not None and step != step_id:
            return extractor  # type: ignore[no-any-return]
        frontier.extend(edge.source_id for edge in node.in_edges)
    return None


def _event_time_downstream(graph: StreamGraph, step_id: str) -> bool:
    """True if ``step_id`` or a step after it acts on watermarks."""
    seen: set[str] = set()
    frontier = [step_id]
    while frontier:
        step = frontier.pop()
        if step in seen:
            continue
        seen.add(step)
        node = graph.node(step)
        if getattr(node.payload, "uses_event_time", False) is True:
            return True
        frontier.extend(edge.target_id for edge in node.out_edges)
    return False


def _side_emitter(holder: list[Subtask], metrics: StepMetrics) -> Callable[[str, list[Any]], None]:
    def emit(tag: str, records: list[Any]) -> None:
        holder[0].emit_side(tag, records, metrics)

    return emit


async def _final_commit(subtasks: list[Subtask]) -> BaseException | None:
    """Every subtask ended and every sink flushed: the sources commit (offsets) or
    acknowledge (queues) what they read, before the job reports COMPLETED."""
    for subtask in subtasks:
        if subtask.reader is not None and subtask.reader_closed_by_executor:
            try:
                await subtask.reader.notify_checkpoint_complete(END_OF_INPUT)
            except Exception as exc:
                return _attribute(exc, subtask)
    return None


async def _flush_writers(subtasks: list[Subtask]) -> BaseException | None:
    """The sinks kept open past their subtask's end write what they hold (the final
    commit of exactly-once sinks)."""
    for subtask in subtasks:
        if subtask.writers_closed_by_executor:
            for stage in subtask.stages:
                if stage.writer is not None:
                    subtask.current_step = stage.metrics.step_id
                    try:
                        await stage.writer.flush()
                    except Exception as exc:
                        return _attribute(exc, subtask)
    return None


async def _close_writers(subtasks: list[Subtask]) -> None:
    for subtask in subtasks:
        if subtask.writers_closed_by_executor:
            subtask.writers_closed_by_executor = False
            for stage in subtask.stages:
                if stage.writer is not None:
                    try:
                        await stage.writer.close()
                    except Exception:
                        logger.exception("subtask %s: closing its sink failed", subtask.name)


async def _close_readers(subtasks: list[Subtask]) -> None:
    for subtask in subtasks:
        if subtask.reader is not None and subtask.reader_closed_by_executor:
            subtask.reader_closed_by_executor = False
            try:
                await subtask.reader.close()
            except Exception:
                logger.exception("subtask %s: closing its source failed", subtask.name)


def _attribute(error: BaseException | None, subtask: Subtask) -> BaseException:
    assert error is not None
    if isinstance(error, ExecutionError) and error.step_id is not None:
        return error
    step = subtask.current_step
    wrapped = ExecutionError(
        f"step {step!r} (subtask {subtask.name}) failed: {type(error).__name__}: {error}",
        step_id=step,
    )
    wrapped.__cause__ = error
    return wrapped


async def _close_writer(writer: SinkWriter, flush: bool) -> None:
    try:
        if flush:
            await writer.flush()
    finally:
        await writer.close()


class JobRunner(Protocol):
    """What ``execute_with_recovery`` restarts: the local or the Ray executor."""

    @property
    def settings(self) -> ExecutorSettings: ...

    async def execute(self, job: Job, restore: CheckpointData | None = None) -> JobResult: ...


async def execute_with_recovery(
    executor: JobRunner, job: Job, restore: CheckpointData | None = None
) -> JobResult:
    """Run ``job``; on failure, restart it by its restart strategy (seed §11.2, §11.3).

    Each restart restores the latest complete checkpoint (state rewound, sources
    repositioned, pending sink commits finished); past the strategy's limits the
    job stays FAILED with its error and step_id.
    """
    tracker = job.config.restart.tracker()
    storage = None
    if job.config.checkpoint is not None:
        storage = open_storage(job.config.checkpoint.path, job.config.checkpoint.retained)
    clock = executor.settings.clock
    restarts = 0
    earlier: list[tuple[int, int, float, str | None]] = []
    while True:
        result = await executor.execute(job, restore=restore)
        result.restarts = restarts
        result.earlier_attempts = list(earlier)
        if result.status is not JobStatus.FAILED:
            return result
        earlier.append(
            (result.records_read, result.records_written, result.duration_seconds, result.error)
        )
        delay = tracker.on_failure(clock.now_ms())
        if delay is None:
            if restarts:
                logger.error(
                    "job %s: giving up after %d restarts (%s): %s",
                    job.job_id,
                    restarts,
                    job.config.restart.describe(),
                    result.error,
                    extra={"job_id": job.job_id, "step_id": result.step_id, "event": "JOB_FAILED"},
                )
            return result
        restarts += 1
        logger.warning(
            "job %s failed at step %s (%s); restart %d in %.1fs (%s)",
            job.job_id,
            result.step_id,
            result.error,
            restarts,
            delay,
            job.config.restart.describe(),
            extra={"job_id": job.job_id, "step_id": result.step_id, "event": "JOB_RESTARTING"},
        )
        await clock.sleep(delay)
        restore = storage.latest(job.job_id) if storage is not None else None
        logger.warning(
            "job %s restarts %s",
            job.job_id,
            "from the start (no complete checkpoint)"
            if restore is None
            else f"from checkpoint {restore.checkpoint_id}",
            extra={"job_id": job.job_id, "event": "JOB_RESTORING"},
        )
