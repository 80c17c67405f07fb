"""Running Python jobs: reflow.run / run_async / Flow.run raise on failure (naming the
step and the cause) and work inside a running event loop; a JobResult reads well;
the seed's top-level names and spellings work; invalid parallelism is refused."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

import reflow
from reflow import (
    ErrorMode,
    Flow,
    GraphValidationError,
    Job,
    JobFailedError,
    JobStatus,
    Operators,
    Overflow,
)
from reflow.cli import main
from reflow.testing import TestingSink, TestingSource


def _job(fail_on: int | None = None, policy: str | None = None) -> tuple[Job, TestingSink]:
    def parse(x: int) -> int:
        if x == fail_on:
            raise ValueError(f"bad value {x}")
        return x * 10

    sink = TestingSink()
    builder = Job.builder().name("tens").source(TestingSource(range(100)))
    if policy is not None:
        builder = builder.error_policy(policy)
    job = builder.transform(Operators.map(parse), id="parse").sink(sink).build()
    return job, sink


def test_run_returns_the_result_and_raises_naming_the_step_and_cause() -> None:
    job, sink = _job()
    result = reflow.run(job)
    assert result.status is JobStatus.COMPLETED
    assert sink.records == [x * 10 for x in range(100)]
    assert (result.records_read, result.records_written) == (100, 100)

    job, _ = _job(fail_on=42)
    with pytest.raises(JobFailedError) as failed:
        reflow.run(job)
    assert failed.value.step_id == "parse"
    message = str(failed.value)
    assert "job 'tens'" in message and "step 'parse'" in message and "bad value 42" in message
    assert failed.value.result.status is JobStatus.FAILED  # type: ignore[attr-defined]

    job, _ = _job(fail_on=42)
    assert reflow.run(job, check=False).status is JobStatus.FAILED


def test_run_works_inside_a_running_event_loop_as_in_a_notebook() -> None:
    async def cell() -> tuple[int, int]:
        job, sink = _job()
        blocking = reflow.run(job)  # a notebook cell calls it with the loop running
        job2, sink2 = _job(fail_on=7, policy="skip")
        awaited = await reflow.run_async(job2)
        assert blocking.status is awaited.status is JobStatus.COMPLETED
        return len(sink.records), len(sink2.records)

    assert asyncio.run(cell()) == (100, 99)


def test_flow_run_and_a_readable_result() -> None:
    sink = TestingSink()
    flow = Flow("flow-run")
    flow.source(TestingSource(range(5)), id="numbers").map(lambda x: x + 1, id="inc").sink(
        sink, id="out"
    )
    result = flow.run()
    assert sink.records == [1, 2, 3, 4, 5]
    shown = repr(result)
    assert "\n" not in shown and len(shown) < 200
    assert "status=COMPLETED" in shown and "read=5" in shown and "written=5" in shown
    table = str(result)
    assert "COMPLETED" in table.splitlines()[0]
    assert any(line.split()[:2] == ["inc", "operator"] for line in table.splitlines())
    assert "read 5 records, wrote 5" in table


def test_the_seeds_names_and_spellings() -> None:
    from reflow import JobManager, SchedulePolicy

    assert SchedulePolicy.cron("0 * * * * ?") is not None and JobManager is not None
    assert ErrorMode("DEAD_LETTER") is ErrorMode("dead-letter") is ErrorMode.DEAD_LETTER
    assert Overflow("BUFFER") is Overflow.BUFFER
    with pytest.raises(ValueError, match="use one of 'buffer', 'drop', 'latest', 'error'"):
        Overflow("QUEUE")
    job, sink = _job(fail_on=3, policy="SKIP")
    assert reflow.run(job).status is JobStatus.COMPLETED and len(sink.records) == 99
    flow = Flow("spelled")
    out = TestingSink()
    flow.source(TestingSource(range(3))).on_overflow("BUFFER").map(lambda x: x).sink(out)
    flow.run()
    assert out.records == [0, 1, 2]


def test_invalid_parallelism_is_refused() -> None:
    with pytest.raises(GraphValidationError, match="parallelism must be a whole number >= 1"):
        Job.builder().parallelism(-2)
    with pytest.raises(GraphValidationError, match="parallelism"):
        Flow("p", parallelism=0)
    assert main(["run", "examples/bids_to_sqlite.yaml", "--parallelism", "-3"]) == 2


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"], out=io.StringIO()) == 0
    assert capsys.readouterr().out.strip() == f"reflow {reflow.__version__}"


def test_the_python_example_writes_what_the_yaml_example_writes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sqlite3

    root = Path(__file__).resolve().parent.parent
    monkeypatch.chdir(root)
    (root / "out").mkdir(exist_ok=True)
    for name in ("out/bids.db", "out/bids-py.db"):
        (root / name).unlink(missing_ok=True)
    out = io.StringIO()
    assert main(["run", "--no-progress", "examples/bids_to_sqlite.py"], out=out) == 0
    assert "read 2,001 records, wrote 1,768" in out.getvalue()
    assert main(["run", "--no-progress", "examples/bids_to_sqlite.yaml"], out=io.StringIO()) == 0
    query = "SELECT * FROM big_bids ORDER BY auction, bidder, date_time"
    python_rows = sqlite3.connect(root / "out/bids-py.db").execute(query).fetchall()
    yaml_rows = sqlite3.connect(root / "out/bids.db").execute(query).fetchall()
    assert len(python_rows) == 1_768 and python_rows == yaml_rows


def test_scripts_example_installs_the_drivers_the_docs_sql_examples_use() -> None:
    import re
    import tomllib

    root = Path(__file__).resolve().parent.parent
    line = re.search(r"^ensure_venv (\S+)", (root / "scripts/example").read_text(), re.M)
    assert line is not None, "scripts/example installs no extras"
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    installed = " ".join(" ".join(extras[name]) for name in line.group(1).split(","))
    assert "PyMySQL" in installed and "psycopg" in installed
    docs = (root / "docs/connectors.md").read_text()
    assert "jdbc:mysql://" in docs and "postgresql://" in docs  # what those examples use


def test_the_summary_after_restarts_counts_every_attempt() -> None:
    from reflow.graph.restart import FixedDelayRestart

    failures = {"left": 1}

    def flaky(x: int) -> int:
        if x == 70 and failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("flaky at 70")
        return x

    out = TestingSink()
    job = (
        Job.builder()
        .batch_size(10)
        .restart_strategy(FixedDelayRestart(attempts=2, delay_s=0))
        .source(TestingSource(range(100)))
        .transform(Operators.map(flaky))
        .sink(out)
        .build()
    )
    result = reflow.run(job)
    text = result.summary()
    assert result.restarts == 1 and len(result.earlier_attempts) == 1
    read_before, written_before, _, error = result.earlier_attempts[0]
    assert "flaky at 70" in (error or "") and 70 <= read_before <= 100
    assert "COMPLETED" in text.splitlines()[0] and "after 1 restart" in text.splitlines()[0]
    assert f"all 2 attempts read {read_before + 100:,} records" in text
    assert f"attempt 1: read {read_before:,}, wrote {written_before:,}" in text
