"""reflow serve in a real process: SIGKILL and restart keep everything; CLI control of runs."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from reflow.cli import main
from reflow.scheduler import JobStore

SLOW = """
job:
  id: {job_id}
  name: {job_id}
  source: {{connector: datagen, config: {{number_of_rows: 600, rows_per_second: 250}}}}
  sink: {{connector: file, config: {{path: "{out}/{job_id}.jsonl"}}}}
"""
STREAM = """
job:
  id: stream
  name: stream
  source: {{connector: datagen, config: {{rows_per_second: 200}}}}
  sink: {{connector: file, config: {{path: "{out}/stream.jsonl", flush_interval: 50ms}}}}
"""


def _wait(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "reflow",
                "serve",
                "--store",
                f"sqlite:///{tmp_path}/jobs.db",
                "--slots",
                "1",
                "--port",
                "0",
            ],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)


def _cli(tmp_path: Path, *args: str) -> tuple[int, str]:
    """``reflow ARGS`` with ``--store`` after the (sub)command words."""
    words = 2 if args[0] == "events" else 1
    out = io.StringIO()
    store = ["--store", f"sqlite:///{tmp_path}/jobs.db"]
    code = main([*args[:words], *store, *args[words:]], out=out)
    return code, out.getvalue()


@pytest.mark.timeout(120)
def test_sigkill_of_the_manager_loses_and_doubles_nothing(
    tmp_path: Path, serve: Callable[[], subprocess.Popen[bytes]]
) -> None:
    out = tmp_path / "out"
    for name in ("slow-1", "slow-2", "slow-3", "slow-4"):
        (tmp_path / f"{name}.yaml").write_text(SLOW.format(job_id=name, out=out))
        assert _cli(tmp_path, "submit", str(tmp_path / f"{name}.yaml"))[0] == 0
    (tmp_path / "tick.yaml").write_text(SLOW.format(job_id="tick", out=out).replace("600", "1"))
    assert _cli(tmp_path, "submit", str(tmp_path / "tick.yaml"), "--cron", "*/2 * * * * ?")[0] == 0

    store = JobStore(f"sqlite:///{tmp_path}/jobs.db")
    proc = serve()

    def slow(status: str) -> list[str]:
        return [r.run_id for r in store.runs(status=status) if r.job_id.startswith("slow")]

    def just_started() -> bool:
        # A slow run started less than 0.5 s ago (it runs ~2.4 s) and two more wait.
        fresh = [
            r
            for r in store.runs(status="RUNNING")
            if r.job_id.startswith("slow") and r.started_at and time.time() - r.started_at < 0.5
        ]
        return bool(fresh) and len(slow("QUEUED")) >= 2

    _wait(just_started)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = time.time()
    running, queued = slow("RUNNING"), slow("QUEUED")
    assert len(running) == 1 and len(queued) >= 2

    serve()  # restart on the same store
    slow_runs = [r for r in store.runs() if r.job_id.startswith("slow")]
    _wait(
        lambda: all(
            r.status in ("COMPLETED", "FAILED") for r in store.runs() if r.job_id.startswith("slow")
        ),
        60,
    )
    _wait(
        lambda: any(r.job_id == "tick" and r.queued_ms / 1000 > killed_at for r in store.runs()), 30
    )

    runs = {r.run_id: r for r in store.runs()}
    assert len([r for r in runs.values() if r.job_id.startswith("slow")]) == len(slow_runs) == 4
    assert runs[running[0]].status == "FAILED"
    assert "manager stopped" in (runs[running[0]].error or "")
    for run_id in queued:
        assert runs[run_id].status == "COMPLETED"
        job_id = runs[run_id].job_id
        starts = [s for r, s, _ in store.history(job_id) if r == run_id and s == "RUNNING"]
        assert starts == ["RUNNING"]  # run once, not twice
    record = store.job("tick")
    assert record is not None and record.policy["expression"] == "*/2 * * * * ?"
    store.close()


@pytest.mark.timeout(120)
def test_pause_resume_and_cancel_a_streaming_job_from_the_cli(
    tmp_path: Path, serve: Callable[[], subprocess.Popen[bytes]]
) -> None:
    out = tmp_path / "out"
    (tmp_path / "stream.yaml").write_text(STREAM.format(out=out))
    assert _cli(tmp_path, "submit", str(tmp_path / "stream.yaml"))[0] == 0
    serve()
    store = JobStore(f"sqlite:///{tmp_path}/jobs.db")
    output = out / "stream.jsonl"
    _wait(lambda: output.exists() and output.stat().st_size > 0)

    assert _cli(tmp_path, "pause", "stream")[0] == 0
    time.sleep(0.4)  # records in flight reach the file
    paused_size = output.stat().st_size
    time.sleep(0.6)
    assert output.stat().st_size == paused_size  # the source stopped reading

    assert _cli(tmp_path, "resume", "stream")[0] == 0
    _wait(lambda: output.stat().st_size > paused_size)

    assert _cli(tmp_path, "cancel", "stream")[0] == 0
    _wait(lambda: store.runs("stream")[0].status == "CANCELLED")
    states = [s for r, s, _ in store.history("stream") if r is not None]
    assert states == ["SCHEDULED", "RUNNING", "PAUSED", "RUNNING", "CANCELLED"]
    code, status = _cli(tmp_path, "status", "stream")
    assert code == 0 and "CANCELLED" in status
    import re

    run_line = next(line for line in status.splitlines() if "CANCELLED" in line and "run-" in line)
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ"
    assert re.search(rf"queued {stamp}, started {stamp}, ended {stamp}", run_line), run_line
    assert re.search(rf"^  {stamp}  run-", status, re.M)  # each transition has its time
    code, listing = _cli(tmp_path, "jobs")
    assert code == 0 and "stream" in listing and "immediate" in listing
    store.close()


HOLD = """
import os
import time

