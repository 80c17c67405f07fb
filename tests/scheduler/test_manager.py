"""The job manager with an injected clock: cron runs, dependencies, priorities, events."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from reflow.config import job_loader
from reflow.eventtime import ManualClock
from reflow.runtime import ExecutorSettings
from reflow.scheduler import (
    JobManager,
    JobQueue,
    JobStore,
    QueuedRun,
    ScheduleError,
    SchedulePolicy,
)
from reflow.testing import memory_store

JOB = """
job:
  id: {job_id}
  name: {job_id}
  source: {{connector: memory, config: {{collection: sched-in}}}}
  operators:
    - {{name: tag, type: map, expression: "{expression}"}}
  sink: {{connector: memory, config: {{collection: sched-out}}}}
"""


def _job(job_id: str, expression: str | None = None) -> str:
    return JOB.format(job_id=job_id, expression=expression or f"'{job_id}'")


def _manager(tmp_path: Path, clock: ManualClock, slots: int = 4, **options: Any) -> JobManager:
    memory_store["sched-in"] = [1]
    memory_store["sched-out"] = []
    store = JobStore(f"sqlite:///{tmp_path}/jobs.db")
    return JobManager(
        store, settings=ExecutorSettings(clock=clock), slots=slots, loader=job_loader, **options
    )


async def _settle(manager: JobManager, rounds: int = 30) -> None:
    for _ in range(rounds):
        await manager.step()
        if manager.running:
            await asyncio.gather(*(r.task for r in list(manager.running.values())))
        await asyncio.sleep(0)


def test_hourly_quartz_cron_fires_24_times_in_a_day_across_the_berlin_dst_change(
    tmp_path: Path,
) -> None:
    start = datetime(2026, 3, 28, 23, 0, tzinfo=UTC)  # 2026-03-29 00:00 in Berlin
    clock = ManualClock(int(start.timestamp() * 1000))
    manager = _manager(tmp_path, clock)

    async def day() -> None:
        manager.schedule(_job("hourly"), SchedulePolicy.cron("0 0 * * * ?", "Europe/Berlin"))
        for _ in range(24 * 6):  # a simulated day in 10-minute steps
            clock.advance(600)
            await _settle(manager, rounds=2)

    asyncio.run(day())
    runs = manager.store.runs("hourly")
    # 24 real hours from Berlin midnight: the local clock skips 02:00 and ends at 01:00
    assert len(runs) == 24
    assert all(r.status == "COMPLETED" for r in runs)
    fired = [r.trigger.split("cron:")[1][11:16] for r in runs]
    assert fired == ["01:00", *[f"{h:02d}:00" for h in range(3, 24)], "00:00", "01:00"]
    assert memory_store["sched-out"] == ["hourly"] * 24


def test_unix_cron_and_misfire_once_after_downtime(tmp_path: Path) -> None:
    clock = ManualClock(int(datetime(2026, 6, 1, tzinfo=UTC).timestamp() * 1000))
    manager = _manager(tmp_path, clock)

    async def scenario() -> None:
        manager.schedule(_job("every-15"), SchedulePolicy.cron("*/15 * * * *"))
        clock.advance(3 * 3600)  # the manager was down for 3 hours
        await _settle(manager)

    asyncio.run(scenario())
    runs = manager.store.runs("every-15")
    assert len(runs) == 1 and "12 fire times, run once" in runs[0].trigger


def test_dependency_chain_and_diamond_run_in_order(tmp_path: Path) -> None:
    clock = ManualClock()
    manager = _manager(tmp_path, clock)

    async def scenario() -> None:
        for job_id, policy in [
            ("b", SchedulePolicy.depends_on("a")),
            ("c", SchedulePolicy.depends_on("b")),
            ("d", SchedulePolicy.depends_on("a")),
            ("e", SchedulePolicy.depends_on("c", "d")),
            ("a", SchedulePolicy.immediate()),
        ]:
            manager.schedule(_job(job_id), policy)
        await _settle(manager)

    asyncio.run(scenario())
    started = [
        next(r.job_id for r in manager.store.runs() if r.run_id == rid) for rid in manager.started
    ]
    assert started[0] == "a"
    assert started.index("b") < started.index("c")
    assert started.index("e") == 4 and sorted(started) == ["a", "b", "c", "d", "e"]
    assert len(manager.store.runs("e")) == 1  # the diamond joins once


def test_a_failed_upstream_does_not_trigger_its_dependents(tmp_path: Path) -> None:
    clock = ManualClock()
    manager = _manager(tmp_path, clock)

    async def scenario() -> None:
        manager.schedule(_job("after-broken"), SchedulePolicy.depends_on("broken"))
        manager.schedule(_job("broken", expression="r / 0"), SchedulePolicy.immediate())
        await _settle(manager)

    asyncio.run(scenario())
    assert [r.status for r in manager.store.runs("broken")] == ["FAILED"]
    assert manager.store.runs("after-broken") == []


def test_a_dependency_cycle_is_rejected_at_submission(tmp_path: Path) -> None:
    manager = _manager(tmp_path, ManualClock())
    manager.schedule(_job("x"), SchedulePolicy.depends_on("z"))
    manager.schedule(_job("y"), SchedulePolicy.depends_on("x"))
    with pytest.raises(ScheduleError, match=r"dependency cycle: z -> x -> y -> z"):
        manager.schedule(_job("z"), SchedulePolicy.depends_on("y"))
    assert manager.store.job("z") is None


def test_one_slot_runs_higher_priorities_first(tmp_path: Path) -> None:
    clock = ManualClock()
    manager = _manager(tmp_path, clock, slots=1)
    priorities = [3, 9, 0, 5, 7, 1, 8, 2, 6, 4]

    async def scenario() -> None:
        for p in priorities:
            manager.schedule(_job(f"p{p}"), SchedulePolicy.immediate(), priority=p)
        await _settle(manager)

    asyncio.run(scenario())
    started = [
        next(r.job_id for r in manager.store.runs() if r.run_id == rid) for rid in manager.started
    ]
    assert started == [f"p{p}" for p in sorted(priorities, reverse=True)]


def test_aging_bounds_the_wait_of_the_lowest_priority() -> None:
    queue = JobQueue(aging_seconds=10)
    queue.push(QueuedRun("low", "low", priority=0, queued_ms=0))
    started_low_at = None
    for second in range(1, 200):  # a new priority-9 run every second, one slot
        queue.push(QueuedRun(f"high-{second}", "high", priority=9, queued_ms=second * 1000))
        run = queue.pop(second * 1000, free_slots=1)
        assert run is not None
        if run.run_id == "low":
            started_low_at = second
            break
    # priority gap 9 x 10 s aging: the low run waits at most about 90 s
    assert started_low_at is not None and started_low_at <= 91


def test_events_trigger_waiting_jobs(tmp_path: Path) -> None:
    manager = _manager(tmp_path, ManualClock())

    async def scenario() -> None:
        manager.schedule(_job("on-arrival"), SchedulePolicy.on_event("data-arrived"))
        await _settle(manager)
        assert manager.store.runs("on-arrival") == []
        manager.post_event("data-arrived")
        await _settle(manager)

    asyncio.run(scenario())
    assert [r.status for r in manager.store.runs("on-arrival")] == ["COMPLETED"]
    assert manager.store.runs("on-arrival")[0].trigger == "event:data-arrived"


def test_resources_decide_admission(tmp_path: Path) -> None:
    manager = _manager(tmp_path, ManualClock(), slots=2, memory_mb=1024)
    wide = _job("wide").replace("  name: wide\n", "  name: wide\n  parallelism: 3\n")
    # Its runs could never start: refused when submitted, not queued forever.
    with pytest.raises(ScheduleError, match=r"needs 3 slots .* the manager has 2.*--slots 3"):
        manager.schedule(wide, SchedulePolicy.immediate())
    big = _job("big").replace("  name: big\n", "  name: big\n  resources: {memory: 2g}\n")
    with pytest.raises(ScheduleError, match=r"asks for 2048 MB .* has 1024 MB"):
        manager.schedule(big, SchedulePolicy.immediate())
    assert manager.store.jobs() == []
    fits = _job("fits").replace("  name: fits\n", "  name: fits\n  parallelism: 2\n")
    manager.schedule(fits, SchedulePolicy.immediate())
    asyncio.run(_settle(manager, rounds=3))
    assert manager.store.runs("fits")[0].status == "COMPLETED"


def test_trigger_of_a_paused_or_cancelled_job_says_so(tmp_path: Path) -> None:
    manager = _manager(tmp_path, ManualClock())
    manager.schedule(_job("held"), SchedulePolicy.on_event("never"))
    manager.cancel("held")
    with pytest.raises(ScheduleError, match="job 'held' is cancelled: its runs do not start"):
        manager.trigger("held")
    assert manager.store.runs("held") == []  # nothing queued that would never start
    manager.resume("held")
    manager.trigger("held")
    asyncio.run(_settle(manager))
    assert [r.status for r in manager.store.runs("held")] == ["COMPLETED"]
