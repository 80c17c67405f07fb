"""The local executor: runs a Job's JobGraph as asyncio subtasks in this process (seed §3.5).

Each JobVertex runs as ``parallelism`` subtasks; every subtask of a vertex
with inputs has one bounded inbox channel. Blocking work goes to two bounded
thread pools (seed §6.1 ``executor.threadPool``, §10.4 io/compute). The
subtasks only meet through ``Channel`` objects; a Ray actor builds and runs its
one subtask with the same ``make_plan``/``build_subtask`` and ``run_execution``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from reflow.checkpoint.coordinator import CheckpointCoordinator
from reflow.checkpoint.storage import CheckpointData, open_storage
from reflow.connectors.base import END_OF_INPUT, SinkWriter
from reflow.errors import ExecutionError, ReflowError
from reflow.graph.job import Job, JobStatus
from reflow.runtime.base import ExecutionTable, ExecutorSettings, JobResult
from reflow.runtime.collector import collector_tuned
from reflow.runtime.loops import await_in_loop, call_in_loop
from reflow.runtime.plan import Execution, build_subtask, make_plan
from reflow.runtime.task import Subtask

__all__ = [
    "LocalExecutor",
    "ThreadPools",
    "close_writer",
    "end_of_input",
    "run_execution",
    "take_savepoint",
]

logger = logging.getLogger(__name__)


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


class ThreadPools:
    """An executor's I/O and compute pools (started on first use), and a job's own
    where its config sizes them (seed §10.4 ``resources.threadPool``)."""

    def __init__(self, settings: ExecutorSettings) -> None:
        self.settings = settings
        self._io_pool: ThreadPoolExecutor | None = None
        self._compute_pool: ThreadPoolExecutor | None = None

    def shared(self) -> tuple[ThreadPoolExecutor, ThreadPoolExecutor]:
        if self._io_pool is None or self._compute_pool is None:
            self._io_pool = _pool(
                self.settings.io_threads, "reflow-io", self.settings.io_threads_started
            )
            self._compute_pool = _pool(self.settings.compute_threads, "reflow-compute")
        return self._io_pool, self._compute_pool

    def for_job(self, execution: Execution) -> tuple[ThreadPoolExecutor, ThreadPoolExecutor]:
        """The shared pools, or the job's own where its config sizes them (closed
        with ``execution.close_own_pools``)."""
        io_pool, compute_pool = self.shared()
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

    def stats(self) -> dict[str, tuple[int, int]]:
        """Pool -> (active threads, queued tasks) (threadpool.active / queue.size)."""
        stats = {}
        for name, pool in (("io", self._io_pool), ("compute", self._compute_pool)):
            if pool is None:
                stats[name] = (0, 0)
                continue
            threads = len(pool._threads)
            idle = pool._idle_semaphore._value
            stats[name] = (max(threads - idle, 0), pool._work_queue.qsize())
        return stats

    def close(self) -> None:
        for pool in (self._io_pool, self._compute_pool):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        self._io_pool = self._compute_pool = None


class LocalExecutor(ExecutionTable[Execution]):
    """Runs jobs in this process on asyncio (the seed's single-node mode)."""

    runs_on_own_loops = True

    def __init__(self, settings: ExecutorSettings | None = None) -> None:
        super().__init__()
        self.settings = settings or ExecutorSettings()
        self.pools = ThreadPools(self.settings)

    def close(self) -> None:
        """Shut the thread pools down."""
        self.pools.close()

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
        execution = Execution(job)
        execution.loop = asyncio.get_running_loop()
        self._track(execution)
        try:
            self._build(execution, restore)
        except ReflowError as exc:
            execution.close_own_pools()
            job.start()
            job.fail(str(exc))
            execution.finished = time.perf_counter()
            self._ended(execution, execution.finished - execution.started)
            return _result(execution, exc)
        if job.status is JobStatus.FAILED:
            job.retry()
        else:
            job.start()
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
                error = await run_execution(execution)
        finally:
            if execution.state is not None:
                execution.state.close()
        execution.finished = time.perf_counter()
        if execution.dead_letters is not None:
            await close_writer(execution.dead_letters.writer, error is None)
        execution.close_own_pools()
        if execution.cancelled:
            job.cancel()
        elif error is None:
            job.complete()
        else:
            job.fail(str(error))
        result = _result(execution, error)
        self._ended(execution, result.metrics.elapsed_seconds)
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
        execution = self._execution(job_id)
        execution.cancelled = True
        call_in_loop(execution.loop, _cancel, execution)

    def pause(self, job_id: str) -> None:
        """Stop the sources reading; records in flight drain."""
        execution = self._execution(job_id)
        execution.job.pause()
        if execution.plan is not None:
            call_in_loop(execution.loop, execution.plan.gate.clear)

    def resume(self, job_id: str) -> None:
        execution = self._execution(job_id)
        execution.job.resume()
        if execution.plan is not None:
            call_in_loop(execution.loop, execution.plan.gate.set)

    def pool_stats(self) -> dict[str, tuple[int, int]]:
        return self.pools.stats()

    def execution(self, job_id: str) -> Execution:
        """The live objects of a job's execution (for tests of the runtime itself)."""
        return self._execution(job_id)

    # -- building --------------------------------------------------------------------------

    def _build(self, execution: Execution, restore: CheckpointData | None) -> None:
        job = execution.job
        plan = execution.plan = make_plan(
            job, self.settings, self.pools.for_job(execution), restore
        )
        for vertex in job.job_graph.vertices:
            for index in range(vertex.parallelism):
                execution.subtasks.append(build_subtask(plan, vertex, index))
        config = job.config.checkpoint
        if config is not None:
            execution.coordinator = CheckpointCoordinator(
                job,
                open_storage(config.path, config.retained),
                self.settings.clock,
                list(execution.subtasks),
                {
                    node.step_id: vertex.parallelism
                    for vertex in job.job_graph.vertices
                    for node in vertex.chained_nodes
                },
                config.interval_ms,
                config.timeout_ms,
                config.tolerable_failures,
            )
            for subtask in execution.subtasks:
                subtask.acks = execution.coordinator


# -- running -------------------------------------------------------------------------------


async def run_execution(
    execution: Execution, *, defer_final_commit: bool = False
) -> BaseException | None:
    """Run the execution's subtasks (and its checkpoint coordinator) to their end; the
    error that ended them, if any.

    After a clean end the sinks kept open for checkpoints are flushed and the
    sources commit what they read (``END_OF_INPUT``); with ``defer_final_commit``
    both stay open instead, for ``end_of_input`` to do that once the whole job
    ended cleanly (a Ray actor's subtask: the driver says when)."""
    if execution.dead_letters is not None:
        await execution.dead_letters.open()
    for subtask in execution.subtasks:
        # Sources commit what they read once the whole job has ended (_final_commit).
        subtask.reader_closed_by_executor = subtask.reader is not None
        # With checkpoints, sinks of subtasks that finish early go on taking part in
        # them; they are flushed (the final commit) once the whole job ended.
        subtask.writers_closed_by_executor = subtask.acks is not None and any(
            stage.writer is not None for stage in subtask.stages
        )
    plan = execution.plan
    with collector_tuned(None if plan is None else plan.settings.gc_threshold):
        return await _run_subtasks(execution, defer_final_commit)


async def _run_subtasks(execution: Execution, defer_final_commit: bool) -> BaseException | None:
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
            error = await execution.coordinator.settle()
            ended_cleanly = error is None
        else:
            execution.coordinator.abandon()
    if ended_cleanly and defer_final_commit:
        return None  # end_of_input() flushes, commits and closes
    if ended_cleanly:
        error = await _flush_writers(execution.subtasks)
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


async def end_of_input(execution: Execution) -> str | None:
    """The final commit of an execution that ended cleanly with it deferred: the
    sinks kept open write what they hold, the sources commit what they read, and
    both close; the error, if the commit failed."""
    error = await _flush_writers(execution.subtasks)
    if error is None:
        error = await _final_commit(execution.subtasks)
    await _close_readers(execution.subtasks)
    await _close_writers(execution.subtasks)
    return None if error is None else str(error)


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


def _result(execution: Execution, error: BaseException | None) -> JobResult:
    job = execution.job
    return JobResult(
        job_id=job.job_id,
        job_name=job.job_name,
        status=job.status,
        metrics=execution.snapshot().metrics,
        start_time=job.start_time,
        end_time=job.end_time,
        error=None if error is None else str(error),
        step_id=getattr(error, "step_id", None),
        exception=error,
        checkpoints=None if execution.coordinator is None else execution.coordinator.stats,
    )


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _cancel(execution: Execution) -> None:
    if execution.plan is not None:
        execution.plan.gate.set()
    for task in execution.tasks:
        task.cancel()


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


async def close_writer(writer: SinkWriter, flush: bool) -> None:
    try:
        if flush:
            await writer.flush()
    finally:
        await writer.close()
