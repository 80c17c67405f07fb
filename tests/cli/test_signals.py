"""``reflow run`` stops cleanly on SIGTERM (what supervisors send), as on Ctrl-C:
sources stop, the sink flushes, the summary is printed, exit 143."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

JOB = """
job:
  name: term
  source:
    connector: datagen
    config: {{number_of_rows: 10000000, rows_per_second: 5000, fields: {{id: {{kind: sequence}}}}}}
  sink: {{connector: file, config: {{path: "{out}"}}}}
"""


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stop_signal_flushes_prints_the_summary_and_exits(
    tmp_path: Path, signum: int, code: int
) -> None:
    out = tmp_path / "out.jsonl"
    job = tmp_path / "job.yaml"
    job.write_text(JOB.format(out=out))
    proc = subprocess.Popen(
        [sys.executable, "-m", "reflow", "run", "--no-progress", str(job)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(2_000):  # until the job has written something (bounded wait)
            if out.exists() and out.stat().st_size > 0:
                break
            time.sleep(0.01)
        else:
            pytest.fail("the job wrote nothing")
        proc.send_signal(signum)
        stdout, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code
    assert "CANCELLED" in stdout
    match = re.search(r"sink\s+sink\s+1\s+([\d,]+)", stdout)
    assert match is not None, stdout
    written = int(match.group(1).replace(",", ""))
    lines = out.read_text().splitlines()
    assert written > 0 and len(lines) == written  # every record the sink took is in the file
    assert [int(line.split(":")[1].rstrip("}")) for line in lines[:3]] == [0, 1, 2]
