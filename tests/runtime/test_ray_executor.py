"""The Ray executor runs the foundation's and keyed-state job tests (and the
recovery test that holds on any executor) with the same results as the local
executor: the suites below run again with every
``run_job`` on Ray (``REFLOW_TEST_EXECUTOR=ray``: one actor per subtask, keyed
exchanges and watermarks crossing actors), in a network namespace of this
test's own with only loopback up -- Ray binds to the host's address otherwise,
and tests send traffic to loopback only. One Ray instance serves the whole
inner run and ends with its namespace."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parents[2]

# The job tests of the foundation (operators, executor) and keyed-state issues
# (keyed operators, windows, event time) that go through run_job.
SUITES = [
    "tests/operators/test_operators.py",
    "tests/operators/test_keyed.py",
    "tests/runtime/test_executor.py",
    "tests/eventtime/test_event_time.py",
    # Checkpoints and recovery: barriers through actor calls, the driver's
    # coordinator, restarts from the last complete checkpoint.
    "tests/checkpoint/test_recovery_any_executor.py",
    # Checkpoints go on after some subtasks finished (FLIP-147).
    "tests/checkpoint/test_finished_tasks.py",
    # The manager on Ray: live counters of every actor in /metrics, cancel.
    "tests/server/test_metrics_any_executor.py",
    # resources: -> each actor's Ray reservation; impossible requests fail at once.
    "tests/runtime/test_resources_any_executor.py",
    # Sources commit what they read only once every actor's subtask ended cleanly.
    "tests/connectors/test_kafka_any_executor.py",
    # A streaming SQL job: its fused select steps and aggregates travel to the actors.
    "tests/table/test_sql_any_executor.py",
    # A running window job rescaled 1 -> 3 -> 2 through savepoints: new actors take
    # over redistributed keyed state; the exactly-once output equals an uninterrupted run.
    "tests/scheduler/test_rescale.py",
    # Actors of a job that ended cleanly run the next job; a failed job's never do.
    "tests/runtime/test_actor_reuse_any_executor.py",
]


def _namespaces_available() -> str | None:
    if sys.platform != "linux" or shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare and ip (util-linux, iproute2) are needed for a network namespace"
    if os.geteuid() != 0:
        return "creating a network namespace needs root"
    try:
        import ray  # noqa: F401
    except ImportError:
        return "Ray is not installed (pip install -e '.[dev]' or 'reflow[ray]')"
    return None


@pytest.mark.skipif(
    os.environ.get("REFLOW_TEST_EXECUTOR") == "ray", reason="already the inner run on Ray"
)
@pytest.mark.timeout(900)  # ~2 minutes: the suites again, on Ray actors
def test_job_suites_pass_on_the_ray_executor() -> None:
    missing = _namespaces_available()
    if missing is not None:
        if IN_CI:
            pytest.fail(missing)
        pytest.skip(missing)
    env = {
        **os.environ,
        "REFLOW_TEST_EXECUTOR": "ray",
        "RAY_USAGE_STATS_ENABLED": "0",
        # This checkout's reflow, in the actors too, whatever the venv installed.
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
    }
    pytest_args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    command = "ip link set lo up && exec " + shlex.join(
        [*pytest_args, "-m", "not local_only", *SUITES]
    )
    proc = subprocess.run(
        ["unshare", "-n", "sh", "-c", command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    tail = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, tail
    counts = re.findall(r"(\d+) passed", proc.stdout)
    assert counts and int(counts[-1]) >= 30, tail  # the suites really ran, on Ray
