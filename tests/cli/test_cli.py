"""Every CLI command through main([...]), with its exit code."""

from __future__ import annotations

import io
import os
import sqlite3
from pathlib import Path

import orjson
import pytest

from reflow.cli import main

JOB = """\
job:
  name: cli-job
  source:
    connector: file
    config: {{path: {src}}}
  operators:
    - name: double
      type: map
      expression: "{{'id': r['id'], 'v': r['v'] * 2}}"
    - name: big
      type: filter
      expression: "r['v'] >= 10"
  sink:
    name: db
    connector: sql
    config: {{url: "sqlite:///{db}", table: out, create_table: true}}
"""


@pytest.fixture
def job_file(tmp_path: Path) -> Path:
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"".join(orjson.dumps({"id": i, "v": i}) + b"\n" for i in range(100)))
    path = tmp_path / "job.yaml"
    path.write_text(JOB.format(src=src, db=tmp_path / "out.db"))
    return path


def _main(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue()


def test_run_prints_the_summary_and_writes_the_table(job_file: Path) -> None:
    code, out = _main("run", "--no-progress", str(job_file))
    assert code == 0
    assert "Job 'cli-job'" in out and "COMPLETED" in out
    assert "read 100 records, wrote 95" in out
    db = sqlite3.connect(job_file.parent / "out.db")
    assert db.execute("SELECT COUNT(*) FROM out").fetchone() == (95,)


def test_run_with_system_config_and_parallelism(job_file: Path, tmp_path: Path) -> None:
    config = tmp_path / "system.yaml"
    config.write_text("system:\n  executor:\n    parallelism: 2\n    threadPool: {maxSize: 4}\n")
    code, out = _main("run", "--no-progress", "--config", str(config), str(job_file))
    assert code == 0
    assert " 2 " in out.splitlines()[2]  # the source ran as 2 subtasks


def test_failed_job_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "job:\n  name: boom\n  source: {connector: datagen, config: {number_of_rows: 5}}\n"
        "  operators:\n    - {name: div, type: map, expression: 'r[\"id\"] / 0'}\n"
        "  sink: {connector: stdout}\n"
    )
    code, _ = _main("run", "--no-progress", str(path))
    assert code == 1
    assert "step 'div' failed on record" in capsys.readouterr().err


def test_validate_ok_and_invalid(
    job_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _main("validate", str(job_file))
    assert code == 0 and "valid" in out
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "job:\n  name: x\n  source: {connector: file, config: {path: a.jsonl}}\n  sink: {connector: stdot}\n"
    )
    code, _ = _main("validate", str(broken))
    err = capsys.readouterr().err
    assert code == 2
    assert f"{broken}:4:" in err and "did you mean 'stdout'" in err
    assert "Traceback" not in err


def test_explain(job_file: Path) -> None:
    code, out = _main("explain", "--format", "text", str(job_file))
    assert code == 0
    assert "vertex 1: source -> double -> big -> db" in out
    code, out = _main("explain", "--format", "mermaid", "--no-chaining", str(job_file))
    assert code == 0 and out.startswith("```mermaid\nflowchart LR")


def test_connectors_list_and_detail() -> None:
    code, out = _main("connectors")
    assert code == 0
    assert {line.split()[0] for line in out.splitlines()} >= {
        "file",
        "sql",
        "jdbc",
        "datagen",
        "stdout",
    }
    code, out = _main("connectors", "file")
    assert code == 0 and "rolling_max_records" in out and "(required)" in out


def test_unknown_connector_and_missing_file_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert _main("connectors", "nope")[0] == 2
    assert _main("run", "no/such/job.yaml")[0] == 2
    assert "no such file" in capsys.readouterr().err


def test_usage_error_exits_2() -> None:
    assert _main("frobnicate")[0] == 2


def test_python_dash_m_runs_the_cli(job_file: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "reflow", "validate", str(job_file)],
        capture_output=True,
        text=True,
        env={**os.environ},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "valid" in proc.stdout


def test_run_says_it_ignores_a_schedule_block(
    job_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = job_file.read_text().replace(
        "  name: cli-job\n", "  name: cli-job\n  schedule: {cron: '0 * * * * ?'}\n"
    )
    job_file.write_text(text)
    code, out = _main("run", "--no-progress", str(job_file))
    assert code == 0 and "read 100 records, wrote 95" in out
    err = capsys.readouterr().err
    assert "has a schedule: block" in err and "ignores it" in err and "reflow submit" in err
