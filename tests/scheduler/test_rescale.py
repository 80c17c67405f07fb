"""Rescaling a running run (``JobManager.rescale``): a keyed-window job with an
exactly-once sink goes 1 -> 3 -> 2 mid-stream and writes what an uninterrupted
run at parallelism 1 writes; on the local executor and (REFLOW_TEST_EXECUTOR=ray)
on Ray."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from reflow.config import job_loader, load_job_text
from reflow.errors import ConfigError, ReflowError
from reflow.graph.rescale import current_parallelism, rescaled
from reflow.runtime import ExecutorSettings
from reflow.scheduler import JobManager, JobStore, SchedulePolicy
from reflow.testing import executor_for_tests, run_job

ROWS = 12_000


def _job(folder: Path, name: str, *, rate: str = "", checkpoint: bool = True) -> str:
    return f"""
job:
  id: {name}
  name: {name}
  parallelism: 1
  {"checkpoint: {path: '" + str(folder / "checkpoints") + "', interval: 300ms}" if checkpoint else ""}
  source:
    connector: datagen
    parallelism: 1
    config:
      number_of_rows: {ROWS}
      seed: 7
      {rate}
      fields: {{id: {{kind: sequence}}, k: {{kind: int, min: 0, max: 40}}}}
  operators:
    - {{name: event-time, type: assign_timestamps, timestamp: "r['id'] * 10"}}
    - name: counts
      type: window_aggregate
      key: k
      window: {{type: tumbling, size: 1s}}
      aggregate: {{type: count}}
  sink: {{connector: file, config: {{path: '{folder / "out.jsonl"}', delivery: exactly-once}}}}
"""


def _output(folder: Path) -> list[tuple[Any, ...]]:
    rows = [
        orjson.loads(line)
        for path in sorted(folder.glob("out*.jsonl"))
        for line in path.read_bytes().splitlines()
    ]
    return sorted((r["key"], r["window_start"], r["value"]) for r in rows)


async def _source_read(manager: JobManager, run_id: str, at_least: int) -> None:
    for _ in range(60_000):
        try:
            read = manager.executor.snapshot(run_id).metrics.step("source").records_out
        except (ReflowError, KeyError):
            read = 0
        if read >= at_least:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"the source did not read {at_least} rows")


def test_rescale_a_running_window_job_1_3_2_gives_the_uninterrupted_output(
    tmp_path: Path,
) -> None:
    reference = tmp_path / "reference"
    reference.mkdir()
    assert run_job(load_job_text(_job(reference, "reference", checkpoint=False))).error is None
    expected = _output(reference)
    assert sum(v for _, _, v in expected) == ROWS

    live = tmp_path / "live"
    live.mkdir()
    text = _job(live, "windows", rate="rows_per_second: 1500")

    async def scenario() -> tuple[list[Any], list[str]]:
        store = JobStore(f"sqlite:///{tmp_path}/jobs.db")
        manager = JobManager(
            store, loader=job_loader, executor=executor_for_tests(ExecutorSettings()), slots=4
        )
        loop = asyncio.create_task(manager.run_forever())
        try:
            run_id = manager.schedule(text, SchedulePolicy.immediate()).run_id
            assert run_id is not None
            await _source_read(manager, run_id, 2_000)
            first = await manager.rescale("windows", parallelism=3)
            assert manager.running[run_id].job.job_graph.max_parallelism == 3
            await _source_read(manager, run_id, 6_000)
            second = await manager.rescale(run_id, parallelism=2)
            while store.runs("windows")[-1].status == "RUNNING":
                await asyncio.sleep(0.02)
            statuses = [r.status for r in store.runs("windows")]
            history = [f"{s}: {d}" for _, s, d in store.history("windows")]
            return [*first, *second], [*statuses, *history]
        finally:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)

    results, log = asyncio.run(scenario())
    assert log[0] == "COMPLETED", log
    one, two = results
    assert (one.before["counts"], one.after["counts"]) == (1, 3)
    assert (two.before["counts"], two.after["counts"]) == (3, 2)
    assert one.after["source"] == two.after["source"] == 1  # sources keep theirs
    for done in (one, two):
        assert 0 < done.stop_seconds <= done.downtime_seconds
        # The source has rows left: the restarted run moved records soon after.
        assert done.processing_seconds is not None
        assert done.downtime_seconds <= done.processing_seconds
    print(
        f"after: {one.after} {two.after}; stopped in {one.stop_seconds:.3f} / {two.stop_seconds:.3f} s"
    )
    for done in (one, two):
        print(done.describe())
    assert sum(1 for line in log if line.startswith("RESCALED")) == 2
    assert _output(live) == expected
    # No hidden in-progress file is left behind, not even by the subtask removed.
    assert sorted(p.name for p in live.glob(".*")) == []


def test_rescale_refuses_what_cannot_be_done(tmp_path: Path) -> None:
    job = load_job_text(_job(tmp_path, "plan"))
    assert current_parallelism(job) == {"source": 1, "event-time": 1, "counts": 1, "sink": 1}
    wider = rescaled(job, 3, {"sink": 1})
    assert current_parallelism(wider) == {"source": 1, "event-time": 3, "counts": 3, "sink": 1}
    with pytest.raises(ConfigError, match="is a source: sources keep their parallelism"):
        rescaled(job, steps={"source": 2})
    with pytest.raises(ConfigError, match="from 1 to 128"):
        rescaled(job, 500)
    with pytest.raises(ConfigError, match="no step 'nope'"):
        rescaled(job, steps={"nope": 2})


def test_rescale_needs_checkpointing_and_a_running_run(tmp_path: Path) -> None:
    async def scenario() -> list[str]:
        store = JobStore(f"sqlite:///{tmp_path}/jobs.db")
        manager = JobManager(store, loader=job_loader, slots=4)
        errors = []
        for call in (manager.rescale("absent", parallelism=2),):
            try:
                await call
            except ReflowError as exc:
                errors.append(str(exc))
        text = _job(tmp_path, "plain", rate="rows_per_second: 100", checkpoint=False)
        loop = asyncio.create_task(manager.run_forever())
        try:
            run_id = manager.schedule(text, SchedulePolicy.immediate()).run_id
            assert run_id is not None
            await _source_read(manager, run_id, 1)
            try:
                await manager.rescale("plain", parallelism=2)
            except ReflowError as exc:
                errors.append(str(exc))
            try:
                await manager.rescale("plain", parallelism=8)
            except ReflowError as exc:
                errors.append(str(exc))
        finally:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)
        return errors

    errors = asyncio.run(scenario())
    assert "no running run to rescale" in errors[0]
    assert "without checkpointing" in errors[1] and "checkpoint:" in errors[1]
    assert len(errors) == 3
