"""What a token holder can and cannot make the server do (docs/security.md):
functions only from allowed modules and defined there, safe job ids, bounded
YAML, loopback Host names, no cross-site POSTs, errors that carry no data."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from reflow.config import job_loader
from reflow.config.policy import SubmissionPolicy
from reflow.scheduler import JobManager, JobStore
from reflow.server.app import create_app
from reflow.testing import memory_store

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MODULE = "tests.server.allowed_functions"
JOB = """
job:
  id: sec-job
  name: sec-job
  source: {connector: memory, config: {collection: sec-in}}
  operators:
    - {name: op, type: map, OPERATOR}
  sink: {connector: memory, config: {collection: sec-out, append: false}}
"""


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[JobManager]:
    memory_store["sec-in"] = [1, 2, 3]
    made = JobManager(JobStore(f"sqlite:///{tmp_path}/sec.db"), loader=job_loader, slots=2)
    yield made
    made.executor.close()
    made.store.close()


def _post(manager: JobManager, path: str, body: Any = None, **options: Any) -> httpx.Response:
    headers = options.pop("headers", AUTH)
    app = create_app(manager, token=TOKEN, **options)

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            if body is None:
                return await client.post(path, headers=headers)
            return await client.post(path, json=body, headers=headers)

    return asyncio.run(call())


def _job(operator: str) -> str:
    return JOB.replace("OPERATOR", operator)


@pytest.mark.parametrize(
    ("operator", "message"),
    [
        # pydantic turned the bytes of !!binary into the text "os:system" after the old check.
        (f"function: !!binary {base64.b64encode(b'os:system').decode()}", "not from an allowed"),
        (f"function: '{MODULE}:double.__globals__.get'", "none may start with '_'"),
        (f"function: '{MODULE}:double.__builtins__.get'", "none may start with '_'"),
        (f"function: '{MODULE}:os.system'", "not defined in an allowed module"),
        ("function: 'os:system'", "not from an allowed module"),
        ('expression: "(lambda: ().__class__.__base__.__subclasses__())()"', "may not use"),
    ],
)
def test_submitted_functions_must_be_defined_in_an_allowed_module(
    manager: JobManager, operator: str, message: str
) -> None:
    response = _post(manager, "/api/jobs", {"yaml": _job(operator)}, allowed_modules=(MODULE,))
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]
    assert manager.store.job("sec-job") is None


def test_a_function_defined_in_an_allowed_module_is_accepted(manager: JobManager) -> None:
    response = _post(
        manager,
        "/api/jobs",
        {"yaml": _job(f"function: '{MODULE}:double'")},
        allowed_modules=(MODULE,),
    )
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("job_id", ["../../x", "a/b", "..", ".hidden", "x" * 129, "a\nb"])
def test_job_ids_that_could_leave_their_folder_are_refused(
    manager: JobManager, job_id: str
) -> None:
    text = _job('expression: "r"').replace("id: sec-job", f"id: {job_id!r}")
    response = _post(manager, "/api/jobs", {"yaml": text})
    assert response.status_code == 422, response.text
    assert "job id" in response.json()["detail"]


ALIAS_BOMB = "a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
)


def test_an_alias_bomb_is_refused_before_it_expands(manager: JobManager) -> None:
    """450 bytes that expand to 9**9 nodes: the loader stops counting at its limit
    (expanding it all would not end within the test's timeout)."""
    assert len(ALIAS_BOMB) < 450
    response = _post(manager, "/api/validate", {"yaml": ALIAS_BOMB})
    assert response.status_code == 200 and not response.json()["valid"]
    assert "expands to more than" in response.json()["problems"][0]["message"]
    submitted = _post(manager, "/api/jobs", {"yaml": ALIAS_BOMB})
    assert submitted.status_code == 422


@pytest.mark.parametrize(
    "text", ["[" * 5000 + "]" * 5000, "a:\n" + "".join("  " * i + "b:\n" for i in range(1, 80))]
)
def test_deep_nesting_is_a_4xx_not_a_500(manager: JobManager, text: str) -> None:
    response = _post(manager, "/api/jobs", {"yaml": text})
    assert response.status_code == 422, response.text
    assert "nests" in response.json()["detail"]


def test_env_expansion_is_off_for_submitted_jobs(
    manager: JobManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVER_SECRET", "hunter2")
    monkeypatch.setenv("PUBLIC_NAME", "sec-in")
    text = _job('expression: "r"').replace("collection: sec-in", "collection: '${SERVER_SECRET}'")
    refused = _post(manager, "/api/jobs", {"yaml": text})
    assert refused.status_code == 422
    assert "SERVER_SECRET is not one that submitted jobs may read" in refused.json()["detail"]
    assert "hunter2" not in refused.text
    allowed = _job('expression: "r"').replace("collection: sec-in", "collection: '${PUBLIC_NAME}'")
    ok = _post(
        manager, "/api/jobs", {"yaml": allowed}, policy=SubmissionPolicy(env=("PUBLIC_NAME",))
    )
    assert ok.status_code == 201, ok.text


FILE_JOB = """
job:
  name: reader
  source: {connector: file, config: {path: "%s", format: text}}
  sink: {connector: memory, config: {collection: leak}}
"""


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ('{path: "/etc/shadow", format: text}', "outside the folders"),
        ('{path: "ROOT/../../etc/passwd", format: text}', "outside the folders"),
        ('{path: "ROOT/*/../../../etc/*", format: text}', "outside the folders"),
    ],
)
def test_file_paths_outside_the_roots_are_refused(
    manager: JobManager, tmp_path: Path, config: str, message: str
) -> None:
    text = FILE_JOB.replace('{path: "%s", format: text}', config.replace("ROOT", str(tmp_path)))
    policy = SubmissionPolicy(path_roots=(str(tmp_path),))
    response = _post(manager, "/api/jobs", {"yaml": text}, policy=policy)
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]


