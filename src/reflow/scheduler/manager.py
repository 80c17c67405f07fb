"""The job manager (seed §2.2.3, §3.4.3, §4.3): schedules jobs, queues and dispatches runs.

``JobManager`` implements the seed's scheduler interface — ``schedule(job,
policy)``, ``cancel``, ``pause``, ``resume``, ``get_status`` — over a persistent
``JobStore``. One loop (``step``) answers commands, fires due cron schedules,
and starts queued runs by priority (with aging) while their declared resources
(parallelism as slots, memory) fit. A completed run triggers the jobs that
depend on it; a posted event triggers the jobs waiting for it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reflow.checkpoint.storage import CheckpointData
from reflow.errors import ReflowError
from reflow.graph.job import Job, JobStatus, check_job_id
from reflow.graph.job_graph import parse_memory_mb
from reflow.loading import FILE_MODULE_PREFIX
from reflow.runtime import (
    Executor,
    ExecutorSettings,
    JobResult,
    create_executor,
    execute_with_recovery,
)
from reflow.runtime.loops import run_in_own_loop
from reflow.scheduler.autoscaler import Autoscaler
from reflow.scheduler.cron import ScheduleError
from reflow.scheduler.policies import (
    CronPolicy,
    CustomPolicy,
    DependencyPolicy,
    EventPolicy,
    ImmediatePolicy,
    SchedulePolicy,
    check_storable,
    policy_from_dict,
)
from reflow.scheduler.queue import JobQueue, QueuedRun
from reflow.scheduler.rescale import PendingRescale, RescaleResult
from reflow.scheduler.scaling import Scaling
from reflow.scheduler.store import PYTHON_JOB_PREFIX, JobRecord, JobStore

__all__ = ["JobManager", "ScheduleResult", "ScheduleStatus"]

logger = logging.getLogger(__name__)

# A cron fire time older than this when the manager sees it was missed (downtime):
# the job's misfire policy decides whether it runs once or waits.
MISFIRE_THRESHOLD_MS = 60_000
# How often the manager loop looks at the store, its commands and the clock.
POLL_SECONDS = 0.2
SHUTDOWN_GRACE_SECONDS = 20
"""How long a stopping manager waits for its runs to end."""


def memory_mb(text: str | None) -> int:
    """``4g`` / ``512m`` -> megabytes (0 when not given)."""
    try:
        return parse_memory_mb(text)
    except ValueError as exc:
        raise ScheduleError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class ScheduleResult:
    job_id: str
    run_id: str | None
    """The run queued right away (immediate policy), if any."""


@dataclass(frozen=True, slots=True)
class ScheduleStatus:
    job_id: str
    state: str
    policy: dict[str, Any]
    next_fire_time: datetime | None
    queued: int
    running: int
    last_run_status: str | None


@dataclass(slots=True)
class _Running:
    run_id: str
    job_id: str
    job: Job
    task: asyncio.Task[Any]
    slots: int
    memory: int
    rescale: PendingRescale | None = None


class JobManager:
    def __init__(
        self,
        store: JobStore,
        *,
        settings: ExecutorSettings | None = None,
        slots: int = 4,
        memory_mb: int | None = None,
        queue_size: int = 1000,
        aging_seconds: float = 60.0,
        loader: Callable[[str, str], Job] | None = None,
        executor: Executor | None = None,
        isolate_runs: bool = False,
        max_runs: int | None = None,
        autoscaler_defaults: Mapping[str, Any] | None = None,
    ) -> None:
        """``loader(yaml_text, folder)`` builds a Job from a stored job file
        (``reflow.config.job_loader`` for YAML files). ``executor``: where runs go
        (default: a LocalExecutor; a RayExecutor for ``executor.type: distributed``).
        ``isolate_runs``: run each local run on an event loop in a thread of its own,
        so that a user function that blocks stalls neither the manager, the API on
        its loop, nor the other runs (``reflow serve`` does; Ray runs are elsewhere
        already). ``max_runs``: how many runs may execute at once (the system config's
        ``scheduler.threadPoolSize``, as Quartz's thread count), whatever slots are free.
        ``autoscaler_defaults``: the system config's ``autoscaler:`` (as
        ``AutoscalerConfig`` takes it), under every job's own block."""
        self.store = store
        self.loader = loader
        self.settings = settings or ExecutorSettings()
        self.clock = self.settings.clock
        self.slots = slots
        self.max_runs = max_runs
        self.autoscaler_defaults = dict(autoscaler_defaults or {})
        self.memory_mb = memory_mb
        self.queue = JobQueue(queue_size, aging_seconds)
        self.executor = executor or create_executor(self.settings)
        self.isolate_runs = isolate_runs and self.executor.runs_on_own_loops
        self.running: dict[str, _Running] = {}
        self.started: list[str] = []
        """Run ids in the order they started (for tests and the history)."""
        self._known_queued: set[str] = set()
        self._custom: dict[str, asyncio.Task[None]] = {}
        """The trigger loop of each active job under a custom policy."""
        self._custom_broken: set[str] = set()
        self.scaling = Scaling(self)
        self.alive = False
        """True while ``run_forever`` loops (the health check's scheduler status)."""

    # -- the seed's scheduler interface (§3.4.3) ---------------------------------------

    def schedule(
        self,
        spec: str | Path | Job | Any,
        policy: SchedulePolicy | None = None,
        *,
        priority: int | None = None,
        source_dir: str | None = None,
    ) -> ScheduleResult:
        """Register a job under a policy: a job file path or its YAML text; a Job or
        Flow built in Python (kept by reference to where it is defined, found among
        the imported modules); or a reference to one, ``"module:attr"`` or
        ``"file.py:attr"``. The store keeps references and YAML, never pickles, so a
        Python job is built again from its module for every run.

        Raises:
            ConfigError: the job file is invalid (with line numbers).
            ScheduleError: the policy is invalid or cannot be stored, a dependency
                would form a cycle, or a Python job cannot be found by reference.
        """
        text, folder = _spec_text(spec, source_dir)
        job = self._build(text, folder)
        if job.id_generated and text.startswith(PYTHON_JOB_PREFIX):
            # Built again for every run, it would get another id each time: its name
            # is its id in the store (as `id:` defaults to nothing else in YAML).
            job.job_id = check_job_id(_as_id(job.job_name))
        if policy is None:
            block = job.metadata.get("schedule")
            policy = policy_from_dict(block) if block else ImmediatePolicy()
        if priority is None:
            priority = int(job.metadata.get("priority", 0))
        if isinstance(policy, DependencyPolicy):
            self._check_cycle(job.job_id, policy)
        self._check_fits(job)
        stored = check_storable(policy)
        run_now = isinstance(policy, ImmediatePolicy)
        run_id = self.store.put_job(
            job.job_id,
            job.job_name,
            text,
            folder,
            stored,
            priority,
            run_now,
            self.clock.now_ms(),
        )
        if isinstance(policy, CronPolicy):
            self.store.set_last_fire(job.job_id, self.clock.now_ms())
        self._stop_custom(job.job_id)  # a new policy replaces the old one's triggers
        logger.info(
            "job %s scheduled: %s, priority %d",
            job.job_id,
            stored,
            priority,
            extra={"job_id": job.job_id, "event": "JOB_SCHEDULED"},
        )
        return ScheduleResult(job.job_id, run_id)

    def cancel(self, job_id: str) -> None:
        """Stop scheduling the job, drop its queued runs, cancel its running ones."""
        self._job_or_raise(job_id)
        self.store.set_job_state(job_id, "cancelled")
        for queued in self.queue.remove_job(job_id):
            self.store.set_run_status(queued.run_id, "CANCELLED", "the job was cancelled")
        for record in self.store.runs(job_id, "QUEUED"):
            self.store.set_run_status(record.run_id, "CANCELLED", "the job was cancelled")
        for running in list(self.running.values()):
            if running.job_id == job_id:
                self.executor.stop_nowait(running.run_id)

    def pause(self, job_id: str) -> None:
        """Stop triggering the job and pause its running runs (their sources stop reading)."""
        self._job_or_raise(job_id)
        self.store.set_job_state(job_id, "paused")
        for running in self.running.values():
            if running.job_id == job_id and running.job.status is JobStatus.RUNNING:
                self.executor.pause(running.run_id)
                self.store.set_run_status(running.run_id, "PAUSED")

    def resume(self, job_id: str) -> None:
        self._job_or_raise(job_id)
        self.store.set_job_state(job_id, "active")
        for running in self.running.values():
            if running.job_id == job_id and running.job.status is JobStatus.PAUSED:
                self.executor.resume(running.run_id)
                self.store.set_run_status(running.run_id, "RUNNING")

    def get_status(self, job_id: str) -> ScheduleStatus:
        record = self._job_or_raise(job_id)
        policy = _plain_policy(record)
        next_fire = None
        if isinstance(policy, CronPolicy) and record.state == "active":
            last = record.last_fire_ms or self.clock.now_ms()
            next_fire = policy.next_fire_time(datetime.fromtimestamp(last / 1000, UTC))
        runs = self.store.runs(job_id)
        return ScheduleStatus(
            job_id,
            record.state,
            record.policy,
            next_fire,
            sum(1 for r in runs if r.status == "QUEUED"),
            sum(1 for r in runs if r.status in ("RUNNING", "PAUSED")),
            next((r.status for r in reversed(runs) if r.status != "QUEUED"), None),
        )

    def trigger(self, job_id: str) -> str:
        """Queue a run now, whatever the policy (not of a paused or cancelled job,
        whose runs would wait in the queue forever)."""
        record = self._job_or_raise(job_id)
        if record.state != "active":
            raise ScheduleError(
                f"job {job_id!r} is {record.state}: its runs do not start; "
                f"`reflow resume {job_id}` first, then trigger it"
            )
        return self.store.queue_run(job_id, "manual", record.priority, self.clock.now_ms())

    def post_event(self, name: str) -> list[str]:
        """Queue a run of every active job waiting for event ``name``."""
        queued = []
        for record in self.store.jobs():
            policy = _plain_policy(record)
            if (
                record.state == "active"
                and isinstance(policy, EventPolicy)
                and policy.event == name
            ):
                queued.append(
                    self.store.queue_run(
                        record.job_id, f"event:{name}", record.priority, self.clock.now_ms()
                    )
                )
        logger.info("event %s posted: %d runs queued", name, len(queued), extra={"event": "EVENT"})
        return queued

    # -- the loop --------------------------------------------------------------------

    def recover(self) -> None:
        """After a (re)start: runs interrupted by a dead manager are FAILED, queued ones reload."""
        for run_id in self.store.fail_interrupted():
            logger.warning("run %s was in progress when the manager stopped: FAILED", run_id)
        self._load_queued()

    def _load_queued(self) -> None:
        jobs = {j.job_id: j for j in self.store.jobs()}
        for run in self.store.runs(status="QUEUED"):
            if run.run_id in self._known_queued:
                continue
            record = jobs.get(run.job_id)
            if record is None:
                continue
            job = self._build_for_run(run.run_id, record)
            if job is None:
                continue
            self.queue.push(
                QueuedRun(
                    run.run_id,
                    run.job_id,
                    run.priority,
                    run.queued_ms,
                    slots=job.job_graph.max_parallelism,
                    payload=memory_mb(job.metadata.get("memory")),
                )
            )
            self._known_queued.add(run.run_id)

    async def step(self) -> None:
        """One round: commands, cron and dependency triggers, dispatch."""
        self._commands()
        self._fire_crons()
        self._follow_custom()
        self._load_queued()
        self._dispatch()
        self.scaling.autoscale()
        await asyncio.sleep(0)

    async def run_forever(self) -> None:
        self.recover()
        self.alive = True
        try:
            while True:
                await self.step()
                await self.clock.sleep(POLL_SECONDS)
        finally:
            self.alive = False
            await self.scaling.close()  # no rescale may restart a run after this
            for job_id in list(self._custom):
                self._stop_custom(job_id)
            for running in list(self.running.values()):
                await self.executor.stop(running.run_id)
            tasks = [r.task for r in self.running.values()]
            if tasks:
                _, stuck = await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE_SECONDS)
                for task in stuck:  # a user function holds its loop: leave it behind
                    run = next((r for r in self.running.values() if r.task is task), None)
                    logger.error(
                        "run %s did not stop within %d s (a step blocks its event loop); "
                        "it is marked FAILED when the manager starts again",
                        run.run_id if run else "?",
                        SHUTDOWN_GRACE_SECONDS,
                        extra={"event": "RUN_ABANDONED"},
                    )
            self.executor.close()

    def _commands(self) -> None:
        for command_id, kind, target in self.store.pending_commands():
            try:
                if kind == "cancel":
                    self.cancel(target)
                elif kind == "pause":
                    self.pause(target)
                elif kind == "resume":
                    self.resume(target)
                elif kind == "event":
                    target = f"{len(self.post_event(target))} runs queued"
                elif kind == "rescale":  # answered when the run runs again
                    self.scaling.command(command_id, target)
                    continue
                result = f"ok: {target}"
            except ReflowError as exc:
                result = f"error: {exc}"
            self.store.finish_command(command_id, result)

    def _fire_crons(self) -> None:
        now_ms = self.clock.now_ms()
        now = datetime.fromtimestamp(now_ms / 1000, UTC)
        for record in self.store.jobs():
            if record.state != "active" or record.policy.get("policy") != "cron":
                continue
            policy = policy_from_dict(record.policy)
            assert isinstance(policy, CronPolicy)
            last = datetime.fromtimestamp((record.last_fire_ms or now_ms) / 1000, UTC)
            due = policy.schedule.fire_times(last, now)
            if not due:
                continue
            newest = int(due[-1].timestamp() * 1000)
            missed = now_ms - newest > MISFIRE_THRESHOLD_MS
            busy = any(r.job_id == record.job_id for r in self.queue.runs) or any(
                r.job_id == record.job_id for r in self.running.values()
            )
            if (missed and policy.misfire == "skip") or (busy and policy.overlap == "skip"):
                self.store.set_last_fire(record.job_id, newest)
                continue
            trigger = f"cron:{due[-1].isoformat()}"
            if len(due) > 1:
                trigger += f" ({len(due)} fire times, run once)"
            self.store.queue_run(record.job_id, trigger, record.priority, now_ms, fire_ms=newest)

    def _follow_custom(self) -> None:
        """Run the triggers of each active job under a custom policy (seed §8.3); stop
        those of jobs paused, cancelled or rescheduled."""
        active = set()
        for record in self.store.jobs():
            if record.state != "active" or record.policy.get("policy") != "custom":
                continue
            active.add(record.job_id)
            if record.job_id in self._custom or record.job_id in self._custom_broken:
                continue
            try:
                policy = policy_from_dict(record.policy, allow_custom=True)
            except ScheduleError as exc:  # its module is missing here: say so once
                self._custom_broken.add(record.job_id)
                logger.error(
                    "job %s is not triggered: %s",
                    record.job_id,
                    exc,
                    extra={"job_id": record.job_id, "event": "POLICY_BROKEN"},
                )
                continue
            assert isinstance(policy, CustomPolicy)
            self._custom[record.job_id] = asyncio.ensure_future(
                self._custom_triggers(record.job_id, policy)
            )
        for job_id in set(self._custom) - active:
            self._stop_custom(job_id)

    def _stop_custom(self, job_id: str) -> None:
        self._custom_broken.discard(job_id)
        task = self._custom.pop(job_id, None)
        if task is not None:
            task.cancel()

    async def _custom_triggers(self, job_id: str, policy: CustomPolicy) -> None:
        try:
            async for fire_ms in policy.triggers(self.clock):
                record = self.store.job(job_id)
                if record is None or record.state != "active":
                    return
                if not policy.should_execute(job_id):
                    logger.info(
                        "job %s: custom trigger at %d, should_execute said no",
                        job_id,
                        fire_ms,
                        extra={"job_id": job_id, "event": "TRIGGER_DECLINED"},
                    )
                    continue
                self.store.queue_run(
                    job_id, f"custom:{type(policy).__name__}", record.priority, self.clock.now_ms()
                )
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug in a user policy must not kill the manager
            logger.exception(
                "the custom policy of job %s failed; the job is no longer triggered",
                job_id,
                extra={"job_id": job_id, "event": "POLICY_FAILED"},
            )

    def _free(self) -> tuple[int, int | None]:
        used = sum(r.slots for r in self.running.values())
        memory = None
        if self.memory_mb is not None:
            memory = self.memory_mb - sum(r.memory for r in self.running.values())
        return self.slots - used, memory

    def _eligible(
        self, jobs: dict[str, JobRecord], free_memory: int | None
    ) -> Callable[[QueuedRun], bool]:
        busy_jobs = {r.job_id for r in self.running.values()}

        def eligible(run: QueuedRun) -> bool:
            record = jobs.get(run.job_id)
            if record is None or record.state != "active":
                return False
            overlap = record.policy.get("overlap", "queue")
            if run.job_id in busy_jobs and overlap != "allow":
                return False  # one run of a job at a time unless overlap: allow
            return free_memory is None or int(run.payload or 0) <= free_memory

        return eligible

    def _dispatch(self) -> None:
        while True:
            if self.max_runs is not None and len(self.running) >= self.max_runs:
                return
            free_slots, free_memory = self._free()
            jobs = {j.job_id: j for j in self.store.jobs()}
            run = self.queue.pop(self.clock.now_ms(), free_slots, self._eligible(jobs, free_memory))
            if run is None:
                return
            self._known_queued.discard(run.run_id)
            if not self.store.claim_run(run.run_id):
                continue
            record = jobs[run.job_id]
            self._start(run, record)

    def _build_for_run(self, run_id: str, record: JobRecord) -> Job | None:
        """The run's job, or None after marking the run FAILED when it cannot be built
        (its job file or Python module changed or went away since it was scheduled)."""
        try:
            return self._build(record.spec, record.source_dir)
        except ReflowError as exc:
            logger.error(
                "run %s of job %s cannot start: %s",
                run_id,
                record.job_id,
                exc,
                extra={"job_id": record.job_id, "event": "JOB_FAILED"},
            )
            self.store.set_run_status(run_id, "FAILED", f"the job cannot be built: {exc}")
            return None

    def _start(self, run: QueuedRun, record: JobRecord) -> None:
        job = self._build_for_run(run.run_id, record)
        if job is None:
            return
        job.job_id = run.run_id  # one executor entry and checkpoint folder per run
        job.metadata["scheduled_job_id"] = record.job_id
        task = asyncio.ensure_future(self._execute(run.run_id, record.job_id, job))
        self.running[run.run_id] = _Running(
            run.run_id, record.job_id, job, task, run.slots, int(run.payload or 0)
        )
        self.started.append(run.run_id)

    async def _execute(self, run_id: str, job_id: str, job: Job) -> None:
        restore: CheckpointData | None = None
        try:
            while True:
                result = await self._run_once(job, restore)
                running = self.running.get(run_id)
                pending = running.rescale if running is not None else None
                data = None if pending is None else await pending.savepoint
                if running is None or pending is None or data is None:
                    break
                running.rescale = None
                job, restore = pending.job, data
                running.job = job
                pending.restarted.set()
            status, error = result.status.value, result.error
        except Exception as exc:  # a bug must not kill the manager
            logger.exception("run %s of job %s crashed", run_id, job_id)
            status, error = "FAILED", str(exc)
        finally:
            self.running.pop(run_id, None)
            self.scaling.autoscalers.pop(run_id, None)
        self.store.set_run_status(run_id, status, error)
        logger.info(
            "run %s of job %s: %s",
            run_id,
            job_id,
            status,
            extra={"job_id": job_id, "event": f"JOB_{status}"},
        )
        if status == "COMPLETED":
            self._after_success(job_id)
        self._dispatch()

    async def _run_once(self, job: Job, restore: CheckpointData | None) -> JobResult:
        if self.isolate_runs:
            return await run_in_own_loop(
                lambda: execute_with_recovery(self.executor, job, restore),
                name=f"reflow-run-{job.job_id}",
            )
        return await execute_with_recovery(self.executor, job, restore)

    async def rescale(
        self,
        job_id: str,
        parallelism: int | None = None,
        steps: Mapping[str, int] | None = None,
    ) -> list[RescaleResult]:
        """Rescale the running runs of ``job_id`` (or the run ``job_id``): each takes
        a savepoint, stops, and runs again at the new parallelism from it."""
        return await self.scaling.rescale(job_id, parallelism, steps)

    @property
    def autoscalers(self) -> dict[str, Autoscaler]:
        """The autoscaler of each running run whose job has one."""
        return self.scaling.autoscalers

    def _after_success(self, upstream: str) -> None:
        for record in self.store.jobs():
            policy = _plain_policy(record)
            if record.state != "active" or not isinstance(policy, DependencyPolicy):
                continue
            if upstream not in policy.upstream:
                continue
            satisfied = sorted(set(record.satisfied) | {upstream})
            if set(satisfied) >= set(policy.upstream):
                self.store.set_satisfied(record.job_id, [])
                self.store.queue_run(
                    record.job_id,
                    f"after:{','.join(policy.upstream)}",
                    record.priority,
                    self.clock.now_ms(),
                )
            else:
                self.store.set_satisfied(record.job_id, satisfied)

    # -- helpers ---------------------------------------------------------------------

    def _build(self, text: str, folder: str) -> Job:
        if self.loader is None:
            raise ScheduleError("the job manager has no job loader (pass loader=job_loader)")
        return self.loader(text, folder)

    def _job_or_raise(self, job_id: str) -> JobRecord:
        record = self.store.job(job_id)
        if record is None:
            known = ", ".join(j.job_id for j in self.store.jobs()) or "none"
            raise ScheduleError(f"no job {job_id!r} in the store (jobs: {known})")
        return record

    def _check_fits(self, job: Job) -> None:
        """Refuse a job whose runs could never start: more slots or memory than the
        manager has at all (its runs would wait in the queue forever)."""
        needs = job.job_graph.max_parallelism
        if needs > self.slots:
            raise ScheduleError(
                f"job {job.job_id!r} needs {needs} slots (its largest parallelism) but the "
                f"manager has {self.slots}: lower the job's parallelism, or give the manager "
                f"more slots (reflow serve --slots {needs})"
            )
        memory = memory_mb(job.metadata.get("memory"))
        if self.memory_mb is not None and memory > self.memory_mb:
            raise ScheduleError(
                f"job {job.job_id!r} asks for {memory} MB (resources.memory) but the manager "
                f"has {self.memory_mb} MB for runs: lower resources.memory, or start reflow "
                f"serve with --memory {memory}m or more"
            )

    def _check_cycle(self, job_id: str, policy: DependencyPolicy) -> None:
        graph: dict[str, tuple[str, ...]] = {}
        for record in self.store.jobs():
            other = _plain_policy(record)
            if isinstance(other, DependencyPolicy):
                graph[record.job_id] = other.upstream
        graph[job_id] = policy.upstream

        def visit(node: str, path: list[str]) -> list[str] | None:
            if node in path:
                return [*path[path.index(node) :], node]
            for upstream in graph.get(node, ()):
                found = visit(upstream, [*path, node])
                if found:
                    return found
            return None

        cycle = visit(job_id, [])
        if cycle:
            raise ScheduleError(
                "dependency cycle: " + " -> ".join(reversed(cycle)) + "; a job cannot "
                "(indirectly) wait for itself"
            )


