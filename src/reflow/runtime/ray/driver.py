"""The Ray driver (seed §3.5.4, §13.1): the same JobGraph, one Ray actor per subtask.

Each actor (``worker.SubtaskWorker``) builds and runs its one subtask as the
local executor does (``plan.build_subtask``, ``local.run_execution``): the
fused operator chain, its inbox ``Channel``, its routers; the edges between
actors are ``channel.RemoteChannel``s. Keyed routing is the local executor's
router, so key groups land on the same subtask indexes.

Ray's own retries are off (``max_restarts=0``, ``max_task_retries=0``): a
retried call could be applied twice or out of order. When any actor fails the
job fails, every actor of the job is killed, and the error names the step.

Checkpoints: the driver runs the ``CheckpointCoordinator`` over proxies of the
actors (each a ``CheckpointParticipant``). It injects barrier *n* into the
source actors; the barriers travel in-band through the same ordered calls as
the records; each actor snapshots when the barrier is aligned on all its inputs
and its acknowledgement (with the snapshot) reaches the driver through a
long-polling call. Once every subtask acknowledged, the driver writes the
checkpoint to the job's checkpoint storage (a folder or S3 -- never only Ray's
object store, which dies with its owner) and tells every actor to commit
(two-phase sinks). Checkpoints go on after some subtasks finished, as on the
local executor: a done actor acknowledges with its final state when asked, and
its sinks make their final commit once the whole job ended. Any actor failure
fails the whole attempt: every actor is killed and ``execute_with_recovery``
restarts the job from the last complete checkpoint under its restart strategy.

The actors of a job that ended cleanly are empty again after their final
commit; the driver keeps those that reserve nothing for this process's later
jobs (``pool.ActorPool``), which start on them in milliseconds instead of the
seconds a new worker process takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from reflow.checkpoint.coordinator import CheckpointCoordinator, CheckpointStats
from reflow.checkpoint.storage import CheckpointData, open_storage
from reflow.errors import ExecutionError
from reflow.graph.job import Job, JobStatus
from reflow.graph.job_graph import JobVertex, parse_memory_mb
from reflow.graph.stream_graph import NodeKind
from reflow.runtime.base import (
    ExecutionPart,
    ExecutionSnapshot,
    ExecutionTable,
    ExecutorSettings,
    JobResult,
)
from reflow.runtime.local import take_savepoint
from reflow.runtime.ray.channel import DEFAULT_MAX_IN_FLIGHT, SubtaskKey
from reflow.runtime.ray.pool import MAX_IDLE, ActorPool, placement_key
from reflow.runtime.ray.worker import Ack, Ending, PollAnswer, SubtaskWorker, WorkerOutcome

__all__ = ["RayExecutor"]

logger = logging.getLogger(__name__)

# How often each actor reports its live counters to the driver (for /metrics).
REPORT_SECONDS = 1.0


class _RayExecution:
    """A job running on Ray as the driver sees it: the counters each actor reported
    last (every ``RayExecutor.report_seconds``), its checkpoint coordinator."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.reports: dict[SubtaskKey, ExecutionPart] = {}
        self.actors: dict[SubtaskKey, Any] = {}
        self.coordinator: CheckpointCoordinator | None = None
        self.started = time.perf_counter()
        self.finished: float | None = None
        self.cancelled = False
        self.stopping = asyncio.Event()

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

    def snapshot(self) -> ExecutionSnapshot:
        end = self.finished if self.finished is not None else time.perf_counter()
        return ExecutionSnapshot.assemble(
            self.job,
            list(self.reports.values()),
            running=self.finished is None,
            elapsed_seconds=end - self.started,
            checkpoints=None if self.coordinator is None else self.coordinator.stats,
        )


@dataclass(slots=True)
class _Outcome:
    """How a job's run on Ray ended, as the driver saw it."""

    error: str | None
    step_id: str | None = None
    parts: list[ExecutionPart] = field(default_factory=list)
    collected: list[dict[str, list[Any]]] = field(default_factory=list)


