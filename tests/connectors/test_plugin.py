"""The plugin path (seed §8.1): the sample third-party connector package under
examples/ is installed into a scratch folder, discovered through its entry point,
used from a YAML job, and passes the connector contract kit."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "examples" / "reflow-gzip-jsonl"

CONTRACT = """
from reflow.testing import check_connector
report = check_connector(
    "gzjsonl",
    sink_options={"path": "contract.jsonl.gz"},
    source_options={"path": "contract.jsonl.gz", "records_per_read": 64},
    ordered=True,
)
print("PASSED", len(report.passed), sorted(report.skipped))
"""

JOB = """
job:
  name: compress
  source: {name: events, connector: file, config: {path: events.jsonl}}
  operators:
    - {name: big, type: filter, expression: "r['v'] >= 50"}
  sink: {name: packed, connector: gzjsonl, config: {path: events.jsonl.gz}}
"""


def test_sample_plugin_is_discovered_used_from_yaml_and_passes_the_contract(
    tmp_path: Path,
) -> None:
    target = tmp_path / "site"
    source = tmp_path / "plugin"  # built from a copy: the build leaves files behind
    shutil.copytree(PLUGIN, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    env = {**os.environ, "PYTHONPATH": str(target)}

    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    listing = run("-m", "reflow", "connectors")
    assert "gzjsonl" in listing and "sample third-party connector" in listing
    assert "records_per_read" in run("-m", "reflow", "connectors", "gzjsonl")

    (tmp_path / "events.jsonl").write_bytes(
        b"".join(orjson.dumps({"id": i, "v": i % 100}) + b"\n" for i in range(1_000))
    )
    (tmp_path / "job.yaml").write_text(JOB)
    run("-m", "reflow", "run", "--no-progress", "job.yaml")
    with gzip.open(tmp_path / "events.jsonl.gz") as packed:
        rows = [orjson.loads(line) for line in packed]
    assert rows == [{"id": i, "v": i % 100} for i in range(1_000) if i % 100 >= 50]

    out = run("-c", CONTRACT)
    assert "PASSED 7 []" in out, out
