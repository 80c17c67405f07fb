"""Running a job from Python: ``reflow.run(job)`` and ``await reflow.run_async(job)``.

Both run the job to its end on a local executor, restarting it by its restart
strategy from its latest checkpoint, and raise :class:`JobFailedError` (naming
the step and the cause) when it ends FAILED. ``run`` works in a plain script and
inside a running event loop (a Jupyter cell): there the job runs on a loop of
its own in another thread while the call waits.

Example:
    >>> from reflow import Flow, run
    >>> from reflow.testing import TestingSink, TestingSource
    >>> sink = TestingSink()
    >>> flow = Flow("double")
    >>> _ = flow.source(TestingSource([1, 2, 3])).map(lambda x: x * 2).sink(sink)
    >>> result = run(flow.to_job())
    >>> sink.records, result.status.value
    ([2, 4, 6], 'COMPLETED')
"""

from __future__ import annotations

import asyncio
import threading

from reflow.checkpoint.storage import CheckpointData
from reflow.graph.job import Job
from reflow.runtime.base import Executor, ExecutorSettings, JobResult
from reflow.runtime.local import LocalExecutor
from reflow.runtime.recovery import execute_with_recovery

__all__ = ["run", "run_async"]


async def run_async(
    job: Job,
    settings: ExecutorSettings | None = None,
    *,
    executor: Executor | None = None,
    restore: CheckpointData | None = None,
    check: bool = True,
) -> JobResult:
    """Run ``job`` to its end in the running event loop and return its JobResult.

    ``executor``: where it runs (default: a new LocalExecutor with ``settings``).
    ``restore``: a checkpoint or savepoint to start from. ``check``: raise
    JobFailedError when the job FAILED (False: return the FAILED result).
    """
    own = executor is None
    runner: Executor = LocalExecutor(settings) if executor is None else executor
    try:
        result = await execute_with_recovery(runner, job, restore)
    finally:
        if own:
            runner.close()
    return result.raise_for_status() if check else result


def run(
    job: Job,
    settings: ExecutorSettings | None = None,
    *,
    executor: Executor | None = None,
    restore: CheckpointData | None = None,
    check: bool = True,
) -> JobResult:
    """Run ``job`` to its end and return its JobResult (see :func:`run_async`).

    Called where an event loop already runs (a notebook), the job runs on a loop
    of its own in another thread and this call waits for it."""
    coro = run_async(job, settings, executor=executor, restore=restore, check=check)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    outcome: list[JobResult] = []
    failure: list[BaseException] = []

    def work() -> None:
        try:
            outcome.append(asyncio.run(coro))
        except BaseException as exc:  # raised in the caller's thread below
            failure.append(exc)

    thread = threading.Thread(target=work, name=f"reflow-run-{job.job_id}")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]
