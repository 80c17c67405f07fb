"""The REST API: token, submission with validation, control, graphs, and property-based
tests generated from its OpenAPI document (schemathesis): no 5xx for any request."""

from __future__ import annotations

import asyncio
import atexit
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from reflow.config import job_loader
from reflow.scheduler import JobManager, JobStore
from reflow.server.app import create_app
from reflow.testing import memory_store

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JOB = """
job:
  id: api-job
  name: api-job
  source: {connector: memory, config: {collection: api-in}}
  operators:
    - {name: double, type: map, expression: "r * 2"}
  sink: {connector: memory, config: {collection: api-out, append: false}}
"""


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[JobManager]:
    memory_store["api-in"] = [1, 2, 3]
    made = JobManager(JobStore(f"sqlite:///{tmp_path}/api.db"), loader=job_loader, slots=2)
    yield made
    made.executor.close()
    made.store.close()


def _client(manager: JobManager, **options: Any) -> httpx.AsyncClient:
    app = create_app(manager, token=TOKEN, **options)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")


def test_requests_without_the_token_get_401(manager: JobManager) -> None:
    async def scenario() -> list[int]:
        async with _client(manager) as client:
            return [
                (await client.get("/api/jobs")).status_code,
                (
                    await client.get("/api/jobs", headers={"Authorization": "Bearer wrong"})
                ).status_code,
                (await client.get("/api/jobs", headers=AUTH)).status_code,
                (await client.get("/api/jobs", headers={"X-Reflow-Token": TOKEN})).status_code,
                (await client.get("/health/live")).status_code,
            ]

    assert asyncio.run(scenario()) == [401, 401, 200, 200, 200]


def test_submit_run_inspect_and_control(manager: JobManager) -> None:
    async def scenario() -> dict[str, Any]:
        loop_task = asyncio.create_task(manager.run_forever())
        async with _client(manager) as client:
            created = await client.post("/api/jobs", json={"yaml": JOB}, headers=AUTH)
            assert created.status_code == 201, created.text
            run_id = created.json()["run_id"]
            for _ in range(100):
                run = (await client.get(f"/api/runs/{run_id}", headers=AUTH)).json()
                if run["status"] == "COMPLETED":
                    break
                await asyncio.sleep(0.05)
            graph = (await client.get("/api/jobs/api-job/graph", headers=AUTH)).json()
            history = (await client.get("/api/jobs/api-job/history", headers=AUTH)).json()
            runs = (await client.get("/api/jobs/api-job/runs", headers=AUTH)).json()
            paused = await client.post("/api/jobs/api-job/pause", headers=AUTH)
            job = (await client.get("/api/jobs/api-job", headers=AUTH)).json()
            missing = await client.get("/api/jobs/nope", headers=AUTH)
            metrics = await client.get("/metrics")
            ready = await client.get("/health/ready")
        loop_task.cancel()
        await asyncio.gather(loop_task, return_exceptions=True)
        return {
            "run": run,
            "graph": graph,
            "history": history,
            "runs": runs,
            "paused": paused.status_code,
            "job": job,
            "missing": missing.status_code,
            "metrics": metrics.text,
            "ready": ready.status_code,
        }

    got = asyncio.run(scenario())
    assert got["run"]["status"] == "COMPLETED"
    assert {s["step_id"]: (s["records_in"], s["records_out"]) for s in got["run"]["steps"]}[
        "double"
    ] == (3, 3)
    assert memory_store["api-out"] == [2, 4, 6]
    assert [v["steps"] for v in got["graph"]["vertices"]] == [["source", "double", "sink"]]
    assert got["graph"]["mermaid"].startswith("flowchart LR")
    assert [h["status"] for h in got["history"] if h["run_id"]] == [
        "SCHEDULED",
        "RUNNING",
        "COMPLETED",
    ]
    # Every run and transition carries its time, ISO 8601 in UTC, in order.
    (run,) = got["runs"]
    times = [run["queued_at"], run["started_at"], run["ended_at"]]
    assert all(t and t.endswith("Z") for t in times) and times == sorted(times)
    at = [h["at"] for h in got["history"]]
    assert all(t and t.endswith("Z") for t in at) and at == sorted(at)
    assert got["paused"] == 200 and got["job"]["state"] == "paused"
    assert got["missing"] == 404
    assert "reflow_operator_records_out_total" in got["metrics"]
    assert got["ready"] == 200


