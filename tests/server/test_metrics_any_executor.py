"""The manager's ``/metrics`` shows every subtask's counters while a job runs and
when it has ended, whichever executor runs it: this module runs in the normal
suite on the local executor and again with the manager on Ray
(tests/runtime/test_ray_executor.py sets ``REFLOW_TEST_EXECUTOR=ray``), where
the counters come from the actors' reports to the driver."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx

from reflow.config import job_loader
from reflow.config.policy import SubmissionPolicy
from reflow.runtime import Executor
from reflow.runtime.ray import RayExecutor
from reflow.scheduler import JobManager, JobStore
from reflow.server.app import create_app
from reflow.testing import executor_for_tests

ROWS = 3_000
JOB = """
job:
  id: metrics-job
  name: metrics-job
  parallelism: 2
  batch_size: 50
  source:
    name: gen
    connector: datagen
    config:
      number_of_rows: {rows}
      rows_per_second: 1500
      fields: {{id: {{kind: sequence}}, k: {{kind: int, min: 0, max: 9}}}}
  operators:
    - {{name: by-k, type: key_by, key: k}}
    - {{name: tag, type: map, expression: "dict(r, tagged=True)"}}
  sink: {{name: out, connector: file, config: {{path: "{out}"}}}}
"""


def _executor() -> Executor:
    executor = executor_for_tests()
    if isinstance(executor, RayExecutor):
        executor.report_seconds = 0.2  # actors report live counters 5x a second
    return executor


def _samples(text: str, name: str, step: str) -> dict[str, float]:
    """subtask -> value of ``name`` for ``step``."""
    found = {}
    for line in text.splitlines():
        if line.startswith(name + "{") and f'step_id="{step}"' in line:
            subtask = re.search(r'subtask="(\d+)"', line)
            assert subtask is not None, line
            found[subtask.group(1)] = float(line.rsplit(" ", 1)[1])
    return found


def test_metrics_show_each_subtask_while_running_and_after(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    manager = JobManager(
        JobStore(f"sqlite:///{tmp_path}/m.db"),
        loader=job_loader,
        executor=_executor(),
    )
    app = create_app(manager, policy=SubmissionPolicy(path_roots=(str(tmp_path),)))

    async def scenario() -> tuple[dict[str, float], dict[str, float], str]:
        loop_task = asyncio.create_task(manager.run_forever())
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api", headers={"X-Requested-With": "test"}
        ) as client:
            created = await client.post("/api/jobs", json={"yaml": JOB.format(rows=ROWS, out=out)})
            assert created.status_code == 201, created.text
            run_id = created.json()["run_id"]
            during: dict[str, float] = {}
            status = "QUEUED"
            for _ in range(600):
                text = (await client.get("/metrics")).text
                sample = _samples(text, "reflow_operator_records_in_total", "tag")
                if len(sample) == 2 and all(0 < v < ROWS for v in sample.values()):
                    during = during or sample
                status = (await client.get(f"/api/runs/{run_id}")).json()["status"]
                if status not in ("QUEUED", "RUNNING"):
                    break
                await asyncio.sleep(0.05)
            text = (await client.get("/metrics")).text
        loop_task.cancel()
        await asyncio.gather(loop_task, return_exceptions=True)
        return during, _samples(text, "reflow_operator_records_in_total", "tag"), status

    try:
        during, after, status = asyncio.run(scenario())
    finally:
        manager.executor.close()
        manager.store.close()
    assert status == "COMPLETED", manager.store.runs()
    # While running: both subtasks of the keyed step reported, partway through.
    assert set(during) == {"0", "1"}
    assert sum(during.values()) < ROWS
    # After the end: the counters of every subtask add up to every record.
    assert set(after) == {"0", "1"}
    assert sum(after.values()) == ROWS
    written = sum(len(f.read_text().splitlines()) for f in tmp_path.glob("out*.jsonl"))
    assert written == ROWS


def test_health_probes_the_running_jobs_connectors_and_cancel_stops_it(
    tmp_path: Path,
) -> None:
    endless = (
        JOB.replace("number_of_rows: {rows}", "number_of_rows: null")
        .replace(
            'connector: file, config: {{path: "{out}"}}',
            'connector: sql, config: {{url: "sqlite:///{out}", table: t, create_table: true}}',
        )
        .format(rows=0, out=tmp_path / "out.db")
    )
    manager = JobManager(
        JobStore(f"sqlite:///{tmp_path}/m.db"),
        loader=job_loader,
        executor=_executor(),
    )
    app = create_app(manager, policy=SubmissionPolicy(path_roots=(str(tmp_path),)))

    async def scenario() -> tuple[str, float, dict[str, Any]]:
        loop_task = asyncio.create_task(manager.run_forever())
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api", headers={"X-Requested-With": "test"}
        ) as client:
            created = await client.post("/api/jobs", json={"yaml": endless})
            assert created.status_code == 201, created.text
            run_id = created.json()["run_id"]
            seen = 0.0
            for _ in range(600):  # until records flow through the keyed step
                text = (await client.get("/metrics")).text
                seen = sum(_samples(text, "reflow_operator_records_in_total", "tag").values())
                if seen > 100:
                    break
                await asyncio.sleep(0.05)
            # Every sink subtask answers once its actor has opened its sink (on a busy
            # machine the second may come a little after the first records).
            for _ in range(100):
                health = (await client.get("/health")).json()
                if health["components"]["connectors"]["reason"] != "1 connections checked":
                    break
                await asyncio.sleep(0.05)
            assert (await client.post("/api/jobs/metrics-job/cancel")).status_code == 200
            status = "RUNNING"
            for _ in range(200):
                status = (await client.get(f"/api/runs/{run_id}")).json()["status"]
                if status != "RUNNING":
                    break
                await asyncio.sleep(0.05)
        loop_task.cancel()
        await asyncio.gather(loop_task, return_exceptions=True)
        return status, seen, health

    try:
        status, seen, health = asyncio.run(scenario())
    finally:
        manager.executor.close()
        manager.store.close()
    assert seen > 100
    # Both subtasks of the SQL sink answered the probe (on Ray: from their actors).
    connectors = health["components"]["connectors"]
    assert connectors == {"status": "UP", "reason": "2 connections checked"}, health
    assert status == "CANCELLED"
