"""Restarting failed jobs by their restart strategy, from their latest checkpoint
(seed §11.2, §11.3), on any executor."""

from __future__ import annotations

import logging

from reflow.checkpoint.storage import CheckpointData, open_storage
from reflow.graph.job import Job, JobStatus
from reflow.runtime.base import Executor, JobResult

__all__ = ["execute_with_recovery"]

logger = logging.getLogger(__name__)


async def execute_with_recovery(
    executor: Executor, job: Job, restore: CheckpointData | None = None
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
