"""The public test kit: sources, sinks and a runner for jobs in tests.

``TestingSource(iterable)`` feeds records (with ``ABORT``/``EOF`` markers),
``TestingSink()`` collects them in ``.records``, and ``run_job(job)`` runs a
job to its end on a fresh local executor and returns the JobResult.
``check_connector(name, sink_options=..., source_options=...)`` runs the
connector contract (reflow/testing/contract.py) against a real system.
"""

from __future__ import annotations

import asyncio
import os

from reflow.connectors.memory import TestingSink, TestingSource, TestingSourceAbort, memory_store
from reflow.graph.job import Job
from reflow.runtime import Executor, ExecutorSettings, JobResult, execute_with_recovery
from reflow.runtime.base import create_executor
from reflow.testing.contract import ContractReport, check_connector, contract_records

__all__ = [
    "ContractReport",
    "TestingSink",
    "TestingSource",
    "TestingSourceAbort",
    "check_connector",
    "contract_records",
    "executor_for_tests",
    "memory_store",
    "run_job",
    "run_job_async",
]


def executor_for_tests(settings: ExecutorSettings | None = None) -> Executor:
    """A fresh executor for tests: a LocalExecutor, or a RayExecutor (one actor per
    subtask) with ``REFLOW_TEST_EXECUTOR=ray`` in the environment, so a test suite
    can run on both. ``close()`` it after use."""
    if os.environ.get("REFLOW_TEST_EXECUTOR") == "ray":
        return create_executor(settings, kind="ray")
    return create_executor(settings)


async def run_job_async(job: Job, settings: ExecutorSettings | None = None) -> JobResult:
    """Run ``job`` on a fresh ``executor_for_tests`` inside the running event loop.

    Failures restart the job by its restart strategy, from its latest checkpoint.
    """
    executor = executor_for_tests(settings)
    try:
        return await execute_with_recovery(executor, job)
    finally:
        executor.close()


def run_job(job: Job, settings: ExecutorSettings | None = None) -> JobResult:
    """Run ``job`` to its end in a new event loop and return its JobResult."""
    return asyncio.run(run_job_async(job, settings))