class RayExecutor(ExecutionTable[_RayExecution]):
    """Runs jobs on a Ray cluster, one actor per subtask (``executor.type: distributed``).

    ``address`` is a running cluster's ``HOST:PORT`` (``ray start --head``); without
    it, an already initialised Ray is used, or a local one is started. Up to
    ``idle_actors`` actors of jobs that ended cleanly wait for later jobs of this
    process (``pool.ActorPool``; 0 keeps none).
    """

    runs_on_own_loops = False
    """The driver follows its actors from the loop it was created on."""

    def __init__(
        self,
        settings: ExecutorSettings | None = None,
        *,
        address: str | None = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        reserve_cpus: bool = False,
        start_timeout_s: float = 120.0,
        idle_actors: int = MAX_IDLE,
    ) -> None:
        super().__init__()
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
        self.idle_actors = idle_actors
        self.last_reused = 0
        """How many of the last job's actors were kept from earlier jobs."""
        self.last_actor_ids: dict[SubtaskKey, str] = {}
        """The Ray actor id of each subtask of the last job."""

    def pool_stats(self) -> dict[str, tuple[int, int]]:
        """No thread pools in the driver: the actors have their own."""
        return {}

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
        started_at = datetime.now(UTC)
        began = time.perf_counter()
        self.last_checkpoints = None
        execution = _RayExecution(job)
        self._track(execution)
        try:
            ray = self._ray()
            outcome = await self._run(ray, job, restore, execution)
        except ExecutionError as exc:
            outcome = _Outcome(str(exc))
        elapsed = time.perf_counter() - began
        execution.finished = time.perf_counter()
        error = outcome.error
        if execution.cancelled and error is None:
            job.cancel()
        elif error is None:
            job.complete()
            for collected in outcome.collected:
                _absorb(job, collected)
        else:
            job.fail(error)
        self._ended(execution, elapsed)
        return JobResult(
            job_id=job.job_id,
            job_name=job.job_name,
            status=job.status,
            metrics=ExecutionSnapshot.assemble(
                job, outcome.parts, running=False, elapsed_seconds=elapsed
            ).metrics,
            start_time=started_at,
            end_time=datetime.now(UTC),
            error=error,
            step_id=outcome.step_id,
            checkpoints=self.last_checkpoints,
        )

    async def _run(
        self, ray: Any, job: Job, restore: CheckpointData | None, execution: _RayExecution
    ) -> _Outcome:
        graph = job.job_graph
        worker_class = ray.remote(max_restarts=0, max_task_retries=0, max_concurrency=1000)(
            SubtaskWorker
        )
        options = self._actor_options(job, ray)
        _check_feasible(ray, job, options)
        self.last_actor_options = options
        pool = _session_pool(ray)
        pool.max_idle = self.idle_actors
        keys = {key: placement_key(opts) for key, opts in options.items()}
        actors: dict[SubtaskKey, Any] = {}
        execution.actors = actors
        coordinator_task: asyncio.Task[None] | None = None
        coordinator: CheckpointCoordinator | None = None
        ended_cleanly = False
        reusable = False
        creating = time.perf_counter()
        try:
            restore_ref = ray.put(restore) if restore is not None else None
            job_ref = ray.put(job)
            for attempt in (1, 2):
                reused = 0
                for key, opts in options.items():
                    actor = pool.take(keys[key]) if attempt == 1 and keys[key] is not None else None
                    if actor is None:
                        actor = worker_class.options(**opts).remote()
                    else:
                        reused += 1
                    actors[key] = actor
                self.last_reused = reused
                self.last_actor_ids = {key: a._actor_id.hex() for key, a in actors.items()}
                try:
                    started = await asyncio.wait_for(
                        asyncio.gather(
                            *(
                                a.start.remote(
                                    job_ref,
                                    key,
                                    self.settings,
                                    self.max_in_flight,
                                    actors,
                                    restore_ref,
                                )
                                for key, a in actors.items()
                            )
                        ),
                        self.start_timeout_s,
                    )
                    break
                except TimeoutError:
                    return _Outcome(
                        f"the job's {len(actors)} actors did not start within "
                        f"{self.start_timeout_s:g}s: the Ray cluster has no room for them now "
                        f"(each asks for {_describe(next(iter(options.values())))}); free "
                        "resources, add nodes, or lower the job's resources.cpu / resources.memory",
                    )
                except Exception as exc:  # an actor could not be placed or died starting
                    if attempt == 1 and reused:
                        # An idle actor died while it waited (its node left, out of
                        # memory): this attempt starts again, on new actors only.
                        logger.warning(
                            "job %s: starting on %d kept actors failed (%s); starting new ones",
                            job.job_id,
                            reused,
                            exc,
                        )
                        for actor in actors.values():
                            _kill(ray, actor)
                        pool.clear()
                        continue
                    return _Outcome(f"starting the job's actors failed: {exc}")
            proxies = {
                key: _RemoteSubtask(key, name or f"{key}", actor, graph.vertex(key[0]))
                for (key, actor), name in zip(actors.items(), started, strict=True)
            }
            self.last_start_seconds = time.perf_counter() - creating
            logger.info(
                "job %s: %d actors started in %.2fs (%d of them kept from earlier jobs)",
                job.job_id,
                len(actors),
                self.last_start_seconds,
                self.last_reused,
                extra={"job_id": job.job_id, "event": "ACTORS_STARTED"},
            )
            coordinator = self._coordinator(job, list(proxies.values()))
            execution.coordinator = coordinator
            for proxy in proxies.values():
                proxy.coordinator = coordinator
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
            parts: list[ExecutionPart] = []
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
                    # (a commit notice to a dead actor comes wrapped, naming the checkpoint)
                    dead = problem if problem is None else problem.__cause__ or problem
                    if isinstance(dead, ray.exceptions.RayActorError):
                        # The coordinator met a dead actor first: name the subtask
                        # lost, as its follower reports it.
                        return await _lost(dead, pending, proxies, graph, parts)
                    if problem is not None:  # a commit failed, or too many checkpoints did
                        for future in pending:
                            future.cancel()
                        return _Outcome(str(problem), getattr(problem, "step_id", None), parts)
                    coordinator_task = None
                if stopping in finished:  # stop(): the actors are killed below
                    for future in pending:
                        future.cancel()
                    return _Outcome(None, None, parts)
                done = [f for f in pending if f in finished]
                for future in done:
                    key = pending.pop(future)
                    try:
                        answer: WorkerOutcome = future.result()
                    except Exception as exc:  # the actor died (killed, out of memory, ...)
                        step = graph.vertex(key[0]).head.step_id
                        for other in pending:
                            other.cancel()
                        return _Outcome(
                            f"subtask {proxies[key].name} (step {step!r}) was lost: {_died(exc)}",
                            step,
                            parts,
                        )
                    parts.append(answer.part)
                    execution.reports[key] = answer.part
                    self.last_bytes_sent += answer.bytes_sent
                    self.last_cpu_seconds += answer.cpu_seconds
                    self.last_cpu_by_subtask[proxies[key].name] = answer.cpu_seconds
                    if answer.error is not None:
                        return await _first_cause(answer, pending, parts)
            stopping.cancel()
            # Every subtask ended cleanly: the checkpoint in progress completes, then
            # the sinks make their final commit and the sources commit what they read.
            if coordinator_task is not None:
                coordinator_task.cancel()
                await asyncio.gather(coordinator_task, return_exceptions=True)
                coordinator_task = None
            if coordinator is not None:
                problem = await coordinator.settle()
                if problem is not None:  # the restart commits that checkpoint again
                    return _Outcome(str(problem), getattr(problem, "step_id", None), parts)
            ended_cleanly = True
            try:
                endings: list[Ending] = await asyncio.gather(
                    *(_await(a.end_of_input.remote()) for a in actors.values())
                )
            except Exception as exc:  # an actor died between its end and the commit
                return _Outcome(f"the final commit failed: {_died(exc)}", None, parts)
            for key, ending in zip(actors, endings, strict=True):
                if ending.error is not None:
                    step = graph.vertex(key[0]).head.step_id
                    return _Outcome(f"the final commit failed: {ending.error}", step, parts)
            reusable = True  # every actor is empty again (end_of_input)
            return _Outcome(None, None, parts, [e.collected for e in endings])
        finally:
            if coordinator is not None and not ended_cleanly:
                coordinator.abandon()
            if coordinator_task is not None:
                if coordinator_task.done() and not coordinator_task.cancelled():
                    problem = coordinator_task.exception()
                    if problem is not None:
                        logger.warning(
                            "job %s: checkpoint coordinator stopped: %r", job.job_id, problem
                        )
                coordinator_task.cancel()
                await asyncio.gather(coordinator_task, return_exceptions=True)
            for key, actor in actors.items():
                kept = keys[key]
                if reusable and kept is not None:
                    pool.give(kept, actor)
                else:
                    _kill(ray, actor)

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
            list(proxies),
            parallelism,
            config.interval_ms,
            config.timeout_ms,
            config.tolerable_failures,
        )


