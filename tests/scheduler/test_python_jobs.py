"""Python jobs and custom policies in the job manager (seed §3.4.3, §8.3): kept by
reference in the store, built again for every run, surviving a restart."""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from reflow import Connectors, Job
from reflow.cli import main
from reflow.config import job_loader
from reflow.errors import ConfigError
from reflow.eventtime import ManualClock
from reflow.runtime import ExecutorSettings
from reflow.scheduler import CustomPolicy, JobManager, JobStore, ScheduleError, SchedulePolicy
from reflow.testing import memory_store

MODULE = """
from dataclasses import dataclass
from pathlib import Path

from reflow import Connectors, Flow, Job, Operators
from reflow.scheduler import CustomPolicy

job = (
    Job.builder()
    .id("py-nightly")
    .source(Connectors.memory(collection="py-in"))
    .transform(Operators.map(lambda r: r * 10))  # a closure: built again from this module
    .sink(Connectors.memory(collection="py-out"))
    .build()
)

flow = Flow("py-flow")
flow.source(Connectors.memory(collection="py-in")).map(lambda r: -r).sink(
    Connectors.memory(collection="py-flow-out")
)


def make_job():
    return (
        Job.builder()
        .id("py-made")
        .source(Connectors.memory(collection="py-in"))
        .sink(Connectors.memory(collection="py-made-out"))
        .build()
    )


@dataclass(frozen=True)
class EveryTenSecondsWhenFlagged(CustomPolicy):
    flag: str
    period: float = 10.0

    async def triggers(self, clock):
        while True:
            await clock.sleep(self.period)
            yield clock.now_ms()

    def should_execute(self, job_id):
        return Path(self.flag).exists()
"""

START = int(datetime(2026, 6, 1, tzinfo=UTC).timestamp() * 1000)


@pytest.fixture
def module(tmp_path: Path) -> Iterator[Any]:
    (tmp_path / "pyjobs_sched.py").write_text(MODULE)
    sys.path.insert(0, str(tmp_path))
    memory_store["py-in"] = [1, 2]
    for name in ("py-out", "py-flow-out", "py-made-out"):
        memory_store[name] = []
    import pyjobs_sched  # type: ignore[import-not-found]  # written by the test

    yield pyjobs_sched
    sys.path.remove(str(tmp_path))
    sys.modules.pop("pyjobs_sched", None)


def _manager(tmp_path: Path, clock: ManualClock) -> JobManager:
    store = JobStore(f"sqlite:///{tmp_path}/jobs.db")
    return JobManager(store, settings=ExecutorSettings(clock=clock), loader=job_loader)


async def _settle(manager: JobManager, rounds: int = 10) -> None:
    for _ in range(rounds):
        await manager.step()
        if manager.running:
            await asyncio.gather(*(r.task for r in list(manager.running.values())))
        for _ in range(5):
            await asyncio.sleep(0)


def test_a_built_job_a_flow_and_a_reference_are_scheduled_and_run(
    tmp_path: Path, module: Any
) -> None:
    clock = ManualClock(START)
    manager = _manager(tmp_path, clock)

    async def scenario() -> None:
        manager.schedule(module.job, SchedulePolicy.cron("0 * * * *"))  # hourly
        manager.schedule(module.flow)
        manager.schedule("pyjobs_sched:make_job")
        await _settle(manager)
        for _ in range(2):
            clock.advance(3600)
            await _settle(manager)

    asyncio.run(scenario())
    assert memory_store["py-out"] == [10, 20, 10, 20]  # two hourly runs
    assert memory_store["py-flow-out"] == [-1, -2]
    assert memory_store["py-made-out"] == [1, 2]
    stored = {r.job_id: r.spec for r in manager.store.jobs()}
    assert stored["py-nightly"] == "python:pyjobs_sched:job"
    assert stored["py-made"] == "python:pyjobs_sched:make_job"


def test_a_job_that_is_no_module_level_name_is_refused_with_the_fix(
    tmp_path: Path, module: Any
) -> None:
    local = (
        Job.builder()
        .id("local")
        .source(Connectors.memory(collection="py-in"))
        .sink(Connectors.memory(collection="py-out"))
        .build()
    )
    manager = _manager(tmp_path, ManualClock(START))
    with pytest.raises(ScheduleError, match="not a module-level name of any imported module"):
        manager.schedule(local)
    assert manager.store.jobs() == []


