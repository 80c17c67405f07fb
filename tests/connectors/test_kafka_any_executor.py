"""When a Kafka source commits what it read, on any executor (this file runs again on
Ray actors, see tests/runtime/test_ray_executor.py): a bounded read commits its
final offsets before the job reports COMPLETED, and only once every step of the job
has ended cleanly -- a step that fails at the end leaves nothing committed."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from reflow import Connectors, Flow, Job, JobStatus
from reflow.operators.base import OperatorContext, OperatorLogic, OperatorSpec
from reflow.testing import TestingSink, TestingSource, run_job
from tests.connectors.test_kafka import _topic


def _filled_topic(bootstrap: str, rows: int) -> str:
    topic = _topic(bootstrap, 2)
    sink = Connectors.kafka(bootstrap_servers=bootstrap, topic=topic, key_field="n")
    source = TestingSource([{"n": i} for i in range(rows)])
    assert run_job(Job.builder().source(source).sink(sink).build()).error is None
    return topic


def _committed(bootstrap: str, topic: str, group: str) -> int:
    async def read() -> int:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
        await consumer.start()
        try:
            return sum([await consumer.committed(TopicPartition(topic, p)) or 0 for p in (0, 1)])
        finally:
            await consumer.stop()

    return asyncio.run(read())


def test_a_bounded_read_commits_its_final_offsets_before_it_completes(
    kafka_bootstrap: str,
) -> None:
    topic = _filled_topic(kafka_bootstrap, 1_200)
    group = f"g-{uuid.uuid4().hex[:8]}"
    source = Connectors.kafka(
        bootstrap_servers=kafka_bootstrap, topic=topic, group_id=group, stop_at_end=True
    )
    out = TestingSink()
    result = run_job(Job.builder().source(source).sink(out).build())  # no checkpoints at all
    assert result.status is JobStatus.COMPLETED, result.error
    # Read right after COMPLETED: the commit happened before it, not in the background.
    assert _committed(kafka_bootstrap, topic, group) == len(out.records) == 1_200


class _FailAtEnd(OperatorLogic):
    def process(self, batch: list[Any]) -> list[Any]:
        return batch

    def finish(self) -> list[Any]:
        raise RuntimeError("the last flush failed")


class FailAtEnd(OperatorSpec):
    """Passes records through, then fails at the end of its input (as a sink's last
    flush can), after the source has read everything."""

    operator_type = "fail-at-end"

    def build(self, ctx: OperatorContext) -> OperatorLogic:
        return _FailAtEnd()


def test_nothing_is_committed_when_a_later_step_fails_at_the_end(kafka_bootstrap: str) -> None:
    topic = _filled_topic(kafka_bootstrap, 1_200)
    group = f"g-{uuid.uuid4().hex[:8]}"
    flow = Flow("fails-late", chaining=False)  # the failing step in another subtask
    source = Connectors.kafka(
        bootstrap_servers=kafka_bootstrap, topic=topic, group_id=group, stop_at_end=True
    )
    flow.source(source).transform(FailAtEnd()).sink(TestingSink())
    result = run_job(flow.to_job())
    assert result.status is JobStatus.FAILED
    assert "the last flush failed" in (result.error or "")
    # The records never reached the sink's end: a re-run must read them again.
    assert _committed(kafka_bootstrap, topic, group) == 0
