"""Subtask actors kept between jobs on Ray (a session cluster's task slots): a job
that ended cleanly leaves its actors empty, the next job of the same shape starts
on exactly those and gives the same output as on new ones; the actors of a
failed job are never used again, so its restart and later jobs run on new
processes. On the local executor the same jobs run as they are.
(tests/runtime/test_ray_executor.py runs this file on Ray.)"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from reflow import Job, JobStatus, Operators
from reflow.graph.restart import NoRestart
from reflow.runtime import JobResult, execute_with_recovery
from reflow.testing import TestingSink, TestingSource, executor_for_tests

ON_RAY = os.environ.get("REFLOW_TEST_EXECUTOR") == "ray"
ORDERS: list[dict[str, Any]] = [{"region": "nse"[i % 3], "amount": float(i)} for i in range(300)]
TOTALS = {
    region: sum(float(i) for i in range(region_at, 300, 3))
    for region_at, region in enumerate("nse")
}


def _fail_on_seven(order: dict[str, Any]) -> dict[str, Any]:
    if order["amount"] == 7.0:
        raise RuntimeError("order 7 is broken")
    return order


def _run(*, fail: bool = False) -> tuple[JobResult, dict[str, float], set[str]]:
    """A keyed sum at parallelism 2 (source, then two aggregate subtasks); its
    result, the totals it wrote and (on Ray) the ids of the actors it ran on."""
    sink = TestingSink()
    builder = Job.builder().parallelism(2).restart_strategy(NoRestart())
    builder = builder.source(TestingSource(ORDERS))
    if fail:
        builder = builder.transform(Operators.map(_fail_on_seven))
    job = (
        builder.transform(
            Operators.aggregate(lambda o: o["region"], lambda o: o["amount"], lambda a, b: a + b)
        )
        .sink(sink)
        .build()
    )
    executor = executor_for_tests()
    try:
        result = asyncio.run(execute_with_recovery(executor, job))
    finally:
        executor.close()
    actors = set(getattr(executor, "last_actor_ids", {}).values())
    return result, {r["key"]: r["value"] for r in sink.records}, actors


def test_a_clean_jobs_actors_run_the_next_job_and_a_failed_jobs_never() -> None:
    first, totals, first_actors = _run()
    assert first.status is JobStatus.COMPLETED, first.error
    assert totals == TOTALS

    second, totals, second_actors = _run()
    assert second.status is JobStatus.COMPLETED, second.error
    assert totals == TOTALS
    if ON_RAY:
        assert second_actors == first_actors  # each subtask on a kept, emptied actor

    failed, _, failed_actors = _run(fail=True)
    assert failed.status is JobStatus.FAILED
    assert "order 7 is broken" in str(failed.error)

    after, totals, after_actors = _run()
    assert after.status is JobStatus.COMPLETED, after.error
    assert totals == TOTALS
    if ON_RAY:
        assert failed_actors and not (after_actors & failed_actors)  # killed, not kept


def test_a_kept_actor_that_died_while_idle_makes_the_job_start_on_new_ones() -> None:
    first, totals, first_actors = _run()
    assert first.status is JobStatus.COMPLETED, first.error
    if ON_RAY:  # the kept actors die while they wait (their node left, say)
        import ray

        from reflow.runtime.ray import driver

        for pool in driver._POOLS.values():
            for _, _, actor in pool._idle:
                ray.kill(actor, no_restart=True)

    after, totals, after_actors = _run()
    assert after.status is JobStatus.COMPLETED, after.error
    assert totals == TOTALS
    if ON_RAY:
        assert after_actors and not (after_actors & first_actors)
