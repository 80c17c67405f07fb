"""Job shapes the connector tests share."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from reflow import Job, JobStatus, Operators
from reflow.graph.job import ErrorMode, ErrorPolicy
from reflow.testing import TestingSink, TestingSource, run_job

CRASH_AT = 3_000


def dead_lettered_job(source: Any, sink: Any, dead: TestingSink) -> Job:
    """source -> sink, every rejected record to ``dead``."""
    return (
        Job.builder()
        .error_policy(ErrorPolicy(ErrorMode.DEAD_LETTER, dead_letter=dead))
        .source(source)
        .sink(sink)
        .build()
    )


async def _fail_late(record: dict[str, int]) -> dict[str, int]:
    if record["n"] % 50 == 0:
        await asyncio.sleep(0.005)  # slow enough for checkpoints to complete
    if record["n"] == CRASH_AT:
        raise RuntimeError("crash")
    return record


def run_until_crash(source: Any, checkpoints: Path) -> list[int]:
    """Read ``{"n": i}`` records from ``source`` with checkpoints every 50 ms until
    record 3,000 fails the job; the ``n`` an exactly-once sink committed."""
    first = TestingSink(exactly_once=True)
    job = (
        Job.builder()
        .batch_size(50)
        .checkpointing(str(checkpoints), interval_ms=50)
        .source(source)
        .transform(Operators.map(_fail_late, concurrency=1))
        .sink(first)
        .build()
    )
    result = run_job(job)
    assert result.status is JobStatus.FAILED
    committed = [r["n"] for r in first.records]
    # What the completed checkpoints covered: a prefix, all of it when a barrier fell
    # just before the failing record and its checkpoint completed before the failure.
    assert 0 < len(committed) <= CRASH_AT
    assert committed == list(range(len(committed)))
    return committed


def failed_start(spec: Any, role: str) -> str:
    """Run ``spec`` as the source (``role='source'``) or the sink of a one-step job
    that must fail; its error message."""
    if role == "source":
        job = Job.builder().source(spec).sink(TestingSink()).build()
    else:
        job = Job.builder().source(TestingSource([{"a": 1}])).sink(spec).build()
    result = run_job(job)
    assert result.status is JobStatus.FAILED
    return str(result.error)
