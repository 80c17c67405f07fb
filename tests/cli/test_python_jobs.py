"""`reflow run/validate/explain` of jobs written in Python: file.py, file.py:attr, module:attr."""

from __future__ import annotations

import io
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from reflow.cli import main

JOB_PY = """\
import reflow
from reflow import Connectors, Flow, Job, Operators

SRC = {src!r}
DB = {db!r}


def double(r):
    if r["v"] == {bad}:
        raise ValueError("v is unlucky")
    return {{"id": r["id"], "v": r["v"] * 2}}


def make_job():
    return (
        Job.builder()
        .id("py-job")
        .name("py-job")
        {checkpoint}
        .source(Connectors.file(path=SRC))
        .transform(Operators.map(double, name="double"))
        .sink(Connectors.sql(url="sqlite:///" + DB, table="out", create_table=True))
        .build()
    )


job = make_job()

if __name__ == "__main__":
    raise SystemExit("the __main__ block must not run under reflow run")
"""


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"".join(orjson.dumps({"id": i, "v": i}) + b"\n" for i in range(100)))
    monkeypatch.chdir(tmp_path)
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:  # each test imports its own job module
        if name.startswith(("reflow_job_", "pyjobs")):
            del sys.modules[name]


def _write(folder: Path, name: str = "pyjob.py", bad: int = -1, checkpoint: str = "") -> Path:
    path = folder / name
    data = Path.cwd()  # the test's folder, also for a module in a package below it
    path.write_text(
        JOB_PY.format(
            src=str(data / "in.jsonl"), db=str(data / "out.db"), bad=bad, checkpoint=checkpoint
        )
    )
    return path


def _main(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def _rows(folder: Path) -> int:
    return int(sqlite3.connect(folder / "out.db").execute("SELECT COUNT(*) FROM out").fetchone()[0])


def test_a_python_file_runs_like_a_job_file(folder: Path) -> None:
    path = _write(folder)
    code, out = _main("run", "--no-progress", str(path))
    assert code == 0, out
    assert "Job 'py-job'" in out and "COMPLETED" in out and "read 100 records, wrote 100" in out
    assert _rows(folder) == 100


def test_an_attribute_or_a_function_or_a_module_can_be_named(folder: Path) -> None:
    _write(folder)
    assert _main("run", "--no-progress", "pyjob.py:make_job")[0] == 0
    package = folder / "pyjobs"
    package.mkdir()
    (package / "__init__.py").write_text("")
    _write(package, "nightly.py")
    code, out = _main("run", "--no-progress", "pyjobs.nightly:job")
    assert code == 0, out
    assert "wrote 100" in out and _rows(folder) == 200


def test_a_failing_python_job_exits_1_naming_the_step(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(folder, bad=7)
    code, _ = _main("run", "--no-progress", str(path))
    assert code == 1
    err = capsys.readouterr().err
    assert "FAILED" in err and "double" in err and "v is unlucky" in err


def test_validate_and_explain_take_python_jobs(folder: Path) -> None:
    path = _write(folder)
    code, out = _main("validate", str(path))
    assert code == 0 and "valid" in out and "'py-job'" in out
    code, out = _main("explain", "--format", "text", "--parallelism", "2", str(path))
    assert code == 0 and "double" in out and "parallelism 2" in out


@pytest.mark.parametrize(
    ("text", "target", "message"),
    [
        ("x = 1\n", "empty.py", "defines no Job or Flow at module level"),
        (
            "from pyjob import make_job\na = make_job()\nb = make_job()\n",
            "two.py",
            "defines 2 jobs (a, b); name one: reflow run two.py:a",
        ),
        ("x = 1\n", "empty.py:missing", "has no 'missing'"),
        ("x = 1\n", "empty.py:x", "is a int, not a Job, a Flow or a function returning one"),
        ("raise RuntimeError('boom')\n", "boom.py", "importing it failed: RuntimeError: boom"),
        ("", "nowhere.py", "no such Python file"),
        ("", "no_such_pkg.mod:job", "no module named 'no_such_pkg'"),
    ],
)
def test_python_targets_that_name_no_job_say_what_to_do(
    folder: Path, capsys: pytest.CaptureFixture[str], text: str, target: str, message: str
) -> None:
    _write(folder)
    if text:
        (folder / target.partition(":")[0]).write_text(text)
    code, _ = _main("run", "--no-progress", target)
    assert code == 2
    assert message in capsys.readouterr().err


RESUMABLE_PY = """\
import os

from reflow import Connectors, Job, Operators
from reflow.graph.restart import NoRestart


def check(r):
    if r["id"] == 700 and os.environ.get("PYJOB_FAIL") == "1":
        raise RuntimeError("failing on purpose at 700")
    return {{"id": r["id"], "value": r["value"]}}


job = (
    Job.builder()
    .id("py-resume")
    .checkpointing({chk!r}, interval_ms=50)
    .restart_strategy(NoRestart())
    .batch_size(20)
    .source(Connectors.datagen(number_of_rows=1000, rows_per_second=2000))
    .transform(Operators.map(check, name="check"))
    .sink(Connectors.sql(url="sqlite:///" + {db!r}, table="out", create_table=True,
                         delivery="exactly-once"))
    .build()
)
"""


def test_resume_continues_a_python_job_from_its_checkpoint(
    folder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = folder / "resumable.py"
    path.write_text(RESUMABLE_PY.format(chk=str(folder / "chk"), db=str(folder / "out.db")))
    monkeypatch.setenv("PYJOB_FAIL", "1")
    assert _main("run", "--no-progress", str(path))[0] == 1
    assert "failing on purpose at 700" in capsys.readouterr().err
    assert list((folder / "chk").rglob("chk-*")), "the failed run took no checkpoint"
    monkeypatch.setenv("PYJOB_FAIL", "0")
    code, out = _main("run", "--no-progress", "--resume", str(path))
    assert code == 0, out
    assert "resuming job py-resume from checkpoint" in capsys.readouterr().err
    db = sqlite3.connect(folder / "out.db")
    assert db.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM out").fetchone() == (1000, 1000)


def test_resume_of_a_job_without_an_id_is_refused_not_a_silent_fresh_start(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = f".checkpointing({str(folder / 'chk')!r}, interval_ms=50)"
    path = _write(folder, checkpoint=checkpoint)
    path.write_text(path.read_text().replace('.id("py-job")', ""))
    code, _ = _main("run", "--no-progress", "--resume", str(path))
    assert code == 2
    assert "give the job an id" in capsys.readouterr().err
