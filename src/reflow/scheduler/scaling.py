"""The job manager's scaling: rescales asked for by a user (API, CLI, UI) or by a
run's autoscaler, carried out as savepoint -> stop -> restart at the new
parallelism (``reflow.scheduler.rescale``)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Coroutine, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from reflow.errors import ConfigError, ReflowError
from reflow.graph.job import JobStatus
from reflow.graph.rescale import rescaled
from reflow.scheduler.autoscaler import Autoscaler, AutoscalerConfig, Decision
from reflow.scheduler.cron import ScheduleError
from reflow.scheduler.rescale import (
    PendingRescale,
    RescaleResult,
    check_rescalable,
    result_of,
    take_and_stop,
    wait_processing,
    wait_running,
)

if TYPE_CHECKING:
    from reflow.scheduler.manager import JobManager

__all__ = ["Scaling"]

logger = logging.getLogger("reflow.scheduler.manager")


class Scaling:
    """Rescales and autoscalers of one job manager's runs."""

    def __init__(self, manager: JobManager) -> None:
        self.manager = manager
        self.autoscalers: dict[str, Autoscaler] = {}
        """The autoscaler of each running run whose job has one."""
        self._tasks: set[asyncio.Future[None]] = set()
        """Rescales under way in the background (commands, autoscalers)."""
        self.refused: set[str] = set()
        """Runs whose autoscaler settings are invalid (said once)."""

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Cancel the rescales under way (the manager is stopping)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- rescaling ---------------------------------------------------------------------

    async def rescale(
        self,
        job_id: str,
        parallelism: int | None = None,
        steps: Mapping[str, int] | None = None,
    ) -> list[RescaleResult]:
        manager = self.manager
        runs = [r for r in manager.running.values() if job_id in (r.run_id, r.job_id)]
        if not runs:
            raise ScheduleError(f"job {job_id!r} has no running run to rescale")
        results = []
        for running in runs:
            if running.rescale is not None:
                raise ScheduleError(f"run {running.run_id} is already being rescaled")
            check_rescalable(running.job)
            target = rescaled(running.job, parallelism, steps)
            needs = target.job_graph.max_parallelism
            free = manager._free()[0] + running.slots
            if needs > free:
                raise ScheduleError(
                    f"run {running.run_id} at the new parallelism needs {needs} slots; "
                    f"{free} are free for it (reflow serve --slots sets how many there are)"
                )
            before = running.job
            pending = running.rescale = PendingRescale(target)
            try:
                data = await take_and_stop(manager.executor, running.run_id, pending)
            except BaseException:
                running.rescale = None
                raise
            running.slots = needs
            stopped = time.monotonic() - pending.requested
            down = await wait_running(manager.executor, running.run_id, pending)
            processing = await wait_processing(manager.executor, running.run_id, pending)
            result = result_of(
                running.run_id, running.job_id, before, target, data, stopped, down, processing
            )
            manager.store.add_event(running.job_id, running.run_id, "RESCALED", result.describe())
            logger.info(
                "%s",
                result.describe(),
                extra={
                    "job_id": running.job_id,
                    "event": "JOB_RESCALED",
                    "downtime_seconds": round(down, 3),
                    "processing_seconds": None if processing is None else round(processing, 3),
                },
            )
            results.append(result)
        return results

    def command(self, command_id: int, target: str) -> None:
        """A ``rescale`` command from the job store (``reflow rescale`` without
        ``--api``): answered when the runs run again."""
        self._background(self._command(command_id, target))

    async def _command(self, command_id: int, target: str) -> None:
        try:
            request = json.loads(target)
            results = await self.rescale(
                str(request["job_id"]), request.get("parallelism"), request.get("steps") or {}
            )
            answer = "ok: " + "; ".join(r.describe() for r in results)
        except ReflowError as exc:
            answer = f"error: {exc}"
        except (ValueError, KeyError, TypeError) as exc:
            answer = f"error: a rescale command needs job_id, parallelism, steps ({exc})"
        self.manager.store.finish_command(command_id, answer)

    # -- autoscaling ---------------------------------------------------------------------

    def autoscale(self) -> None:
        """Sample the runs whose jobs have an autoscaler; act on its decisions."""
        manager = self.manager
        now = manager.clock.now_ms()
        for running in list(manager.running.values()):
            try:
                config = AutoscalerConfig.of(running.job, manager.autoscaler_defaults)
            except ConfigError as exc:  # the job's block and the system's disagree
                if running.run_id not in self.refused:
                    self.refused.add(running.run_id)
                    logger.error(
                        "run %s: no autoscaler: %s; fix the job's autoscaler: block or "
                        "the system config's",
                        running.run_id,
                        exc,
                        extra={"job_id": running.job_id, "event": "AUTOSCALER_REFUSED"},
                    )
                continue
            if config is None or running.rescale is not None:
                continue
            scaler = self.autoscalers.get(running.run_id)
            if scaler is None:
                bounded = replace(
                    config, max_parallelism=min(config.max_parallelism, manager.slots)
                )
                scaler = self.autoscalers[running.run_id] = Autoscaler(bounded, running.run_id, now)
            if not scaler.due(now) or not manager.executor.is_running(running.run_id):
                continue
            snapshot = manager.executor.snapshot(running.run_id)
            if snapshot.status is not JobStatus.RUNNING:
                continue
            decisions = scaler.observe(snapshot, running.job, now)
            for decision in decisions:
                self._announce(running.job_id, decision)
            steps = {step: d.recommended for d in decisions if d.applied for step in d.steps}
            if steps:
                self._background(self._autoscaled(running.job_id, running.run_id, steps, scaler))

    def _announce(self, job_id: str, decision: Decision) -> None:
        text = f"{', '.join(decision.steps)}: {decision.parallelism} -> {decision.recommended} "
        text += f"({decision.action}; {decision.reason})"
        self.manager.store.add_event(job_id, decision.run_id, "AUTOSCALER", text)
        logger.info(
            "run %s autoscaler: %s",
            decision.run_id,
            text,
            extra={
                "job_id": job_id,
                "event": "AUTOSCALER_DECISION",
                **{k: v for k, v in decision.to_dict().items() if k not in ("reason", "at")},
            },
        )

    async def _autoscaled(
        self, job_id: str, run_id: str, steps: dict[str, int], scaler: Autoscaler
    ) -> None:
        try:
            await self.rescale(run_id, steps=steps)
        except ReflowError as exc:
            self.manager.store.add_event(job_id, run_id, "AUTOSCALER", f"rescale failed: {exc}")
            logger.warning(
                "run %s: the autoscaler's rescale failed: %s",
                run_id,
                exc,
                extra={"job_id": job_id, "event": "AUTOSCALER_FAILED"},
            )
        scaler.rescaled(self.manager.clock.now_ms())