async def _first_cause(
    answer: WorkerOutcome,
    pending: dict[asyncio.Task[WorkerOutcome], SubtaskKey],
    parts: list[ExecutionPart],
) -> _Outcome:
    """The job's failure. A subtask that failed only because the subtask it sends to
    broke names no step; the one that broke (if it reports within a second) does."""
    error, step_id = answer.error, answer.step_id
    if step_id is None and pending:
        done, _ = await asyncio.wait(pending, timeout=1.0)
        for future in done:
            if future.exception() is None:
                other = future.result()
                if other.error is not None and other.step_id is not None:
                    error, step_id = other.error, other.step_id
                    break
    for future in pending:
        future.cancel()
    return _Outcome(error, step_id, parts)


class _RemoteSubtask:
    """A subtask actor as the driver's checkpoint coordinator drives it."""

    def __init__(self, key: SubtaskKey, name: str, actor: Any, vertex: JobVertex) -> None:
        self.key = key
        self.name = name
        self.actor = actor
        self.is_source = vertex.head.kind is NodeKind.SOURCE
        self.finished = False
        self.done = False
        """The actor reported its subtask done (it polls no more)."""
        self.coordinator: CheckpointCoordinator | None = None

    def _forward(self, acks: list[Ack]) -> None:
        if self.coordinator is not None:
            for checkpoint_id, name, states, alignment_s in acks:
                self.coordinator.acknowledge(checkpoint_id, name, states, alignment_s)

    async def acknowledge_finished(self, checkpoint_id: int) -> None:
        self._forward(await self.actor.acknowledge_finished.remote(checkpoint_id))

    async def inject_barrier(self, checkpoint_id: int) -> None:
        self._forward(await self.actor.inject_barrier.remote(checkpoint_id))

    async def notify_complete(self, checkpoint_id: int) -> None:
        await self.actor.notify_complete.remote(checkpoint_id)


