"""The autoscaler: a map that gets slower mid-run is scaled up within the
stabilisation window, and back down when the cost goes; in dry-run mode it only
recommends. The decision rule itself is checked on fixed samples."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from reflow.config import job_loader, load_job_text, load_system_config_text
from reflow.errors import ConfigError
from reflow.graph.job import JobStatus
from reflow.graph.rescale import current_parallelism
from reflow.runtime import ExecutorSettings
from reflow.runtime.base import ExecutionSnapshot
from reflow.runtime.metrics import StepCounters
from reflow.scheduler import JobManager, JobStore
from reflow.scheduler.autoscaler import Autoscaler, AutoscalerConfig
from reflow.testing import executor_for_tests
from tests.scheduler import costly as costly_module


def _job(folder: Path, name: str, *, dry_run: bool = False) -> str:
    mode = "dry" if dry_run else "live"
    return f"""
job:
  id: {name}
  name: {name}
  parallelism: 1
  chaining: false
  checkpoint: {{path: '{folder / "checkpoints"}', interval: 500ms}}
  autoscaler:
    dry_run: {str(dry_run).lower()}
    target_utilization: 0.5
    utilization_boundary: 0.2
    window: 2s
    interval: 250ms
    cooldown: 2s
    max_parallelism: 3
  source:
    connector: datagen
    config: {{rows_per_second: 200, seed: 1}}
  operators:
    - {{name: costly, type: map, function: 'tests.scheduler.costly:work_{mode}', blocking: true}}
  sink: {{connector: file, config: {{path: '{folder / "out.jsonl"}'}}}}