def test_invalid_jobs_are_4xx_with_the_line(manager: JobManager) -> None:
    async def scenario() -> list[httpx.Response]:
        async with _client(manager) as client:
            return [
                await client.post(
                    "/api/jobs", json={"yaml": "job:\n  name: x\n  sourc: 1\n"}, headers=AUTH
                ),
                await client.post("/api/jobs", json={"yml": "typo"}, headers=AUTH),
                await client.post(
                    "/api/jobs",
                    json={"yaml": JOB.replace('expression: "r * 2"', "function: os:system")},
                    headers=AUTH,
                ),
                await client.post(
                    "/api/jobs",
                    json={"yaml": JOB, "schedule": {"policy": "cron", "expression": "nope"}},
                    headers=AUTH,
                ),
            ]

    bad_key, bad_body, disallowed, bad_cron = asyncio.run(scenario())
    assert bad_key.status_code == 422 and ":3: job.sourc: unknown key" in bad_key.json()["detail"]
    assert bad_body.status_code == 422
    assert (
        disallowed.status_code == 422
        and "not from an allowed module" in disallowed.json()["detail"]
    )
    assert bad_cron.status_code == 422 and "cron" in bad_cron.json()["detail"]


def test_functions_from_allowed_modules_are_accepted(manager: JobManager) -> None:
    async def scenario() -> int:
        async with _client(manager, allowed_modules=("math",)) as client:
            body = {"yaml": JOB.replace('expression: "r * 2"', "function: math:sqrt")}
            return (await client.post("/api/jobs", json=body, headers=AUTH)).status_code

    assert asyncio.run(scenario()) == 201


def _schema_app() -> Any:
    """The app the generated tests run against: a fresh store with one job."""
    folder = tempfile.mkdtemp(prefix="reflow-api-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # built at import time
    memory_store["api-in"] = [1]
    manager = JobManager(JobStore(f"sqlite:///{folder}/api.db"), loader=job_loader)
    manager.schedule(JOB)
    return create_app(manager, token=TOKEN)


schema = schemathesis.openapi.from_asgi("/openapi.json", _schema_app())


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_makes_the_server_fail(case: Any) -> None:
    response = case.call(headers=AUTH)
    # The health probes answer 503 when DOWN, by contract (documented in the schema);
    # nothing else may answer 5xx.
    if not (case.path.startswith("/health") and response.status_code == 503):
        assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text}"
    unauthorized = case.call()
    if case.path.startswith("/api") and response.status_code != 405:  # 405: a method no route has
        assert unauthorized.status_code == 401


SQL_JOB = """
SET 'job.id' = 'api-sql';
CREATE TABLE nums (n BIGINT) WITH ('connector' = 'memory', 'collection' = 'api-sql-in');
CREATE SINK doubled (n BIGINT)
WITH ('connector' = 'memory', 'collection' = 'api-sql-out', 'append' = 'false');
INSERT INTO doubled SELECT n * 2 AS n FROM nums WHERE n > 1;
"""


def test_a_sql_script_is_validated_submitted_and_run(manager: JobManager) -> None:
    memory_store["api-sql-in"] = [{"n": 1}, {"n": 2}, {"n": 3}]

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], str]:
        loop_task = asyncio.create_task(manager.run_forever())
        async with _client(manager) as client:
            bad = await client.post(
                "/api/validate", json={"sql": SQL_JOB.replace("n * 2", "m * 2")}, headers=AUTH
            )
            good = await client.post("/api/validate", json={"sql": SQL_JOB}, headers=AUTH)
            created = await client.post("/api/jobs", json={"sql": SQL_JOB}, headers=AUTH)
            assert created.status_code == 201, created.text
            run_id = created.json()["run_id"]
            status = ""
            for _ in range(200):
                status = (await client.get(f"/api/runs/{run_id}", headers=AUTH)).json()["status"]
                if status in {"COMPLETED", "FAILED"}:
                    break
                await asyncio.sleep(0.05)
        loop_task.cancel()
        await asyncio.gather(loop_task, return_exceptions=True)
        return bad.json(), good.json(), status

    bad, good, status = asyncio.run(scenario())
    assert not bad["valid"] and "no column m in table nums" in bad["problems"][0]["message"]
    assert good["valid"] and good["job_id"] == "api-sql"
    assert status == "COMPLETED"
    assert memory_store["api-sql-out"] == [{"n": 4}, {"n": 6}]