async def _follow(
    actor: Any,
    coordinator: CheckpointCoordinator | None,
    proxy: _RemoteSubtask,
    execution: _RayExecution,
    report_seconds: float,
) -> WorkerOutcome:
    """Hand an actor's checkpoint acknowledgements to the coordinator and its live
    counters to the execution's view, until it ends."""
    while True:
        answer: PollAnswer = await actor.poll.remote(report_seconds)
        execution.reports[proxy.key] = answer.part
        if coordinator is not None:
            for checkpoint_id, name, states, alignment_s in answer.acks:
                coordinator.acknowledge(checkpoint_id, name, states, alignment_s)
        if answer.done is not None:
            proxy.finished = proxy.done = True
            if coordinator is not None and answer.done.error is None:
                # Checkpoints in progress whose barriers it will never see now.
                for checkpoint_id in coordinator.pending_for(proxy.name):
                    await proxy.acknowledge_finished(checkpoint_id)
            return answer.done


async def _await(ref: Any) -> Any:
    return await ref


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
    parts: list[ExecutionPart],
) -> _Outcome:
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
            return _Outcome(
                f"subtask {proxies[key].name} (step {step!r}) was lost: {cause}", step, parts
            )
    return _Outcome(f"a subtask was lost: {_died(problem)}", None, parts)


def _absorb(job: Job, collected: dict[str, list[Any]]) -> None:
    """Give the driver's in-memory sinks what their copies in the actors collected."""
    for node in job.stream_graph.nodes:
        records = collected.get(node.step_id)
        if records is not None and node.kind is NodeKind.SINK:
            node.payload.records.extend(records)
    dead = collected.get("__dead_letter__")
    if dead is not None:
        job.config.error_policy.dead_letter.records.extend(dead)


_POOLS: dict[str, ActorPool] = {}
"""The idle actors of this process's Ray session (by its driver's job id)."""


def _session_pool(ray: Any) -> ActorPool:
    session = ray.get_runtime_context().get_job_id()
    pool = _POOLS.get(session)
    if pool is None:
        _POOLS.clear()  # an earlier session's actors ended with it
        pool = _POOLS[session] = ActorPool(lambda actor: _kill(ray, actor))
    return pool


def _kill(ray: Any, actor: Any) -> None:
    with contextlib.suppress(Exception):  # (already dead)
        ray.kill(actor, no_restart=True)
