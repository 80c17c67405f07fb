"""Distributed execution on Ray Core (seed §3.5.4, §13.1): the same JobGraph, one
Ray actor per subtask.

Each actor runs the local executor's machinery for its one subtask: the fused
operator chain, its inbox ``Channel``, its routers. Only the non-chained edges
cross processes: a router's target that lives in another actor is a
``RemoteChannel``, which pickles each batch once and sends it with an actor
call; watermarks and end-of-input travel in the same ordered stream of calls.
At most ``max_in_flight`` calls per channel are unacknowledged -- a call is
acknowledged once its batch is in the target's inbox, which waits when the
inbox is full -- so a slow consumer slows its producers down (backpressure)
across processes as it does in one. Keyed routing is the local executor's
router, so key groups land on the same subtask indexes.

Ray's own retries are off (``max_restarts=0``, ``max_task_retries=0``): a
retried call could be applied twice or out of order. When any actor fails the
job fails, every actor of the job is killed, and the error names the step.

Checkpoints: the driver runs the local executor's ``CheckpointCoordinator``
over proxies of the actors. It injects barrier *n* into the source actors; the
barriers travel in-band through the same ordered calls as the records; each
actor snapshots when the barrier is aligned on all its inputs and its
acknowledgement (with the snapshot) reaches the driver through a long-polling
call. Once every subtask acknowledged, the driver writes the checkpoint to the
job's checkpoint storage (a folder or S3 -- never only Ray's object store, which
dies with its owner) and tells every actor to commit (two-phase sinks). Any
actor failure fails the whole attempt: every actor is killed and
``execute_with_recovery`` restarts the job from the last complete checkpoint
under its restart strategy.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import pickle
import time
from collections import deque
from collections.abc import Hashable
from dataclasses import replace
from datetime import datetime
from typing import Any

from reflow.checkpoint.storage import CheckpointData, open_storage
from reflow.connectors.base import DEFAULT_BATCH_SIZE
from reflow.errors import ExecutionError
from reflow.graph.job import Job, JobStatus
from reflow.graph.job_graph import JobVertex, parse_memory_mb
from reflow.graph.stream_graph import NodeKind, Overflow
from reflow.runtime.channel import Barrier, Channel, ChannelStatistics, SenderFinished, Watermark
from reflow.runtime.checkpointing import CheckpointCoordinator, CheckpointStats
from reflow.runtime.executor import (
    RETAINED_EXECUTIONS,
    ExecutorSettings,
    JobResult,
    LocalExecutor,
    _Execution,
    probe_connectors,
    summarize_execution,
    take_savepoint,
)
from reflow.runtime.metrics import ExecutionMetrics, StepMetrics, StepSummary
from reflow.runtime.task import Subtask

__all__ = ["RayExecutor", "RemoteChannel"]

logger = logging.getLogger(__name__)

# Actor calls per remote channel not yet acknowledged before the sender waits.
DEFAULT_MAX_IN_FLIGHT = 2
# Records gathered into one actor call. A Ray actor call costs ~0.45 ms of CPU on
# each end whatever its size (measured here, Ray 2.60): on the CPU-heavy bench,
# 100-record calls tripled the job's CPU.
COALESCE_RECORDS = 2_000
# ... but a call's payload stays under this many bytes: Ray passes larger
# arguments through its object store (the raylet and shared memory), which costs
# more than the calls it saves. Ray inlines arguments up to 100 KiB.
COALESCE_BYTES = 90_000
# Payloads from this size on are LZ4-compressed (~0.17 µs per record for both
# ends, ~3.7x smaller for JSON-like records), so a call carries more records.
COMPRESS_BYTES = 16_384
# Longest time records wait to fill a call when the stream is slow; Flink's
# buffer timeout default is the same 100 ms.
COALESCE_SECONDS = 0.1
# How often each actor reports its live counters to the driver (for /metrics).
REPORT_SECONDS = 1.0

SubtaskKey = tuple[int, int]
"""(vertex id, subtask index)."""


class RemoteChannel:
    """The sending end of an inbox that lives in another actor.

    Calls carry a sequence number per (sender, inbox), and the receiving actor
    applies them in that order, so batches, watermarks and end-of-input arrive
    as they were sent.
    """

    def __init__(
        self,
        name: str,
        actor: Any,
        origin: SubtaskKey,
        max_in_flight: int,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        self.name = name
        self.actor = actor
        self.origin = origin
        self.max_in_flight = max_in_flight
        self.batch_size = batch_size
        """Small batches (a router's share of a batch) are joined up to this size."""
        self.inflight: deque[Any] = deque()
        self.seq = 0
        self.bytes_sent = 0
        self.pending: list[tuple[Any, ...]] = []
        self.pending_records = 0
        self.limit = COALESCE_RECORDS
        """Records per call: COALESCE_RECORDS, fewer if records are large."""
        self.timer: asyncio.TimerHandle | None = None

    def _submit(self, kind: str, payload: bytes | None, raw_size: int = 0) -> None:
        # One argument: Ray serialises each argument of a call separately.
        ref = self.actor.deliver.remote((self.origin, self.seq, kind, raw_size, payload))
        self.seq += 1
        if payload is not None:
            self.bytes_sent += len(payload)
        self.inflight.append(ref)

    def _submit_pending(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.pending:
            raw = pickle.dumps(self.pending, protocol=pickle.HIGHEST_PROTOCOL)
            payload, raw_size = raw, 0
            if len(raw) >= COMPRESS_BYTES:
                payload, raw_size = _codec().compress(raw, asbytes=True), len(raw)
            if self.pending_records >= self.limit:  # a full call: fit the next to the bytes
                per_record = len(payload) / self.pending_records
                self.limit = max(50, min(COALESCE_RECORDS, int(COALESCE_BYTES / per_record)))
            self.pending, self.pending_records = [], 0
            self._submit("data", payload, raw_size)

    async def send(
        self, batch: list[Any], overflow: Overflow = Overflow.BUFFER, sender: Hashable = None
    ) -> None:
        """Gather batches into calls of up to ``COALESCE_RECORDS`` (and about
        ``COALESCE_BYTES``); a partial call leaves after ``COALESCE_SECONDS``, or
        before the next watermark, barrier or end of input."""
        pending = self.pending
        last = pending[-1] if pending else None
        if (
            last is not None
            and len(last) == 3
            and last[0] is overflow
            and last[1] == sender
            and len(last[2]) + len(batch) <= self.batch_size
        ):
            # A router's shares of consecutive batches, joined back to the job's batch
            # size: fewer, cheaper steps for the receiver; the inbox (capacity counted
            # in batches) holds no more records than on one machine.
            last[2].extend(batch)
        else:
            pending.append((overflow, sender, list(batch)))
        self.pending_records += len(batch)
        if self.pending_records < self.limit:
            if self.timer is None:
                loop = asyncio.get_running_loop()
                self.timer = loop.call_later(COALESCE_SECONDS, self._submit_pending)
            return
        self._submit_pending()
        inflight = self.inflight
        while len(inflight) > self.max_in_flight:
            await inflight.popleft()

    def send_control(self, message: Watermark | Barrier | SenderFinished) -> None:
        """Watermarks and barriers ride in the same calls as the batches around them."""
        self.pending.append((message,))
        if self.timer is None:
            loop = asyncio.get_running_loop()
            self.timer = loop.call_later(COALESCE_SECONDS, self._submit_pending)

    def close_sender(self) -> None:
        self._submit_pending()
        self._submit("close", None)

    def break_channel(self, cause: BaseException) -> None:
        """The receiving actor fails on its own; the job is then stopped by the driver."""

    async def drain(self) -> None:
        """Wait until every call sent so far was applied (raises the receiver's error)."""
        self._submit_pending()
        while self.inflight:
            await self.inflight.popleft()


class _WorkerExecutor(LocalExecutor):
    """The local executor inside one actor: builds and runs only its subtask; the
    other subtasks' inboxes are ``RemoteChannel``s to their actors. Its source
    commits what it read only when the driver says the whole job has ended."""

    defers_final_commit = True

    def __init__(
        self,
        settings: ExecutorSettings,
        own: SubtaskKey,
        peers: dict[SubtaskKey, Any],
        max_in_flight: int,
        worker: _SubtaskWorker,
    ) -> None:
        super().__init__(settings)
        self.own = own
        self.peers = peers
        self.max_in_flight = max_in_flight
        self.worker = worker
        self.remotes: list[RemoteChannel] = []

    def _hosts(self, vertex: JobVertex, index: int) -> bool:
        return (vertex.vertex_id, index) == self.own

    def _inbox(self, vertex: JobVertex, index: int, capacity: int, senders: int) -> Any:
        key = (vertex.vertex_id, index)
        name = f"{vertex.head.step_id}#{index}"
        if key == self.own:
            channel = Channel(name, capacity, senders)
            self.worker.inbox = channel
            return channel
        batch_size = self.worker.job.config.batch_size or self.settings.batch_size
        remote = RemoteChannel(name, self.peers[key], self.own, self.max_in_flight, batch_size)
        self.remotes.append(remote)
        return remote

    async def _built(self, execution: _Execution) -> None:
        self.worker.execution = execution
        if execution.coordinator is not None:
            # The driver coordinates checkpoints; acknowledgements go to it.
            execution.coordinator = None
            for subtask in execution.subtasks:
                subtask.acks = self.worker
        self.worker.ready.set()


class _SubtaskWorker:
    """The body of a subtask actor (wrapped by ``ray.remote`` in ``RayExecutor``)."""

    def __init__(
        self,
        job: Job,
        own: SubtaskKey,
        settings: ExecutorSettings,
        max_in_flight: int,
    ) -> None:
        # The driver owns the job's lifecycle; this copy runs one subtask from the start.
        job.status = JobStatus.CREATED
        self.job = job
        self.own = own
        if settings.state_path is not None:  # one RocksDB folder per subtask actor
            folder = os.path.join(settings.state_path, f"{job.job_id}-{own[0]}-{own[1]}")
            settings = replace(settings, state_path=folder)
        self.settings = settings
        self.max_in_flight = max_in_flight
        self.inbox: Channel | None = None
        self.ready = asyncio.Event()
        self.order: dict[SubtaskKey, tuple[list[int], asyncio.Condition]] = {}
        self.task: asyncio.Task[JobResult] | None = None
        self.executor: _WorkerExecutor | None = None
        self.execution: _Execution | None = None
        self.cpu_started = 0.0
        self.acks: list[tuple[int, str, dict[tuple[str, int], dict[str, Any]], float]] = []
        self.changed = asyncio.Event()

    async def start(
        self, peers: dict[SubtaskKey, Any], restore: CheckpointData | None = None
    ) -> dict[str, Any]:
        """Build the subtask (restoring ``restore``) and start it; its name."""
        self.cpu_started = time.process_time()
        self.executor = _WorkerExecutor(self.settings, self.own, peers, self.max_in_flight, self)
        self.task = asyncio.create_task(self.executor.execute(self.job, restore=restore))
        self.task.add_done_callback(lambda _: self.changed.set())
        ready = asyncio.create_task(self.ready.wait())
        await asyncio.wait((ready, self.task), return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        names = [s.name for s in self.execution.subtasks] if self.execution is not None else []
        return {"name": names[0] if names else None}

    # -- checkpoints (called by the driver's coordinator) -----------------------------------

    async def subtask_finished(self, subtask: Subtask) -> None:
        """The driver's coordinator stops checkpointing once a subtask finished."""

    def acknowledge(
        self,
        checkpoint_id: int,
        subtask: str,
        states: dict[tuple[str, int], dict[str, Any]],
        alignment_s: float = 0.0,
    ) -> None:
        """The subtask's snapshot for ``checkpoint_id``; the next ``poll`` carries it."""
        self.acks.append((checkpoint_id, subtask, states, alignment_s))
        self.changed.set()

    async def inject_barrier(self, checkpoint_id: int) -> None:
        assert self.execution is not None
        for subtask in self.execution.subtasks:
            await subtask.inject_barrier(checkpoint_id)

    async def notify_complete(self, checkpoint_id: int) -> None:
        assert self.execution is not None
        for subtask in self.execution.subtasks:
            await subtask.notify_complete(checkpoint_id)

    async def end_of_input(self) -> str | None:
        """Every subtask of the job ended cleanly: commit and close this one's source."""
        assert self.executor is not None
        return await self.executor.end_of_input(self.job.job_id)

    async def poll(self, wait_s: float = 1.0) -> dict[str, Any]:
        """Wait up to ``wait_s`` for acknowledgements or the end; what happened and a
        report of the live counters: ``{"acks": [...], "done": None | outcome, "report"}``."""
        assert self.task is not None
        if not self.acks and not self.task.done():
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), wait_s)
        acks, self.acks = self.acks, []
        done = await self.wait() if not acks and self.task.done() else None
        return {"acks": acks, "done": done, "report": self._report()}

    async def health(self, timeout_s: float) -> list[tuple[str, Any]]:
        """This subtask's sources and sinks: do their systems answer (for /health)?"""
        if self.execution is None:
            return []
        return await probe_connectors(self.execution.subtasks, timeout_s)

    def _report(self) -> dict[str, Any]:
        """This subtask's live counters for the driver's metrics (``/metrics``)."""
        execution = self.execution
        if execution is None or not execution.subtasks:
            return {"metrics": [], "subtask": None, "channels": []}
        subtask = execution.subtasks[0]
        return {
            "metrics": execution.metrics,
            "subtask": (subtask.name, subtask.index, subtask.blocked_ns, subtask.watermark),
            "channels": [c.statistics() for c in execution.channels],
        }

    async def deliver(self, message: tuple[SubtaskKey, int, str, int, bytes | None]) -> None:
        """Apply one call of a RemoteChannel, in the sender's order: (origin, seq, kind,
        raw_size, payload); ``raw_size`` > 0 means the payload is LZ4-compressed."""
        origin, seq, kind, raw_size, payload = message
        await self.ready.wait()
        state = self.order.get(origin)
        if state is None:
            state = self.order[origin] = ([0], asyncio.Condition())
        counter, condition = state
        async with condition:
            await condition.wait_for(lambda: counter[0] == seq)
        try:
            inbox = self.inbox
            assert inbox is not None, f"subtask {self.own} has no inbox"
            if kind == "data":
                assert payload is not None
                if raw_size:
                    payload = _codec().decompress(payload, raw_size, asbytes=True)
                for item in pickle.loads(payload):
                    if len(item) == 1:
                        inbox.send_control(item[0])
                    else:
                        overflow, sender, batch = item
                        await inbox.send(batch, overflow, sender)
            else:
                inbox.close_sender()
        finally:
            async with condition:
                counter[0] += 1
                condition.notify_all()

    async def wait(self) -> dict[str, Any]:
        """Run to the end; the outcome, the step metrics and what in-memory sinks collected."""
        assert self.task is not None and self.executor is not None
        result = await self.task
        error = result.error
        if error is None:
            try:
                for remote in self.executor.remotes:
                    await remote.drain()
            except Exception as exc:  # a receiver failed applying what this subtask sent
                error = f"delivering to another subtask failed: {exc!r}"
        return {
            "status": result.status.value if error is None else JobStatus.FAILED.value,
            "error": error,
            "step_id": result.step_id,
            "metrics": result.metrics,
            "collected": _collected(self.job, self.own),
            "bytes_sent": sum(r.bytes_sent for r in self.executor.remotes),
            "cpu_seconds": time.process_time() - self.cpu_started,
        }


def _collected(job: Job, own: SubtaskKey) -> dict[str, list[Any]]:
    """Records that in-memory sinks of this subtask's chain hold (TestingSink), and
    those of an in-memory dead-letter sink, so the driver's objects receive them."""
    out: dict[str, list[Any]] = {}
    vertex = job.job_graph.vertex(own[0])
    for node in vertex.chained_nodes:
        if node.kind is NodeKind.SINK and isinstance(getattr(node.payload, "records", None), list):
            out[node.step_id] = list(node.payload.records)
    dead = job.config.error_policy.dead_letter
    if isinstance(getattr(dead, "records", None), list):
        out["__dead_letter__"] = list(dead.records)
    return out


def _merge_metrics(parts: list[ExecutionMetrics], elapsed: float) -> ExecutionMetrics:
    steps: dict[str, StepSummary] = {}
    order: list[str] = []
    for part in parts:
        for step in part.steps:
            prev = steps.get(step.step_id)
            if prev is None:
                steps[step.step_id] = step
                order.append(step.step_id)
                continue
            events = dict(prev.connector_events)
            for name, count in step.connector_events.items():
                events[name] = events.get(name, 0) + count
            steps[step.step_id] = StepSummary(
                step_id=step.step_id,
                kind=step.kind,
                subtasks=prev.subtasks + step.subtasks,
                records_in=prev.records_in + step.records_in,
                records_out=prev.records_out + step.records_out,
                rejected=prev.rejected + step.rejected,
                dead_lettered=prev.dead_lettered + step.dead_lettered,
                processing_seconds=prev.processing_seconds + step.processing_seconds,
                late=prev.late + step.late,
                connector_events=events,
            )
    return ExecutionMetrics(
        steps=tuple(steps[s] for s in order),
        dropped_records=sum(p.dropped_records for p in parts),
        backpressure_seconds=sum(p.backpressure_seconds for p in parts),
        elapsed_seconds=elapsed,
    )


class _ChannelView:
    """An actor's inbox statistics as last reported."""

    def __init__(self, stats: ChannelStatistics) -> None:
        self.stats = stats

    def statistics(self) -> ChannelStatistics:
        return self.stats


class _SubtaskView:
    """A subtask actor as last reported (what metrics and health read of a subtask)."""

    reader = None
    source_step = None
    stages: tuple[Any, ...] = ()

    def __init__(
        self, name: str, index: int, blocked_ns: int, watermark: int, tail: StepMetrics | None
    ) -> None:
        self.name = name
        self.index = index
        self.blocked_ns = blocked_ns
        self.watermark = watermark
        self.source_metrics = tail


class _RayExecution:
    """A job running on Ray as the driver sees it: the counters each actor reported
    last (every ``RayExecutor.report_seconds``), its checkpoint coordinator."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.reports: dict[SubtaskKey, dict[str, Any]] = {}
        self.actors: dict[SubtaskKey, Any] = {}
        self.coordinator: CheckpointCoordinator | None = None
        self.started = time.perf_counter()
        self.finished: float | None = None
        self.cancelled = False
        self.stopping = asyncio.Event()

    @property
    def metrics(self) -> list[StepMetrics]:
        return [m for report in list(self.reports.values()) for m in report["metrics"]]

    @property
    def subtasks(self) -> list[_SubtaskView]:
        views = []
        for report in list(self.reports.values()):
            if report["subtask"] is None:
                continue
            name, index, blocked_ns, watermark = report["subtask"]
            tail = report["metrics"][-1] if report["metrics"] else None
            views.append(_SubtaskView(name, index, blocked_ns, watermark, tail))
        return views

    @property
    def channels(self) -> list[_ChannelView]:
        return [
            _ChannelView(stats)
            for report in list(self.reports.values())
            for stats in report["channels"]
        ]

    async def probe_connectors(self, timeout_s: float) -> list[tuple[str, Any]]:
        """Each actor probes its own sources and sinks, from its node."""
        actors = list(self.actors.values())
        answers = await asyncio.gather(
            *(asyncio.wait_for(_await(a.health.remote(timeout_s)), timeout_s + 5) for a in actors),
            return_exceptions=True,
        )
        results: list[tuple[str, Any]] = []
        for key, answer in zip(self.actors, answers, strict=True):
            if isinstance(answer, BaseException):
                results.append((f"subtask {key}", f"no answer ({type(answer).__name__})"))
            else:
                results.extend(answer)
        return results

    def snapshot(self) -> ExecutionMetrics:
        return summarize_execution(self.metrics, self.channels, self.started, self.finished)


class RayExecutor:
    """Runs jobs on a Ray cluster, one actor per subtask (``executor.type: distributed``).

    ``address`` is a running cluster's ``HOST:PORT`` (``ray start --head``); without
    it, an already initialised Ray is used, or a local one is started.
    """

    def __init__(
        self,
        settings: ExecutorSettings | None = None,
        *,
        address: str | None = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        reserve_cpus: bool = False,
        start_timeout_s: float = 120.0,
    ) -> None:
        self.settings = settings or ExecutorSettings()
        self.address = address
        self.max_in_flight = max_in_flight
        self.reserve_cpus = reserve_cpus
        self.last_bytes_sent = 0
        """Bytes the last job's actors sent each other (pickled batches)."""
        self.last_cpu_seconds = 0.0
        """CPU seconds the last job's actors used, summed over their processes."""
        self.last_cpu_by_subtask: dict[str, float] = {}
        """CPU seconds of each subtask's actor process in the last job."""
        self.last_checkpoints: CheckpointStats | None = None
        """Checkpoint counters of the last job (None without checkpointing)."""
        self.last_start_seconds = 0.0
        """How long the last job's actors took to be created and built."""
        self.report_seconds = REPORT_SECONDS
        self.start_timeout_s = start_timeout_s
        self.last_actor_options: dict[SubtaskKey, dict[str, Any]] = {}
        """The Ray options each subtask's actor was created with, in the last job."""
        self._executions: dict[str, _RayExecution] = {}
        self.totals = {"completed": 0, "failed": 0, "cancelled": 0}
        """Jobs that ended on this executor, by outcome (job.completed, job.failed)."""
        self.durations: list[float] = []
        """Seconds each ended job ran (job.duration)."""

    # -- what the manager, /metrics and /health read (as on the local executor) -------------

    def executions(self) -> list[_RayExecution]:
        """Running executions and the most recent ended ones."""
        return list(self._executions.values())

    def running(self) -> list[_RayExecution]:
        return [e for e in self._executions.values() if e.finished is None]

    def pool_stats(self) -> dict[str, tuple[int, int]]:
        """No thread pools in the driver: the actors have their own."""
        return {}

    def status(self, job_id: str) -> JobStatus:
        return self._execution(job_id).job.status

    def metrics(self, job_id: str) -> ExecutionMetrics:
        return self._execution(job_id).snapshot()

    def _execution(self, job_id: str) -> _RayExecution:
        execution = self._executions.get(job_id)
        if execution is None:
            raise ExecutionError(f"no job {job_id!r} ran on this executor")
        return execution

    async def stop(self, job_id: str) -> None:
        """Cancel a running job: its actors are killed; it ends CANCELLED."""
        self.stop_nowait(job_id)

    def stop_nowait(self, job_id: str) -> None:
        execution = self._execution(job_id)
        execution.cancelled = True
        execution.stopping.set()

    def pause(self, job_id: str) -> None:
        raise ExecutionError(
            f"job {job_id!r} runs on Ray, which cannot pause a job; stop it and resume it "
            "from its latest checkpoint (reflow run --resume) instead"
        )

    def resume(self, job_id: str) -> None:
        self.pause(job_id)

    async def savepoint(self, job_id: str, *, stop: bool = False) -> CheckpointData | None:
        """Take a savepoint of a running job (it needs checkpointing configured)."""
        execution = self._executions.get(job_id)
        data = await take_savepoint(job_id, execution.coordinator if execution else None)
        if stop and data is not None:
            self.stop_nowait(job_id)
        return data

    def close(self) -> None:
        """Nothing to release: each job's actors are killed when it ends."""

    def _ray(self) -> Any:
        try:
            import ray
        except ImportError as exc:
            raise ExecutionError("the Ray executor needs Ray: pip install 'reflow[ray]'") from exc
        if not ray.is_initialized():
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            try:
                ray.init(
                    address=self.address,
                    include_dashboard=False,
                    log_to_driver=False,
                    configure_logging=False,
                )
            except Exception as exc:
                where = self.address or "a new local Ray instance"
                raise ExecutionError(f"cannot start or reach Ray at {where}: {exc}") from exc
        return ray

    async def execute(self, job: Job, restore: CheckpointData | None = None) -> JobResult:
        """Run ``job`` to the end on Ray; never raises for job errors (like the local one).

        With ``restore``, every actor starts from that checkpoint's state, source
        positions and pending sink commits; ``execute_with_recovery`` passes the
        latest complete checkpoint after a failure.
        """
        if job.status is JobStatus.CREATED:
            job.schedule()
        if job.status is JobStatus.FAILED:
            job.retry()
        else:
            job.start()
        started_at = datetime.now()
        began = time.perf_counter()
        self.last_checkpoints = None
        execution = _RayExecution(job)
        self._executions[job.job_id] = execution
        try:
            ray = self._ray()
            outcome = await self._run(ray, job, restore, execution)
        except ExecutionError as exc:
            outcome = _failure(str(exc), None, [])
        elapsed = time.perf_counter() - began
        execution.finished = time.perf_counter()
        error = outcome["error"]
        if execution.cancelled and error is None:
            job.cancel()
        elif error is None:
            job.complete()
            for collected in outcome["collected"]:
                _absorb(job, collected)
        else:
            job.fail(error)
        self.totals[job.status.value.lower()] = self.totals.get(job.status.value.lower(), 0) + 1
        self.durations.append(elapsed)
        ended = [k for k, e in self._executions.items() if e.finished is not None]
        for key in ended[:-RETAINED_EXECUTIONS]:
            del self._executions[key]
        return JobResult(
            job_id=job.job_id,
            job_name=job.job_name,
            status=job.status,
            metrics=_merge_metrics(outcome["parts"], elapsed),
            start_time=started_at,
            end_time=datetime.now(),
            error=error,
            step_id=outcome["step_id"],
            checkpoints=self.last_checkpoints,
        )

    async def _run(
        self, ray: Any, job: Job, restore: CheckpointData | None, execution: _RayExecution
    ) -> dict[str, Any]:
        graph = job.job_graph
        worker_class = ray.remote(max_restarts=0, max_task_retries=0, max_concurrency=1000)(
            _SubtaskWorker
        )
        options = self._actor_options(job, ray)
        _check_feasible(ray, job, options)
        self.last_actor_options = options
        actors: dict[SubtaskKey, Any] = {
            key: worker_class.options(**opts).remote(job, key, self.settings, self.max_in_flight)
            for key, opts in options.items()
        }
        execution.actors = actors
        coordinator_task: asyncio.Task[None] | None = None
        creating = time.perf_counter()
        try:
            restore_ref = ray.put(restore) if restore is not None else None
            try:
                started = await asyncio.wait_for(
                    asyncio.gather(*(a.start.remote(actors, restore_ref) for a in actors.values())),
                    self.start_timeout_s,
                )
            except TimeoutError:
                return _failure(
                    f"the job's {len(actors)} actors did not start within "
                    f"{self.start_timeout_s:g}s: the Ray cluster has no room for them now "
                    f"(each asks for {_describe(next(iter(options.values())))}); free "
                    "resources, add nodes, or lower the job's resources.cpu / resources.memory",
                    None,
                    [],
                )
            except Exception as exc:  # an actor could not be placed or died starting
                return _failure(f"starting the job's actors failed: {exc}", None, [])
            proxies = {
                key: _RemoteSubtask(key, answer["name"], actor, graph.vertex(key[0]))
                for (key, actor), answer in zip(actors.items(), started, strict=True)
            }
            self.last_start_seconds = time.perf_counter() - creating
            logger.info(
                "job %s: %d actors started in %.2fs",
                job.job_id,
                len(actors),
                self.last_start_seconds,
                extra={"job_id": job.job_id, "event": "ACTORS_STARTED"},
            )
            coordinator = self._coordinator(job, list(proxies.values()))
            execution.coordinator = coordinator
            if coordinator is not None:
                self.last_checkpoints = coordinator.stats
                coordinator_task = asyncio.create_task(coordinator.run())
            pending = {
                asyncio.ensure_future(
                    _follow(actor, coordinator, proxies[key], execution, self.report_seconds)
                ): key
                for key, actor in actors.items()
            }
            stopping = asyncio.ensure_future(execution.stopping.wait())
            parts: list[ExecutionMetrics] = []
            collected: list[dict[str, list[Any]]] = []
            self.last_bytes_sent = 0
            self.last_cpu_seconds = 0.0
            self.last_cpu_by_subtask = {}
            while pending:
                waiting: list[asyncio.Future[Any]] = [*pending, stopping]
                if coordinator_task is not None:
                    waiting.append(coordinator_task)
                finished, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if coordinator_task in finished:
                    assert coordinator_task is not None
                    problem = None if coordinator_task.cancelled() else coordinator_task.exception()
                    if isinstance(problem, ray.exceptions.RayActorError):
                        # The coordinator met a dead actor first: name the subtask
                        # lost, as its follower reports it.
                        return await _lost(problem, pending, proxies, graph, parts)
                    if problem is not None:  # too many checkpoints failed in a row
                        for future in pending:
                            future.cancel()
                        return _failure(str(problem), None, parts)
                    coordinator_task = None
                if stopping in finished:  # stop(): the actors are killed below
                    for future in pending:
                        future.cancel()
                    return {"error": None, "step_id": None, "parts": parts, "collected": []}
                done = [f for f in pending if f in finished]
                for future in done:
                    key = pending.pop(future)
                    try:
                        answer = future.result()
                    except Exception as exc:  # the actor died (killed, out of memory, ...)
                        step = graph.vertex(key[0]).head.step_id
                        for other in pending:
                            other.cancel()
                        return _failure(
                            f"subtask {proxies[key].name} (step {step!r}) was lost: {_died(exc)}",
                            step,
                            parts,
                        )
                    parts.append(answer["metrics"])
                    collected.append(answer["collected"])
                    self.last_bytes_sent += answer["bytes_sent"]
                    self.last_cpu_seconds += answer["cpu_seconds"]
                    self.last_cpu_by_subtask[proxies[key].name] = answer["cpu_seconds"]
                    if answer["error"] is not None:
                        return await _first_cause(answer, pending, parts)
            stopping.cancel()
            # Every subtask ended cleanly: only now do the sources commit what they read.
            try:
                problems = await asyncio.gather(
                    *(_await(a.end_of_input.remote()) for a in actors.values())
                )
            except Exception as exc:  # an actor died between its end and the commit
                return _failure(f"the final commit failed: {_died(exc)}", None, parts)
            for key, problem in zip(actors, problems, strict=True):
                if problem is not None:
                    step = graph.vertex(key[0]).head.step_id
                    return _failure(f"the final commit failed: {problem}", step, parts)
            return {"error": None, "step_id": None, "parts": parts, "collected": collected}
        finally:
            if coordinator_task is not None:
                if coordinator_task.done() and not coordinator_task.cancelled():
                    problem = coordinator_task.exception()
                    if problem is not None:
                        logger.warning(
                            "job %s: checkpoint coordinator stopped: %r", job.job_id, problem
                        )
                coordinator_task.cancel()
                await asyncio.gather(coordinator_task, return_exceptions=True)
            for actor in actors.values():
                ray.kill(actor, no_restart=True)

    def _actor_options(self, job: Job, ray: Any) -> dict[SubtaskKey, dict[str, Any]]:
        """Ray options of each subtask's actor, from the job's resources (seed §6.2):
        ``resources.cpu`` cores per subtask (reserved), ``resources.memory`` split
        evenly over the job's subtasks; a vertex's own profile memory wins.

        Placement: subtask *i* of every vertex goes to alive node *i* mod *n* (pinned
        when it reserves nothing; preferred, so a node without room hands it on, when
        it reserves CPU or memory), so each vertex's parallelism is spread over the
        nodes. Ray's own SPREAD strategy is only a best effort: it placed every actor
        of a two-node test on one node."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        alive = sorted(
            (n for n in ray.nodes() if n.get("Alive")),
            key=lambda n: (n.get("NodeManagerAddress", ""), n["NodeID"]),
        )
        graph = job.job_graph
        subtasks = sum(v.parallelism for v in graph.vertices)
        cpu = job.metadata.get("cpu")
        memory_mb = parse_memory_mb(job.metadata.get("memory"))
        options: dict[SubtaskKey, dict[str, Any]] = {}
        for vertex in graph.vertices:
            profile = vertex.resource_profile
            if cpu is not None:
                cores = float(cpu)
            else:
                # CPUs are reserved only when asked for: most subtasks wait on I/O, and
                # a 2-core node would otherwise hold two subtasks.
                cores = profile.cpu_cores if self.reserve_cpus else 0.0
            opts: dict[str, Any] = {"num_cpus": cores}
            share = profile.memory_mb or (memory_mb // subtasks if memory_mb else 0)
            if share:
                opts["memory"] = share * 1024 * 1024
            for index in range(vertex.parallelism):
                strategy: Any = "SPREAD"
                if alive:
                    node = alive[index % len(alive)]["NodeID"]
                    # An actor that reserves nothing always fits its node: pin it (a
                    # soft preference still sent one of four actors of the two-node
                    # test to the head); one that reserves may move where there is room.
                    soft = cores > 0 or "memory" in opts
                    strategy = NodeAffinitySchedulingStrategy(node_id=node, soft=soft)
                options[(vertex.vertex_id, index)] = {**opts, "scheduling_strategy": strategy}
        return options

    def _coordinator(self, job: Job, proxies: list[_RemoteSubtask]) -> CheckpointCoordinator | None:
        config = job.config.checkpoint
        if config is None:
            return None
        parallelism = {
            node.step_id: vertex.parallelism
            for vertex in job.job_graph.vertices
            for node in vertex.chained_nodes
        }
        return CheckpointCoordinator(
            job,
            open_storage(config.path, config.retained),
            self.settings.clock,
            proxies,  # type: ignore[arg-type]  # duck-typed subtasks
            parallelism,
            config.interval_ms,
            config.timeout_ms,
            config.tolerable_failures,
            after_finish=False,
        )


async def _first_cause(
    answer: dict[str, Any],
    pending: dict[asyncio.Task[dict[str, Any]], SubtaskKey],
    parts: list[Any],
) -> dict[str, Any]:
    """The job's failure. A subtask that failed only because the subtask it sends to
    broke names no step; the one that broke (if it reports within a second) does."""
    error, step_id = answer["error"], answer["step_id"]
    if step_id is None and pending:
        done, _ = await asyncio.wait(pending, timeout=1.0)
        for future in done:
            if future.exception() is None:
                other = future.result()
                if other["error"] is not None and other["step_id"] is not None:
                    error, step_id = other["error"], other["step_id"]
                    break
    for future in pending:
        future.cancel()
    return _failure(error, step_id, parts)


class _RemoteSubtask:
    """The coordinator's view of a subtask actor (the part of ``Subtask`` it uses)."""

    def __init__(self, key: SubtaskKey, name: str, actor: Any, vertex: JobVertex) -> None:
        self.key = key
        self.name = name
        self.actor = actor
        self.reader = True if vertex.head.kind is NodeKind.SOURCE else None
        self.finished = False

    async def inject_barrier(self, checkpoint_id: int) -> None:
        await self.actor.inject_barrier.remote(checkpoint_id)

    async def notify_complete(self, checkpoint_id: int) -> None:
        await self.actor.notify_complete.remote(checkpoint_id)


async def _follow(
    actor: Any,
    coordinator: CheckpointCoordinator | None,
    proxy: _RemoteSubtask,
    execution: _RayExecution,
    report_seconds: float,
) -> dict[str, Any]:
    """Hand an actor's checkpoint acknowledgements to the coordinator and its live
    counters to the execution's view, until it ends."""
    while True:
        answer = await actor.poll.remote(report_seconds)
        execution.reports[proxy.key] = answer["report"]
        if coordinator is not None:
            for checkpoint_id, name, states, alignment_s in answer["acks"]:
                coordinator.acknowledge(checkpoint_id, name, states, alignment_s)
        if answer["done"] is not None:
            proxy.finished = True
            return answer["done"]  # type: ignore[no-any-return]


async def _await(ref: Any) -> Any:
    return await ref


@functools.cache
def _codec() -> Any:
    import pyarrow

    return pyarrow.Codec("lz4")


def _describe(options: dict[str, Any]) -> str:
    memory = options.get("memory")
    text = f"{options['num_cpus']:g} CPU"
    return text + (f" and {memory // (1024 * 1024)} MB" if memory else "")


def _check_feasible(ray: Any, job: Job, options: dict[SubtaskKey, dict[str, Any]]) -> None:
    """Fail before creating actors that no node could ever hold (Ray would wait forever)."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if not nodes:
        return
    wanted = next(iter(options.values()))
    cpu = float(wanted["num_cpus"])
    memory = int(wanted.get("memory", 0))
    fits = [n for n in nodes if n.get("CPU", 0) >= cpu and n.get("memory", 0) >= memory]
    total_cpu = sum(n.get("CPU", 0) for n in nodes)
    problem = None
    if not fits:
        largest_cpu = max(n.get("CPU", 0) for n in nodes)
        largest_mb = int(max(n.get("memory", 0) for n in nodes)) // (1024 * 1024)
        problem = (
            f"each of its subtasks asks for {_describe(wanted)}, but the largest Ray node "
            f"has {largest_cpu:g} CPU and {largest_mb} MB"
        )
    elif cpu * len(options) > total_cpu:
        problem = (
            f"its {len(options)} subtasks ask for {cpu:g} CPU each ({cpu * len(options):g} in "
            f"all), but the Ray cluster has {total_cpu:g}"
        )
    if problem is not None:
        raise ExecutionError(
            f"job {job.job_name!r} cannot be placed on Ray: {problem}; lower the job's "
            "resources.cpu / resources.memory or its parallelism, or add nodes"
        )


def _died(exc: BaseException) -> str:
    """Ray's long account of a dead actor, cut to its first line, pid and node."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    where = [line for line in lines[1:] if line.startswith(("pid:", "ip:"))]
    head = lines[0] if lines else type(exc).__name__
    return f"{head} ({', '.join(where)})" if where else head


async def _lost(
    problem: BaseException,
    pending: dict[Any, SubtaskKey],
    proxies: dict[SubtaskKey, _RemoteSubtask],
    graph: Any,
    parts: list[ExecutionMetrics],
) -> dict[str, Any]:
    """A failure for an actor that died: the subtask whose follower fails (waited for
    a few seconds), or the coordinator's account when none does."""
    done, _ = await asyncio.wait(pending, timeout=5, return_when=asyncio.FIRST_EXCEPTION)
    for future in pending:
        future.cancel()
    for future in done:
        if not future.cancelled() and future.exception() is not None:
            key = pending[future]
            step = graph.vertex(key[0]).head.step_id
            cause = _died(future.exception())
            return _failure(
                f"subtask {proxies[key].name} (step {step!r}) was lost: {cause}", step, parts
            )
    return _failure(f"a subtask was lost: {_died(problem)}", None, parts)


def _failure(error: str, step_id: str | None, parts: list[ExecutionMetrics]) -> dict[str, Any]:
    return {"error": error, "step_id": step_id, "parts": parts, "collected": []}


def _absorb(job: Job, collected: dict[str, list[Any]]) -> None:
    """Give the driver's in-memory sinks what their copies in the actors collected."""
    for node in job.stream_graph.nodes:
        records = collected.get(node.step_id)
        if records is not None and node.kind is NodeKind.SINK:
            node.payload.records.extend(records)
    dead = collected.get("__dead_letter__")
    if dead is not None:
        job.config.error_policy.dead_letter.records.extend(dead)