"""


async def _until(check: Any, what: str, seconds: float = 90.0) -> float:
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > seconds:
            raise AssertionError(f"{what}: not within {seconds:g} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - began


def _scenario(tmp_path: Path, *, dry_run: bool) -> tuple[list[Any], list[str], dict[str, float]]:
    (tmp_path / "job.yaml").write_text(_job(tmp_path, "scaled", dry_run=dry_run))
    flag = Path(costly_module.flag("dry" if dry_run else "live"))
    flag.unlink(missing_ok=True)

    async def run() -> tuple[list[Any], list[str], dict[str, float]]:
        store = JobStore(f"sqlite:///{tmp_path}/jobs.db")
        settings = ExecutorSettings(compute_threads=4)
        manager = JobManager(
            store, loader=job_loader, executor=executor_for_tests(settings), slots=6
        )
        loop = asyncio.create_task(manager.run_forever())
        timings: dict[str, float] = {}
        try:
            run_id = manager.schedule(tmp_path / "job.yaml").run_id
            assert run_id is not None

            def costly() -> int:
                running = manager.running.get(run_id)
                return 0 if running is None else current_parallelism(running.job)["costly"]

            def actions() -> list[str]:
                scaler = manager.autoscalers.get(run_id)
                return [] if scaler is None else [d.action for d in scaler.decisions]

            await _until(lambda: actions() == ["fixed"], "the source reported as fixed")
            await asyncio.sleep(2.5)  # a whole window without cost: nothing to change
            assert actions() == ["fixed"] and costly() == 1
            flag.write_text("")
            timings["up"] = await _until(lambda: "scale_up" in actions(), "a scale-up decision")
            if not dry_run:
                await _until(lambda: costly() >= 2, "the rescale up")
                timings["up_parallelism"] = costly()
            flag.unlink()
            timings["down"] = await _until(
                lambda: "scale_down" in actions() or dry_run, "a scale-down decision"
            )
            if not dry_run:
                await _until(lambda: costly() == 1, "the rescale down")
                await _until(
                    lambda: sum(1 for _, s, _ in store.history("scaled") if s == "RESCALED") == 2,
                    "both rescales in the history",
                )
            scaler = manager.autoscalers[run_id]
            decisions = list(scaler.decisions)
            history = [f"{s}: {d}" for _, s, d in store.history("scaled")]
            timings["final_parallelism"] = costly()
            return decisions, history, timings
        finally:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)

    return asyncio.run(run())


def test_a_map_that_gets_slow_is_scaled_up_and_back_down(tmp_path: Path) -> None:
    decisions, history, timings = _scenario(tmp_path, dry_run=False)
    up = next(d for d in decisions if d.action == "scale_up")
    down = next(d for d in decisions if d.action == "scale_down")
    assert up.steps == ("costly",) and up.parallelism == 1 and up.recommended >= 2
    assert up.utilization > 0.7 and up.applied and up.input_rate > 0
    assert down.steps == ("costly",) and down.recommended == 1 and down.utilization < 0.3
    assert timings["final_parallelism"] == 1
    assert sum(1 for line in history if line.startswith("RESCALED")) >= 2
    assert any("scale_up" in line for line in history if line.startswith("AUTOSCALER"))
    print(timings)


def test_dry_run_recommends_and_changes_nothing(tmp_path: Path) -> None:
    decisions, history, timings = _scenario(tmp_path, dry_run=True)
    up = next(d for d in decisions if d.action == "scale_up")
    assert not up.applied and up.reason.startswith("dry run")
    assert timings["final_parallelism"] == 1
    assert not any(line.startswith("RESCALED") for line in history)


def _snapshot(busy_ns: int, records: int, blocked: float = 0.0) -> ExecutionSnapshot:
    def step(step_id: str, busy: int) -> StepCounters:
        return StepCounters(step_id, 0, "operator", records, records, 0, 0, 0, busy, 1, {})

    from reflow.runtime.base import SubtaskState

    return ExecutionSnapshot(
        "run",
        "run",
        JobStatus.RUNNING,
        True,
        None,
        None,
        1.0,
        (step("source", 0), step("costly", busy_ns), step("sink", 0)),
        (SubtaskState("costly#0", "costly", 0, blocked, None, False),),
    )


@pytest.mark.parametrize(
    ("busy", "blocked", "expected"),
    [
        (0.9, 0.0, 2),  # 0.9 busy at p=1, target 0.5 -> ceil(1.8)
        (0.6, 0.0, None),  # within 0.5 +- 0.2: hold
        (0.9, 0.8, None),  # busy but held back by backpressure: not the bottleneck
        (0.05, 0.0, None),  # at p=1 already: the minimum
    ],
)
def test_the_decision_rule(
    busy: float, blocked: float, expected: int | None, tmp_path: Path
) -> None:
    job = load_job_text(_job(tmp_path, "rule"))
    config = AutoscalerConfig(
        target_utilization=0.5, window_ms=10_000, interval_ms=1_000, cooldown_ms=0
    )
    scaler = Autoscaler(config, "run", since_ms=0)
    assert [d.action for d in scaler.observe(_snapshot(0, 0), job, 0)] == ["fixed"]
    decisions = scaler.observe(_snapshot(int(busy * 10e9), 2000, blocked * 10), job, 10_000)
    assert [d.recommended for d in decisions] == ([] if expected is None else [expected])
    load = next(v for v in scaler.loads if v.steps == ("costly",))
    assert load.utilization == pytest.approx(busy) and load.input_rate == pytest.approx(200)


def test_bad_autoscaler_settings_are_refused_at_their_line(tmp_path: Path) -> None:
    text = _job(tmp_path, "bad").replace(
        "max_parallelism: 3", "max_parallelism: 3\n    min_parallelism: 5"
    )
    with pytest.raises(ConfigError, match="min_parallelism <= max_parallelism") as caught:
        load_job_text(text, "job.yaml")
    assert "job.yaml:" in str(caught.value)


def _without_block(text: str) -> str:
    start = text.index("  autoscaler:")
    end = text.index("  source:")
    return text[:start] + text[end:]


def test_the_system_configs_autoscaler_is_under_every_jobs_block(tmp_path: Path) -> None:
    system = load_system_config_text(
        "system:\n  autoscaler: {enabled: true, dry_run: true, window: 5s, max_parallelism: 4}\n"
    )
    assert system.autoscaler is not None
    defaults = system.autoscaler.settings()
    with_block = load_job_text(_job(tmp_path, "own").replace("    window: 2s\n", ""))
    without = load_job_text(_without_block(_job(tmp_path, "none")))
    opted_out = load_job_text(_job(tmp_path, "out").replace("dry_run: false", "enabled: false"))

    own = AutoscalerConfig.of(with_block, defaults)
    assert own is not None
    # The job's keys win; the ones it leaves out come from the system.
    assert (own.dry_run, own.max_parallelism, own.target_utilization) == (False, 3, 0.5)
    assert own.window_ms == 5_000
    given = AutoscalerConfig.of(without, defaults)
    assert given is not None and given.dry_run and given.max_parallelism == 4
    assert AutoscalerConfig.of(opted_out, defaults) is None
    # Defaults that do not enable: only jobs with a block get one.
    quiet = {**defaults, "enabled": False}
    assert AutoscalerConfig.of(without, quiet) is None
    assert AutoscalerConfig.of(with_block, quiet) is not None
    assert AutoscalerConfig.of(without) is None


def test_a_job_without_a_block_is_autoscaled_by_the_system_config(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text(_without_block(_job(tmp_path, "plain")))
    system = load_system_config_text(
        "system:\n  autoscaler: {enabled: true, dry_run: true, interval: 100ms, window: 1s}\n"
    )
    assert system.autoscaler is not None

    async def run() -> list[str]:
        manager = JobManager(
            JobStore(f"sqlite:///{tmp_path}/jobs.db"),
            loader=job_loader,
            executor=executor_for_tests(),
            autoscaler_defaults=system.autoscaler.settings() if system.autoscaler else None,
        )
        loop = asyncio.create_task(manager.run_forever())
        try:
            run_id = manager.schedule(tmp_path / "job.yaml").run_id
            assert run_id is not None
            await _until(lambda: run_id in manager.autoscalers, "an autoscaler for the run")
            scaler = manager.autoscalers[run_id]
            await _until(lambda: bool(scaler.decisions), "its first decision")
            assert scaler.config.dry_run and scaler.config.window_ms == 1_000
            return [d.action for d in scaler.decisions]
        finally:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)

    assert asyncio.run(run())[0] == "fixed"  # the datagen source keeps its parallelism