def test_a_custom_policy_fires_survives_a_restart_and_asks_should_execute(
    tmp_path: Path, module: Any
) -> None:
    flag = tmp_path / "ready.flag"
    clock = ManualClock(START)
    policy = module.EveryTenSecondsWhenFlagged(str(flag))

    async def first() -> JobManager:
        manager = _manager(tmp_path, clock)
        manager.schedule(module.job, policy)
        await _settle(manager)
        await clock.advance_and_settle(10)  # no flag: declined
        await _settle(manager)
        flag.touch()
        await clock.advance_and_settle(10)
        await _settle(manager)
        manager.store.close()
        return manager

    first_manager = asyncio.run(first())
    assert [r.trigger for r in first_manager.store.runs("py-nightly")] == [
        "custom:EveryTenSecondsWhenFlagged"
    ]

    async def after_restart() -> JobManager:
        manager = _manager(tmp_path, clock)  # a new manager on the same store
        manager.recover()
        await _settle(manager)
        await clock.advance_and_settle(10)
        await _settle(manager)
        manager.pause("py-nightly")
        await _settle(manager)
        await clock.advance_and_settle(10)  # paused: its triggers stop
        await _settle(manager)
        return manager

    manager = asyncio.run(after_restart())
    runs = manager.store.runs("py-nightly")
    assert [r.status for r in runs] == ["COMPLETED", "COMPLETED"]
    assert memory_store["py-out"] == [10, 20, 10, 20]
    status = manager.get_status("py-nightly")
    assert status.policy["class"] == "pyjobs_sched:EveryTenSecondsWhenFlagged"
    assert status.policy["options"] == {"flag": str(flag), "period": 10.0}
    out = io.StringIO()
    assert main(["jobs", "--store", f"sqlite:///{tmp_path}/jobs.db"], out=out) == 0
    assert "py-nightly" in out.getvalue() and "custom" in out.getvalue()


def test_custom_policies_the_store_cannot_keep_are_refused_at_schedule_time(
    tmp_path: Path, module: Any
) -> None:
    class Local(CustomPolicy):
        async def triggers(self, clock: Any) -> Any:
            yield clock.now_ms()

    manager = _manager(tmp_path, ManualClock(START))
    with pytest.raises(ScheduleError, match="defined inside a function"):
        manager.schedule(module.job, Local())
    unstorable = module.EveryTenSecondsWhenFlagged(flag=object())
    with pytest.raises(ScheduleError, match="options must be JSON values"):
        manager.schedule(module.job, unstorable)
    assert manager.store.jobs() == []
    yaml = """
job:
  id: yaml-custom
  name: yaml-custom
  source: {connector: memory, config: {collection: py-in}}
  sink: {connector: memory, config: {collection: py-out}}
  schedule: {policy: custom}
"""
    with pytest.raises(ScheduleError, match="custom policies are Python classes"):
        manager.schedule(yaml)


def test_a_store_whose_policy_module_is_gone_still_lists_and_runs_the_rest(
    tmp_path: Path, module: Any, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock(START)
    manager = _manager(tmp_path, clock)
    manager.schedule(module.job, module.EveryTenSecondsWhenFlagged("x"))
    manager.schedule("pyjobs_sched:make_job")
    manager.store.close()
    (tmp_path / "pyjobs_sched.py").rename(tmp_path / "elsewhere.py")
    sys.modules.pop("pyjobs_sched", None)

    async def scenario() -> JobManager:
        again = _manager(tmp_path, clock)
        again.recover()
        await _settle(again)
        await clock.advance_and_settle(10)
        await _settle(again)
        return again

    with caplog.at_level("ERROR"):
        again = asyncio.run(scenario())
    assert "job py-nightly is not triggered: custom policy" in caplog.text
    assert again.get_status("py-nightly").state == "active"
    assert [r.status for r in again.store.runs("py-made")] == ["FAILED"]
    assert "no module named 'pyjobs_sched'" in (again.store.runs("py-made")[0].error or "")
    assert main(["jobs", "--store", f"sqlite:///{tmp_path}/jobs.db"], out=io.StringIO()) == 0


def test_the_api_never_builds_python_references() -> None:
    with pytest.raises(ConfigError, match="jobs submitted through the API are YAML"):
        job_loader("python:os:system", "<submitted>")
