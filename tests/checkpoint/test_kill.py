"""Kill tests: SIGKILL a running job at random points; restarts from the latest
checkpoint; the final output equals an uninterrupted run's, no row lost or doubled."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

HELPERS = """
import asyncio

async def slow(record):
    await asyncio.sleep(0.002)
    return record
"""

JOB = """
job:
  id: {job_id}
  name: kill-test
  batch_size: 40
  parallelism: 2
  checkpoint: {{path: "{ckpt}", interval: 150ms}}
  source:
    name: events
    connector: file
    config: {{path: "{input}"}}
  operators:
    - {{name: slow, type: map, function: "killhelpers:slow", concurrency: 1}}
    - {{name: event-time, type: assign_timestamps, timestamp: ts, max_out_of_orderness: 50ms}}
    - name: totals
      type: window-aggregate
      key: k
      window: {{type: tumbling, size: 1s}}
      aggregate: {{type: sum, field: v}}
  sink:
    name: out
    connector: {sink_connector}
    config: {sink_config}
"""


def _write_inputs(folder: Path) -> Path:
    (folder / "killhelpers.py").write_text(HELPERS)
    rng = random.Random(11)
    rows = [
        {"k": f"k{rng.randrange(13)}", "v": rng.randrange(100), "ts": i * 7 - rng.randrange(40)}
        for i in range(8_000)
    ]
    path = folder / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


def _job_file(folder: Path, name: str, sink: str, sink_config: str, inputs: Path) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(
        JOB.format(
            job_id=name,
            ckpt=folder / f"{name}-ckpt",
            input=inputs,
            sink_connector=sink,
            sink_config=sink_config,
        )
    )
    return path


def _run(job: Path, kill_after: float | None) -> str | None:
    """Run ``reflow run --resume``; SIGKILL it after ``kill_after`` seconds if still running."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "reflow", "run", "--no-progress", "--resume", str(job)],
        cwd=job.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    if kill_after is not None:
        # Kill only after this attempt completed a checkpoint (so every kill has one
        # to resume from, however slowly the machine starts the process), then after
        # ``kill_after`` more seconds: somewhere between two checkpoints.
        _wait_for_new_checkpoint(job.parent / f"{job.stem}-ckpt", proc)
    try:
        proc.wait(timeout=kill_after if kill_after is not None else 120)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        return None
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.returncode == 0, err
    return err


def _wait_for_new_checkpoint(folder: Path, proc: subprocess.Popen[bytes]) -> None:
    import time

    started = time.time()
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if folder.exists() and any(f.stat().st_mtime >= started for f in folder.rglob("*")):
            return
        time.sleep(0.02)


def _run_with_kills(job: Path, kills: int, seed: int) -> int:
    rng = random.Random(seed)
    killed = 0
    while killed < kills:
        if _run(job, kill_after=rng.uniform(0.05, 0.5)) is None:
            killed += 1
        else:
            break  # it finished before the kill
    err = _run(job, kill_after=None)
    assert err is not None and "resuming job" in err  # from a checkpoint, not from scratch
    return killed


def _table(db: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return sorted(conn.execute("SELECT key, window_start, window_end, value FROM totals"))


@pytest.mark.timeout(300)
def test_sql_sink_exactly_once_through_sigkills(tmp_path: Path) -> None:
    inputs = _write_inputs(tmp_path)
    config = '{{url: "sqlite:///{db}", table: totals, create_table: true, delivery: exactly-once}}'
    reference_db, killed_db = tmp_path / "reference.db", tmp_path / "killed.db"
    reference = _job_file(tmp_path, "reference", "sql", config.format(db=reference_db), inputs)
    _run(reference, kill_after=None)
    expected = _table(reference_db)
    assert sum(int(str(row[3])) for row in expected) > 0

    job = _job_file(tmp_path, "killed", "sql", config.format(db=killed_db), inputs)
    killed = _run_with_kills(job, kills=5, seed=3)
    assert killed >= 5, "the job must have been killed at least 5 times"
    assert _table(killed_db) == expected


@pytest.mark.timeout(300)
def test_file_sink_exactly_once_through_sigkills(tmp_path: Path) -> None:
    inputs = _write_inputs(tmp_path)
    config = '{{path: "{folder}/totals.jsonl", delivery: exactly-once}}'

    def lines(folder: Path) -> list[bytes]:
        found = []
        for file in sorted(folder.glob("totals*.jsonl")):
            found.extend(file.read_bytes().splitlines())
        return sorted(found)

    reference = _job_file(
        tmp_path, "reference", "file", config.format(folder=tmp_path / "ref-out"), inputs
    )
    _run(reference, kill_after=None)
    expected = lines(tmp_path / "ref-out")
    assert expected

    job = _job_file(tmp_path, "killed", "file", config.format(folder=tmp_path / "out"), inputs)
    killed = _run_with_kills(job, kills=5, seed=5)
    assert killed >= 5
    assert lines(tmp_path / "out") == expected


DEAD_LETTER_HELPERS = """
import asyncio

async def picky(record):
    await asyncio.sleep(0.002)
    if record["n"] % 10 == 0:
        raise ValueError(f"record {record['n']} refused")
    return record
"""

DEAD_LETTER_JOB = """
job:
  id: dead-letters
  name: dead-letter-kill-test
  batch_size: 20
  checkpoint: {{path: "{ckpt}", interval: 100ms}}
  error_policy:
    mode: dead-letter
    dead_letter: {{connector: file, config: {{path: "{dead}"}}}}
  source:
    name: events
    connector: file
    config: {{path: "{input}"}}
  operators:
    - {{name: picky, type: map, function: "deadhelpers:picky", concurrency: 1}}
  sink:
    name: out
    connector: file
    config: {{path: "{out}"}}
"""


@pytest.mark.timeout(300)
def test_dead_letters_of_a_completed_checkpoint_survive_sigkills(tmp_path: Path) -> None:
    """Every tenth record is refused by its map and dead-lettered to a file. A
    checkpoint past a refused record must hold its dead letter on disk: a restart
    from it does not read that record again. SIGKILLed three times, the job ends
    with every refused record in the dead-letter file (at least once) and every
    other in the output."""
    (tmp_path / "deadhelpers.py").write_text(DEAD_LETTER_HELPERS)
    inputs = tmp_path / "events.jsonl"
    inputs.write_bytes(b"".join(orjson.dumps({"n": n}) + b"\n" for n in range(1_500)))
    dead, out = tmp_path / "dead" / "dead.jsonl", tmp_path / "out" / "out.jsonl"
    job = tmp_path / "dead-letters.yaml"
    job.write_text(
        DEAD_LETTER_JOB.format(
            ckpt=tmp_path / "dead-letters-ckpt", dead=dead, input=inputs, out=out
        )
    )

    killed = _run_with_kills(job, kills=3, seed=7)

    assert killed >= 1, "the job must have been killed"

    def numbers(path: Path, pick: str) -> set[int]:
        found: set[int] = set()
        for file in path.parent.glob("*.jsonl"):
            for line in file.read_bytes().splitlines():
                entry = orjson.loads(line)
                found.add(entry["record"]["n"] if pick == "record" else entry["n"])
        return found

    assert numbers(dead, "record") == set(range(0, 1_500, 10))
    assert numbers(out, "n") == {n for n in range(1_500) if n % 10}
