"""The body of a Ray subtask actor: builds and runs one subtask of a job.

The actor builds its subtask with the same ``make_plan``/``build_subtask`` as
the local executor, its own inbox a local ``Channel`` and every other
subtask's inbox a ``RemoteChannel`` to that subtask's actor, and runs it with
``run_execution``. Its source commits what it read, and with checkpoints its
sinks make their final commit, only when the driver says the whole job ended
cleanly (``end_of_input``). Checkpoint acknowledgements and live counters reach
the driver through a long-polling ``poll``; once the subtask is done, the calls
that make it acknowledge (``acknowledge_finished``, ``inject_barrier``) return
them instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import time
from dataclasses import dataclass, field, replace
from typing import Any

from reflow.checkpoint.storage import CheckpointData
from reflow.errors import ReflowError
from reflow.graph.job import Job, JobStatus
from reflow.graph.job_graph import JobVertex
from reflow.graph.stream_graph import NodeKind
from reflow.runtime.base import ExecutionPart, ExecutorSettings
from reflow.runtime.channel import Channel
from reflow.runtime.local import ThreadPools, close_writer, end_of_input, run_execution
from reflow.runtime.plan import Execution, build_subtask, make_plan, probe_connectors
from reflow.runtime.ray.channel import RemoteChannel, SubtaskKey, decompress

__all__ = ["Ending", "PollAnswer", "SubtaskWorker", "WorkerOutcome"]

Ack = tuple[int, str, dict[tuple[str, int], dict[str, Any]], float]
"""(checkpoint id, subtask name, states, seconds aligning)."""


@dataclass(frozen=True, slots=True)
class WorkerOutcome:
    """How an actor's subtask ended."""

    status: JobStatus
    error: str | None
    step_id: str | None
    part: ExecutionPart
    bytes_sent: int
    cpu_seconds: float


@dataclass(frozen=True, slots=True)
class Ending:
    """The final commit of an actor's subtask."""

    error: str | None
    collected: dict[str, list[Any]]
    """What in-memory sinks of the subtask collected (TestingSink), by step."""


@dataclass(frozen=True, slots=True)
class PollAnswer:
    """What happened since the last poll: acknowledgements, the end, live counters."""

    acks: list[Ack] = field(default_factory=list)
    done: WorkerOutcome | None = None
    part: ExecutionPart = field(default_factory=ExecutionPart)