def test_paths_under_the_roots_and_allowed_hosts_are_accepted(
    manager: JobManager, tmp_path: Path
) -> None:
    policy = SubmissionPolicy(path_roots=(str(tmp_path),), hosts={"sql": ("127.0.0.1:5432",)})
    inside = FILE_JOB % (tmp_path / "in" / "*.txt")
    assert _post(manager, "/api/jobs", {"yaml": inside}, policy=policy).status_code == 201
    sql = (
        "job:\n  name: pg\n  source: {connector: memory, config: {collection: x}}\n"
        "  sink: {connector: sql, config: {url: 'postgresql://u:p@127.0.0.1/db', table: t}}\n"
    )
    assert _post(manager, "/api/jobs", {"yaml": sql}, policy=policy).status_code == 201


@pytest.mark.parametrize(
    ("sink", "target"),
    [
        (
            "{connector: http, config: {url: 'http://169.254.169.254/latest/meta-data'}}",
            "169.254.169.254:80",
        ),
        (
            "{connector: sql, config: {url: 'postgresql://u:secret@10.0.0.5:5432/db', table: t}}",
            "10.0.0.5:5432",
        ),
        ("{connector: redis, config: {url: 'redis://127.0.0.1:6380/0', key: k}}", "127.0.0.1:6380"),
        ("{connector: kafka, config: {bootstrap_servers: 'evil:9092', topic: t}}", "evil:9092"),
    ],
)
def test_hosts_outside_the_policy_are_refused(manager: JobManager, sink: str, target: str) -> None:
    policy = SubmissionPolicy(hosts={"*": ("127.0.0.1:6379",), "sql": ("127.0.0.1:5432",)})
    text = (
        "job:\n  name: out\n  source: {connector: memory, config: {collection: x}}\n"
        f"  sink: {sink}\n"
    )
    response = _post(manager, "/api/jobs", {"yaml": text}, policy=policy)
    assert response.status_code == 422, response.text
    assert f"may not reach {target}" in response.json()["detail"]
    assert "secret" not in response.text