_held = []


def hold(record):
    # The first record blocks the event loop (as a synchronous client would) until
    # the test creates the file 'release'.
    if not _held:
        _held.append(record)
        while not os.path.exists("release"):
            time.sleep(0.02)
    return record
"""
BLOCKING = """
job:
  id: blocking
  name: blocking
  source: {connector: datagen, config: {number_of_rows: 200}}
  operators:
    - {name: hold, type: map, function: "hold:hold"}
  sink: {connector: file, config: {path: "%s/blocking.jsonl"}}
"""


@pytest.mark.timeout(120)
def test_a_blocking_job_stalls_neither_the_api_nor_other_jobs(tmp_path: Path) -> None:
    from tests.conftest import start_serve

    (tmp_path / "hold.py").write_text(HOLD)
    (tmp_path / "blocking.yaml").write_text(BLOCKING % tmp_path)
    out = tmp_path / "out"
    (tmp_path / "other.yaml").write_text(SLOW.format(job_id="other", out=out).replace("600", "300"))
    assert _cli(tmp_path, "submit", str(tmp_path / "blocking.yaml"))[0] == 0
    store = JobStore(f"sqlite:///{tmp_path}/jobs.db")
    log = tmp_path / "serve.log"
    with log.open("wb") as log_file:
        proc, api = start_serve(tmp_path, "--slots", "2", log=log_file)
    client = httpx.Client(base_url=api, timeout=30)
    try:

        def blocked() -> bool:
            executor = client.get("/health").json()["components"]["executor"]
            return "has blocked its event loop" in executor["reason"]

        _wait(blocked)
        # The API answers while the job's loop is held (until the test releases it, so
        # an API waiting for that loop would never answer: the client times out).
        for _ in range(10):
            assert client.get("/health/live").json() == {"status": "UP"}
        assert blocked()
        health = client.get("/health").json()
        assert health["status"] == "DEGRADED"
        reason = health["components"]["executor"]["reason"]
        assert "step 'hold' has blocked" in reason and "hold.py:14 in hold" in reason
        # Another job runs to the end meanwhile.
        assert _cli(tmp_path, "submit", str(tmp_path / "other.yaml"))[0] == 0
        _wait(lambda: [r.status for r in store.runs("other")] == ["COMPLETED"], 60)
        assert (out / "other.jsonl").read_text().count("\n") == 300
        assert [r.status for r in store.runs("blocking")] == ["RUNNING"]

        (tmp_path / "release").touch()
        _wait(lambda: [r.status for r in store.runs("blocking")] == ["COMPLETED"], 60)
        assert (tmp_path / "blocking.jsonl").read_text().count("\n") == 200
        assert not blocked()
    finally:
        (tmp_path / "release").touch()
        client.close()
        proc.terminate()
        proc.wait(timeout=30)
        store.close()
    text = log.read_text()
    assert "step 'hold' has blocked its event loop for 1." in text
    assert "the event loop turns again after" in text