class SubtaskWorker:
    """One subtask actor (wrapped by ``ray.remote`` in the driver).

    It hosts one job's subtask at a time: ``start`` gives it the subtask to build and
    run; once the job ended cleanly, ``end_of_input`` releases the subtask and
    leaves the actor empty, and the driver may keep it for a later job
    (``pool.ActorPool``).
    """

    def __init__(self) -> None:
        self._empty()

    def _empty(self) -> None:
        """Ready for a subtask. (A peer's first ``deliver`` may come before ``start``:
        it waits for ``ready``; the per-sender order it sets up is this job's.)"""
        vars(self).clear()  # the last job's subtask, copy of the job and collected records
        self.ready = asyncio.Event()
        self.order: dict[SubtaskKey, tuple[list[int], asyncio.Condition]] = {}

    def _host(
        self, job: Job, own: SubtaskKey, settings: ExecutorSettings, max_in_flight: int
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
        self.peers: dict[SubtaskKey, Any] = {}
        self.inbox: Channel | None = None
        self.remotes: list[RemoteChannel] = []
        self.pools = ThreadPools(settings)
        self.execution = Execution(job)
        self.task: asyncio.Task[BaseException | None] | None = None
        self.cpu_started = 0.0
        self.acks: list[Ack] = []
        self.collecting = _collecting(job, own)
        """The in-memory lists this subtask's sinks append to, and how many records
        each held before (the driver's lists hold those already)."""
        self.done_delivered = False
        """A poll told the driver the subtask is done: it polls no more, so calls
        that make the subtask acknowledge return the acknowledgements."""
        self.changed = asyncio.Event()

    async def start(
        self,
        job: Job,
        own: SubtaskKey,
        settings: ExecutorSettings,
        max_in_flight: int,
        peers: dict[SubtaskKey, Any],
        restore: CheckpointData | None = None,
    ) -> str | None:
        """Build subtask ``own`` of ``job`` (restoring ``restore``) and start it; its
        name (None if it could not be built: ``wait`` tells why)."""
        self._host(job, own, settings, max_in_flight)
        self.cpu_started = time.process_time()
        self.peers = peers
        self.task = asyncio.create_task(self._run(restore))
        self.task.add_done_callback(lambda _: self.changed.set())
        await self.ready.wait()
        subtasks = self.execution.subtasks
        return subtasks[0].name if subtasks else None

    def _inbox(self, vertex: JobVertex, index: int, capacity: int, senders: int) -> Any:
        key = (vertex.vertex_id, index)
        name = f"{vertex.head.step_id}#{index}"
        if key == self.own:
            self.inbox = Channel(name, capacity, senders)
            return self.inbox
        batch_size = self.job.config.batch_size or self.settings.batch_size
        remote = RemoteChannel(name, self.peers[key], self.own, self.max_in_flight, batch_size)
        self.remotes.append(remote)
        return remote

    async def _run(self, restore: CheckpointData | None) -> BaseException | None:
        execution = self.execution
        execution.loop = asyncio.get_running_loop()
        try:
            plan = execution.plan = make_plan(
                self.job, self.settings, self.pools.for_job(execution), restore, self._inbox
            )
            vertex = self.job.job_graph.vertex(self.own[0])
            subtask = build_subtask(plan, vertex, self.own[1])
        except ReflowError as exc:
            execution.close_own_pools()
            execution.finished = time.perf_counter()
            return exc
        finally:
            self.ready.set()
        if self.job.config.checkpoint is not None:
            subtask.acks = self  # acknowledgements go to the driver's coordinator
        execution.subtasks.append(subtask)
        clean = False
        try:
            async with execution.watch:
                error = await run_execution(execution, defer_final_commit=True)
            clean = error is None and not execution.cancelled
        finally:
            execution.finished = time.perf_counter()
            if not clean:  # (after a clean end, end_of_input releases them)
                await self._release(flush=False)
        return error

    async def _release(self, flush: bool) -> None:
        execution = self.execution
        if execution.state is not None:
            execution.state.close()
        if execution.dead_letters is not None:
            await close_writer(execution.dead_letters.writer, flush)
        execution.close_own_pools()

    # -- checkpoints (called by the driver's coordinator) -----------------------------------

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

    def pending_for(self, subtask: str) -> list[int]:
        """The driver asks a done subtask for the checkpoints it has not acknowledged."""
        return []

    def _undelivered(self) -> list[Ack]:
        if not self.done_delivered:
            return []  # the next poll carries them
        acks, self.acks = self.acks, []
        return acks

    async def inject_barrier(self, checkpoint_id: int) -> list[Ack]:
        """(Source) snapshot and send the barrier on; the acknowledgements no poll
        will carry (the subtask was done)."""
        for subtask in self.execution.subtasks:
            await subtask.inject_barrier(checkpoint_id)
        return self._undelivered()

    async def acknowledge_finished(self, checkpoint_id: int) -> list[Ack]:
        """(Done) acknowledge ``checkpoint_id`` with the final state."""
        for subtask in self.execution.subtasks:
            await subtask.acknowledge_finished(checkpoint_id)
        return self._undelivered()

    async def notify_complete(self, checkpoint_id: int) -> None:
        for subtask in self.execution.subtasks:
            await subtask.notify_complete(checkpoint_id)

    async def end_of_input(self) -> Ending:
        """Every subtask of the job ended cleanly: this one's final commit."""
        error = await end_of_input(self.execution)
        await self._release(flush=error is None)
        ending = Ending(error, {name: lst[n:] for name, (lst, n) in self.collecting.items()})
        if error is None:
            self._empty()  # the driver may give this actor a later job's subtask
        return ending

    async def poll(self, wait_s: float = 1.0) -> PollAnswer:
        """Wait up to ``wait_s`` for acknowledgements or the end; what happened and the
        live counters."""
        assert self.task is not None
        if not self.acks and not self.task.done():
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), wait_s)
        acks, self.acks = self.acks, []
        done = None
        if not acks and self.task.done():
            self.done_delivered = True  # (before waiting: acks from now on are returned)
            done = await self.wait()
        return PollAnswer(acks, done, self.execution.part())

    async def health(self, timeout_s: float) -> list[tuple[str, Any]]:
        """This subtask's sources and sinks: do their systems answer (for /health)?"""
        return await probe_connectors(self.execution.subtasks, timeout_s)

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
                # Batches between the actors of one job, on a cluster the job trusts.
                for item in pickle.loads(decompress(payload, raw_size)):
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

    async def wait(self) -> WorkerOutcome:
        """Run to the end; the outcome, the counters and what in-memory sinks collected."""
        assert self.task is not None
        failure = await self.task
        error = None if failure is None else str(failure)
        if error is None:
            try:
                for remote in self.remotes:
                    await remote.drain()
            except Exception as exc:  # a receiver failed applying what this subtask sent
                error = f"delivering to another subtask failed: {exc!r}"
        return WorkerOutcome(
            JobStatus.COMPLETED if error is None else JobStatus.FAILED,
            error,
            getattr(failure, "step_id", None),
            self.execution.part(),
            sum(r.bytes_sent for r in self.remotes),
            time.process_time() - self.cpu_started,
        )


def _collecting(job: Job, own: SubtaskKey) -> dict[str, tuple[list[Any], int]]:
    """The lists of in-memory sinks of this subtask's chain (TestingSink) and of an
    in-memory dead-letter sink, by step, with their length now: what the subtask
    appends to them goes back to the driver's objects at the end."""
    out: dict[str, tuple[list[Any], int]] = {}
    vertex = job.job_graph.vertex(own[0])
    for node in vertex.chained_nodes:
        records = getattr(node.payload, "records", None)
        if node.kind is NodeKind.SINK and isinstance(records, list):
            out[node.step_id] = (records, len(records))
    dead = getattr(job.config.error_policy.dead_letter, "records", None)
    if isinstance(dead, list):
        out["__dead_letter__"] = (dead, len(dead))
    return out
