"""A job's ``resources:`` (seed §6.2) on either executor: the local executor runs
the job as it is; on Ray (``REFLOW_TEST_EXECUTOR=ray``, run by
tests/runtime/test_ray_executor.py) each subtask's actor reserves
``resources.cpu`` cores and an even share of ``resources.memory``, and a request
no node could hold fails at once with what to change, instead of waiting."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from reflow import JobStatus
from reflow.config import load_job_text
from reflow.runtime import JobResult, execute_with_recovery
from reflow.testing import executor_for_tests

ON_RAY = os.environ.get("REFLOW_TEST_EXECUTOR") == "ray"
JOB = """
job:
  name: sized
  parallelism: 2
  resources: {{cpu: {cpu}, memory: 256m}}
  source:
    connector: datagen
    config: {{number_of_rows: 1000, fields: {{id: {{kind: sequence}}}}}}
  operators:
    - {{name: by-id, type: key_by, key: id}}
  sink: {{name: out, connector: file, config: {{path: "{out}"}}}}
"""


def _run(cpu: float, out: Path) -> tuple[JobResult, Any]:
    job = load_job_text(JOB.format(cpu=cpu, out=out), "sized.yaml")
    executor = executor_for_tests()
    try:
        return asyncio.run(execute_with_recovery(executor, job)), executor
    finally:
        executor.close()


def _written(folder: Path) -> int:
    return sum(len(f.read_text().splitlines()) for f in folder.glob("out*.jsonl"))


def test_resources_become_each_subtasks_reservation(tmp_path: Path) -> None:
    result, executor = _run(0.25, tmp_path / "out.jsonl")
    assert result.status is JobStatus.COMPLETED, result.error
    assert _written(tmp_path) == 1000
    if ON_RAY:
        options = executor.last_actor_options
        assert len(options) == 4  # two vertices at parallelism 2
        for opts in options.values():
            assert opts["num_cpus"] == 0.25
            assert opts["memory"] == 256 // 4 * 1024 * 1024


def test_a_request_no_node_can_hold_fails_at_once_on_ray(tmp_path: Path) -> None:
    result, _ = _run(64, tmp_path / "out.jsonl")
    if ON_RAY:
        assert result.status is JobStatus.FAILED
        assert "cannot be placed on Ray" in str(result.error)
        assert "64 CPU" in str(result.error) and "resources.cpu" in str(result.error)
        assert result.duration_seconds < 30
    else:  # the local executor reserves no cores: the job runs
        assert result.status is JobStatus.COMPLETED, result.error
        assert _written(tmp_path) == 1000
