"""reflow savepoint and reflow run --from-savepoint, with a different parallelism."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from reflow.cli import main

JOB = """
job:
  id: sums
  name: sums
  parallelism: {parallelism}
  checkpoint: {{path: "{ckpt}", interval: 10m}}
  source:
    connector: datagen
    parallelism: 1
    config:
      number_of_rows: 20000
      rows_per_second: 10000
      fields:
        user: {{kind: int, min: 1, max: 40}}
        amount: {{kind: int, min: 1, max: 9}}
  operators:
    - name: totals
      type: aggregate
      key: user
      aggregate: {{type: sum, field: amount}}
  sink:
    connector: file
    config: {{path: "{out}"}}
"""


def _job(folder: Path, name: str, parallelism: int, out: Path) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(JOB.format(parallelism=parallelism, ckpt=folder / "ckpt", out=out))
    return path


def _totals(path: Path) -> dict[int, int]:
    totals: dict[int, int] = {}
    for file in sorted(path.parent.glob(path.stem + "*")):
        for line in file.read_bytes().splitlines():
            row = orjson.loads(line)
            key, value = row["user"], row["amount"]
            totals[key] = totals.get(key, 0) + value
    return totals


@pytest.mark.timeout(120)
def test_savepoint_stop_and_resume_with_parallelism_2_then_4(tmp_path: Path) -> None:
    reference_out = tmp_path / "reference" / "totals.jsonl"
    assert (
        main(
            ["run", "--no-progress", str(_job(tmp_path, "reference", 1, reference_out))],
            out=io.StringIO(),
        )
        == 0
    )
    expected = _totals(reference_out)
    assert sum(expected.values()) > 20_000

    first_out = tmp_path / "first" / "totals.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reflow",
            "run",
            "--no-progress",
            str(_job(tmp_path, "first", 2, first_out)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # part of the input is read
    out = io.StringIO()
    assert (
        main(["savepoint", str(tmp_path / "ckpt"), "sums", "--stop", "--timeout", "30"], out=out)
        == 0
    )
    savepoint = out.getvalue().strip()
    assert proc.wait(timeout=30) in (0, 130)
    assert Path(savepoint).exists() and "savepoints" in savepoint
    assert not first_out.exists()  # final totals only come at the end of input

    resumed_out = tmp_path / "resumed" / "totals.jsonl"
    resumed = _job(tmp_path, "resumed", 4, resumed_out)
    code = main(
        ["run", "--no-progress", "--from-savepoint", savepoint, str(resumed)], out=io.StringIO()
    )
    assert code == 0
    assert _totals(resumed_out) == expected
