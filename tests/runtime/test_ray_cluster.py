"""Two Ray nodes, one SIGKILL: Nexmark Q5 at parallelism 2 on a cluster of two
nodes in two network namespaces of this test's own (joined by a veth pair, as
two machines on a network would be). One subtask actor's process on the second
node is killed after a checkpoint completed; the job restarts from the last
complete checkpoint, and the exactly-once SQL table equals an uninterrupted
run's, row for row.

PostgreSQL is reached through its Unix socket, which the namespaces share."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from bench.nexmark import generate_bids

from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parents[2]
PG_SOCKET = Path("/var/run/postgresql")
HEAD_PORT = 6390
BIDS = 40_000

HELPERS = """
import asyncio


async def pace(bid):
    # Slows each source subtask to ~2,000 bids/s, so the kill lands mid-run.
    if bid["bidder"] % 25 == 0:
        await asyncio.sleep(0.01)
    return bid
"""

JOB = """
job:
  id: {job_id}
  name: q5-on-ray
  parallelism: 2
  batch_size: 100
  checkpoint: {{path: "{folder}/ckpt", interval: 400ms, timeout: 20s}}
  restart: {{strategy: fixed-delay, attempts: 3, delay: 500ms}}
  source:
    name: bids
    connector: file
    config: {{path: "{bids}", format: json}}
  operators:
    - {{name: pace, type: map, function: "q5helpers:pace", concurrency: 1}}
    - {{name: event-time, type: assign_timestamps, timestamp: dateTime,
        max_out_of_orderness: 200ms}}
    - name: counts
      type: window-aggregate
      key: auction
      window: {{type: tumbling, size: 1s}}
      aggregate: {{type: count}}
  sink:
    name: out
    connector: sql
    config: {{url: "{url}", table: {table}, create_table: true, delivery: exactly-once}}
"""


WAIT_FOR_NODES = """
import time, ray
ray.init(address="{address}", log_to_driver=False)
deadline = time.monotonic() + 60
while sum(1 for n in ray.nodes() if n["Alive"]) < 2 and time.monotonic() < deadline:
    time.sleep(0.2)
assert sum(1 for n in ray.nodes() if n["Alive"]) == 2, ray.nodes()
"""


def _missing() -> str | None:
    if sys.platform != "linux" or shutil.which("ip") is None:
        return "ip (iproute2) is needed for network namespaces"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    try:
        import ray  # noqa: F401
    except ImportError:
        return "Ray is not installed (pip install -e '.[dev]' or 'reflow[ray]')"
    if not (PG_SOCKET / ".s.PGSQL.5432").exists():
        return f"PostgreSQL's Unix socket is not in {PG_SOCKET}"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class TwoNodeCluster:
    """A Ray head in namespace ``a`` (10.251.0.1) and a worker in ``b`` (10.251.0.2)."""

    def __init__(self, folder: Path) -> None:
        tag = uuid.uuid4().hex[:6]
        self.a, self.b = f"rfa{tag}", f"rfb{tag}"
        self.folder = folder
        # Ray's socket paths must stay under 108 bytes: a short folder of its own.
        self.ray_dir = Path(tempfile.mkdtemp(prefix="rr", dir="/tmp"))
        self.address = f"10.251.0.1:{HEAD_PORT}"
        self.env = {
            **os.environ,
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": "disabled",  # the same on every node and the driver
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT), str(folder)]),
        }

    def start(self) -> None:
        a, b = self.a, self.b
        _ip("netns", "add", a)
        _ip("netns", "add", b)
        _ip("link", "add", f"v{a}", "type", "veth", "peer", "name", f"v{b}")
        _ip("link", "set", f"v{a}", "netns", a)
        _ip("link", "set", f"v{b}", "netns", b)
        _ip("-n", a, "addr", "add", "10.251.0.1/24", "dev", f"v{a}")
        _ip("-n", b, "addr", "add", "10.251.0.2/24", "dev", f"v{b}")
        for ns, dev in ((a, f"v{a}"), (b, f"v{b}")):
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "set", dev, "up")
        ray = str(Path(sys.executable).parent / "ray")
        common = ["--num-cpus", "2", "--disable-usage-stats"]
        self._in(
            a,
            [
                ray,
                "start",
                "--head",
                "--node-ip-address",
                "10.251.0.1",
                "--port",
                str(HEAD_PORT),
                "--include-dashboard",
                "false",
                "--temp-dir",
                str(self.ray_dir / "a"),
                *common,
            ],
        )
        self._in(
            b,
            [
                ray,
                "start",
                "--address",
                self.address,
                "--node-ip-address",
                "10.251.0.2",
                "--temp-dir",
                str(self.ray_dir / "b"),
                *common,
            ],
        )
        # Jobs start once the head knows both nodes.
        self._in(a, [sys.executable, "-c", WAIT_FOR_NODES.format(address=self.address)])

    def _in(self, ns: str, command: list[str]) -> None:
        proc = subprocess.run(
            ["ip", "netns", "exec", ns, *command],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    def pids(self, ns: str) -> list[int]:
        out = subprocess.run(
            ["ip", "netns", "pids", ns], capture_output=True, text=True, check=False
        ).stdout
        return [int(p) for p in out.split()]

    def titles(self, ns: str) -> list[str]:
        """The command lines of the processes in ``ns`` (for failure messages)."""
        found = []
        for pid in self.pids(ns):
            try:
                found.append(
                    Path(f"/proc/{pid}/cmdline").read_bytes()[:60].decode(errors="replace")
                )
            except OSError:
                continue
        return found

    def actor_pids(self, ns: str) -> list[int]:
        """Processes of reflow subtask actors on the node in ``ns``."""
        found = []
        for pid in self.pids(ns):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"SubtaskWorker" in cmdline:
                found.append(pid)
        return found

    def run_job(self, job: Path) -> subprocess.Popen[str]:
        """``reflow run JOB --executor ray`` as a driver on the head node."""
        command = [sys.executable, "-m", "reflow", "run", "--no-progress", str(job)]
        return subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.a,
                *command,
                "--executor",
                "ray",
                "--address",
                self.address,
            ],
            cwd=self.folder,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def stop(self) -> None:
        """Kill this cluster's processes only (never ``ray stop``), then the namespaces."""
        for _ in range(3):
            pids = self.pids(self.a) + self.pids(self.b)
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.3)
        for ns in (self.a, self.b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        shutil.rmtree(self.ray_dir, ignore_errors=True)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[TwoNodeCluster]:
    missing = _missing()
    if missing is not None:
        if IN_CI:
            pytest.fail(missing)
        pytest.skip(missing)
    nodes = TwoNodeCluster(tmp_path)
    try:
        nodes.start()
        yield nodes
    finally:
        nodes.stop()


def _table(url: str, table: str) -> list[tuple[object, ...]]:
    import sqlalchemy as sa

    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(f"SELECT key, window_start, window_end, value FROM {table}")
            )
            return sorted(tuple(r) for r in rows)
    finally:
        engine.dispose()