def test_checkpoint_folders_outside_the_roots_are_refused(
    manager: JobManager, tmp_path: Path
) -> None:
    text = _job('expression: "r"') + "  checkpoint: {path: /tmp/elsewhere, interval: 1s}\n"
    policy = SubmissionPolicy(path_roots=(str(tmp_path),))
    response = _post(manager, "/api/jobs", {"yaml": text}, policy=policy)
    assert response.status_code == 422 and "checkpoint" in response.json()["detail"]


def test_a_run_error_shown_by_the_api_carries_no_data_the_job_read(
    manager: JobManager, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("root:$6$very-secret-hash:19000\n")
    text = (
        "job:\n  id: leaky\n  name: leaky\n"
        f"  source: {{connector: file, config: {{path: '{secret}', format: json}}}}\n"
        "  sink: {connector: memory, config: {collection: leak}}\n"
    )
    policy = SubmissionPolicy(path_roots=(str(tmp_path),))
    app = create_app(manager, token=TOKEN, policy=policy)

    async def scenario() -> list[Any]:
        loop_task = asyncio.create_task(manager.run_forever())
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            created = await client.post("/api/jobs", json={"yaml": text}, headers=AUTH)
            assert created.status_code == 201, created.text
            run_id = created.json()["run_id"]
            for _ in range(200):
                run = (await client.get(f"/api/runs/{run_id}", headers=AUTH)).json()
                if run["status"] in ("FAILED", "COMPLETED"):
                    break
                await asyncio.sleep(0.05)
            runs = (await client.get("/api/jobs/leaky/runs", headers=AUTH)).text
            history = (await client.get("/api/jobs/leaky/history", headers=AUTH)).text
            logs = (await client.get(f"/api/runs/{run_id}/logs", headers=AUTH)).text
        loop_task.cancel()
        await asyncio.gather(loop_task, return_exceptions=True)
        return [run, runs, history, logs]

    run, *texts = asyncio.run(scenario())
    assert run["status"] == "FAILED"
    assert "failed" in run["error"] and "very-secret" not in run["error"]
    for shown in texts:
        assert "very-secret" not in shown
    stored = manager.store.runs("leaky")[0].error or ""
    assert (
        "line 1" in stored or "very-secret" in stored or "JSON" in stored
    )  # the log keeps the cause


def test_a_loopback_server_refuses_other_host_names(manager: JobManager) -> None:
    app = create_app(manager, bind_host="127.0.0.1")

    async def call(base: str) -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base) as client:
            return (await client.get("/health/live")).status_code

    assert asyncio.run(call("http://attacker.example:8080")) == 421
    assert asyncio.run(call("http://127.0.0.1:8080")) == 200
    assert asyncio.run(call("http://localhost:8080")) == 200


def test_cross_site_form_posts_are_refused(manager: JobManager) -> None:
    app = create_app(manager)  # no token: a browser's cross-site form would otherwise work
    manager.schedule(_job('expression: "r"'))

    async def post(headers: dict[str, str], content: bytes = b"") -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return (
                await client.post("/api/jobs/sec-job/cancel", headers=headers, content=content)
            ).status_code

    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert asyncio.run(post(form, b"a=1")) == 415
    assert asyncio.run(post({"Content-Type": "text/plain"}, b"x")) == 415
    assert asyncio.run(post({})) == 415
    assert asyncio.run(post({"X-Requested-With": "reflow-cli"})) == 200
    assert asyncio.run(post({"Content-Type": "application/json"}, b"{}")) == 200


def test_an_oversized_request_body_gets_413(manager: JobManager) -> None:
    response = _post(manager, "/api/validate", {"yaml": "x" * 3_000_000})
    assert response.status_code == 413
