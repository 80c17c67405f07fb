"""Log lines are JSON with the fields of the seed's example (§7.4)."""

from __future__ import annotations

import io
import logging
from typing import Any

import orjson

from reflow import Job
from reflow.observability import setup_logging
from reflow.testing import TestingSink, TestingSource, run_job

SEED_FIELDS = {"timestamp", "level", "logger", "jobId", "jobName", "event", "message", "metadata"}


def test_job_events_as_json_lines() -> None:
    stream = io.StringIO()
    setup_logging(logging.INFO, json=True, stream=stream)
    try:
        job = (
            Job.builder()
            .name("user-etl")
            .id("job-123")
            .source(TestingSource(range(5)))
            .sink(TestingSink())
            .build()
        )
        run_job(job)
    finally:
        setup_logging(logging.WARNING)
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert lines and all(set(line) >= SEED_FIELDS for line in lines)
    events = {line["event"]: line for line in lines if line["event"]}
    started = events["JOB_STARTED"]
    assert started["jobId"] == "job-123" and started["jobName"] == "user-etl"
    assert started["level"] == "INFO" and started["logger"] == "reflow.runtime.local"
    assert started["metadata"]["parallelism"] == 1 and started["metadata"]["operators"] == 2
    assert started["timestamp"].endswith("Z")
    assert events["JOB_COMPLETED"]["metadata"]["duration_seconds"] >= 0


def test_cli_switch_for_json_logs(tmp_path: object, capfd: object) -> None:
    from pathlib import Path

    from reflow.cli import main

    path = Path(str(tmp_path)) / "job.yaml"
    path.write_text(
        "job:\n  id: cli-json\n  name: cli-json\n"
        "  source: {connector: datagen, config: {number_of_rows: 3}}\n"
        "  sink: {connector: memory, config: {collection: cli-json-out}}\n"
    )
    # --log-json alone shows the job's INFO events (no -v needed).
    assert main(["--log-json", "run", "--no-progress", str(path)], out=io.StringIO()) == 0
    err = capfd.readouterr().err  # type: ignore[attr-defined]
    logged = [orjson.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(line["event"] == "JOB_COMPLETED" and line["jobId"] == "cli-json" for line in logged)
    setup_logging(logging.WARNING)


def test_a_value_with_newlines_cannot_forge_a_log_line(tmp_path: Any) -> None:
    from reflow.config import job_loader
    from reflow.scheduler import JobManager, JobStore

    stream = io.StringIO()
    setup_logging(logging.INFO, stream=stream)
    manager = JobManager(JobStore(f"sqlite:///{tmp_path}/logs.db"), loader=job_loader)
    try:
        forged = "deploy\n2026-12-01 00:00:00,000 ERROR reflow.security: admin logged in\r\x1b[2K"
        manager.post_event(forged)
    finally:
        manager.executor.close()
        manager.store.close()
        setup_logging(logging.WARNING)
    lines = [line for line in stream.getvalue().splitlines() if "event" in line]
    assert len(lines) == 1
    assert "deploy\\n2026-12-01" in lines[0] and "\\r\\x1b[2K" in lines[0]
    assert "\x1b" not in stream.getvalue()