def _finish(proc: subprocess.Popen[str]) -> str:
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, out[-2000:] + err[-4000:]
    return err


@pytest.mark.timeout(600)
def test_q5_on_two_ray_nodes_recovers_from_a_sigkill_exactly_once(
    cluster: TwoNodeCluster, tmp_path: Path, postgres_url: str
) -> None:
    (tmp_path / "q5helpers.py").write_text(HELPERS)
    bids = tmp_path / "bids.jsonl"
    generate_bids(bids, BIDS, seed=5)
    # Inside the namespaces PostgreSQL is reached through its socket, not 127.0.0.1.
    database = postgres_url.rsplit("/", 1)[1]
    url = f"postgresql://postgres@/{database}?host={PG_SOCKET}"

    def job_file(name: str) -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(
            JOB.format(
                job_id=f"q5-{name}",
                folder=tmp_path / name,
                bids=bids,
                url=url,
                table=name,
            )
        )
        return path

    _finish(cluster.run_job(job_file("reference")))
    expected = _table(url, "reference")
    assert sum(int(str(row[3])) for row in expected) == BIDS  # every bid counted once

    proc = cluster.run_job(job_file("killed"))
    try:
        checkpoints = tmp_path / "killed" / "ckpt" / "q5-killed"
        deadline = time.monotonic() + 120
        while not any(checkpoints.glob("chk-*")) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[1][-4000:]
            time.sleep(0.05)
        assert any(checkpoints.glob("chk-*")), "no checkpoint completed before the kill"
        victims = cluster.actor_pids(cluster.b)
        # The subtasks are spread over both nodes (two per node).
        spread = (cluster.titles(cluster.a), cluster.titles(cluster.b))
        assert len(victims) == 2, f"the second node should run two subtask actors: {spread}"
        assert len(cluster.actor_pids(cluster.a)) == 2, f"the head should run two: {spread}"
        os.kill(victims[0], signal.SIGKILL)
        err = _finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()  # closes the pipes

    assert "was lost" in err and "restart 1" in err, err[-4000:]
    assert "restarts from checkpoint" in err, err[-4000:]
    assert _table(url, "killed") == expected