_PYTHON_REFERENCE = re.compile(r"^(?:[^\n:]+\.py|[A-Za-z_][\w.]*)(?::[A-Za-z_][\w.]*)?$")


def _spec_text(spec: Any, source_dir: str | None) -> tuple[str, str]:
    if isinstance(spec, Path) or (
        isinstance(spec, str) and "\n" not in spec and spec.endswith((".yaml", ".yml"))
    ):
        path = Path(spec)
        try:
            return path.read_text(encoding="utf-8"), str(path.resolve().parent)
        except OSError as exc:
            raise ScheduleError(f"cannot read job file {path}: {exc.strerror}") from None
    if isinstance(spec, str) and _PYTHON_REFERENCE.match(spec) and (":" in spec or ".py" in spec):
        where, colon, attr = spec.partition(":")
        if where.endswith(".py"):
            where = str(Path(where).resolve())
        return PYTHON_JOB_PREFIX + where + colon + attr, source_dir or str(Path.cwd())
    if isinstance(spec, str):
        return spec, source_dir or str(Path.cwd())
    return PYTHON_JOB_PREFIX + _reference_of(spec), str(Path.cwd())


def _reference_of(job: Any) -> str:
    """Where a Job or Flow object is defined: ``module:attr`` or ``/abs/file.py:attr``."""
    for name, module in list(sys.modules.items()):
        for attr, value in list(getattr(module, "__dict__", {}).items()):
            if value is not job or attr.startswith("_"):
                continue
            file = getattr(module, "__file__", None)
            if name == "__main__" or name.startswith(FILE_MODULE_PREFIX):
                if file:
                    return f"{Path(file).resolve()}:{attr}"
                continue
            return f"{name}:{attr}"
    label = getattr(job, "job_name", None) or getattr(job, "name", type(job).__name__)
    raise ScheduleError(
        f"job {label!r} is not a module-level name of any imported module, so the store "
        "cannot build it again for its runs (it keeps references and YAML, never objects "
        "with closures): assign it at module level (job = ...), or pass a reference, "
        "manager.schedule('mymodule:make_job'), or a YAML job file"
    )


def _as_id(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "job"


def _plain_policy(record: JobRecord) -> SchedulePolicy | None:
    """A job's built-in policy; None for a custom one (its class is not needed here)."""
    if record.policy.get("policy") == "custom":
        return None
    return policy_from_dict(record.policy)
