"""The mqtt connector against real Mosquitto brokers: the shared one on
127.0.0.1:1883 and, for 100k-record runs, one of this test run without
in-flight and queue limits (see the ``mosquitto_unlimited`` fixture)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from reflow import Connectors, Job, JobStatus, Operators
from reflow.graph.restart import FixedDelayRestart
from reflow.testing import TestingSink, TestingSource, run_job, run_job_async
from tests.connectors.http_server import free_port
from tests.connectors.scenarios import dead_lettered_job


def _open_session(port: int, client_id: str, topic: str) -> None:
    """Create the persistent session (and its subscription) the source will resume,
    so the broker keeps what is published before the source job starts."""

    async def subscribe() -> None:
        async with aiomqtt.Client(
            "127.0.0.1", port, identifier=client_id, clean_session=False
        ) as client:
            await client.subscribe(topic, qos=1)

    asyncio.run(subscribe())


def _publish(port: int, topic: str, records: list[Any], **options: Any) -> None:
    sink = Connectors.mqtt(port=port, topic=topic, **options)
    result = run_job(Job.builder().source(TestingSource(records)).sink(sink).build())
    assert result.status is JobStatus.COMPLETED, result.error


def test_100k_records_through_sink_and_source(mosquitto_unlimited: int) -> None:
    port = mosquitto_unlimited
    topic = f"reflow/{uuid.uuid4().hex[:8]}/bids"
    client_id = f"reader-{uuid.uuid4().hex[:8]}"
    _open_session(port, client_id, topic)
    records = [{"id": i, "bidder": f"b{i % 97}", "price": i * 0.01} for i in range(100_000)]
    _publish(port, topic, records)

    out = TestingSink()
    source = Connectors.mqtt(port=port, topic=topic, client_id=client_id, stop_when_idle=1.0)
    result = run_job(Job.builder().source(source).sink(out).build())
    assert result.status is JobStatus.COMPLETED, result.error
    assert out.records == records  # every record, in order, exactly as sent
    events = next(s for s in result.metrics.steps if s.kind == "source").connector_events
    assert events["acks"] == 100_000


def test_ack_after_checkpoint_redelivers_what_a_failed_run_had_not_checkpointed(
    mosquitto_unlimited: int, tmp_path: Path
) -> None:
    port = mosquitto_unlimited
    topic = f"reflow/{uuid.uuid4().hex[:8]}/events"
    client_id = f"reader-{uuid.uuid4().hex[:8]}"
    _open_session(port, client_id, topic)
    _publish(port, topic, [{"n": i} for i in range(20_000)])

    failures = {"left": 1}

    async def flaky(record: dict[str, int]) -> dict[str, int]:
        if record["n"] % 200 == 0:
            await asyncio.sleep(0.005)
        if record["n"] == 12_000 and failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("forced failure")
        return record

    out = TestingSink(exactly_once=True)
    job = (
        Job.builder()
        .checkpointing(str(tmp_path / "ckpt"), interval_ms=100)
        .restart_strategy(FixedDelayRestart(attempts=2, delay_s=0.05))
        .source(
            Connectors.mqtt(
                port=port, topic=topic, client_id=client_id, ack="checkpoint", stop_when_idle=1.5
            )
        )
        .transform(Operators.map(flaky, concurrency=1))
        .sink(out)
        .build()
    )
    result = run_job(job)
    assert result.status is JobStatus.COMPLETED, result.error
    assert result.restarts == 1
    # Unacknowledged messages came again after the restart; the exactly-once
    # sink committed each record once.
    assert sorted(r["n"] for r in out.records) == list(range(20_000))


def test_shared_broker_round_trip_with_metadata_and_bad_payloads(mqtt_topic: str) -> None:
    client_id = f"reader-{uuid.uuid4().hex[:8]}"
    _open_session(1883, client_id, mqtt_topic + "/#")
    records = [{"id": i, "room": f"r{i % 3}"} for i in range(500)]
    _publish(1883, mqtt_topic + "/{room}", records)

    async def garbage() -> None:
        async with aiomqtt.Client("127.0.0.1", 1883) as client:
            await client.publish(mqtt_topic + "/r0", b"{oops", qos=1)

    asyncio.run(garbage())
    out, dead = TestingSink(), TestingSink()
    source = Connectors.mqtt(
        topic=mqtt_topic + "/#", client_id=client_id, metadata=True, stop_when_idle=1.0
    )
    job = dead_lettered_job(source, out, dead)
    result = run_job(job)
    assert result.status is JobStatus.COMPLETED, result.error
    assert sorted(r["payload"]["id"] for r in out.records) == list(range(500))
    assert all(r["topic"] == f"{mqtt_topic}/{r['payload']['room']}" for r in out.records)
    assert {r["qos"] for r in out.records} == {1}
    assert len(dead.records) == 1 and mqtt_topic in dead.records[0]["error"]


@pytest.mark.parametrize("role", ["source", "sink"])
def test_broker_down_at_start_is_a_clear_error(role: str) -> None:
    port = free_port()
    spec = Connectors.mqtt(port=port, topic="t", stop_when_idle=0.5)
    if role == "source":
        job = Job.builder().source(spec).sink(TestingSink()).build()
    else:
        spec = Connectors.mqtt(port=port, topic="t")
        job = Job.builder().source(TestingSource([{"a": 1}])).sink(spec).build()
    result = run_job(job)
    assert result.status is JobStatus.FAILED
    assert f"mqtt {role}: cannot connect to mqtt://127.0.0.1:{port}" in str(result.error)


def test_outage_mid_run_is_survived_by_sink_and_source(mosquitto_unlimited: int) -> None:
    from tests.server.test_health import TcpProxy

    topic = f"reflow/{uuid.uuid4().hex[:8]}/outage"
    client_id = f"reader-{uuid.uuid4().hex[:8]}"
    _open_session(mosquitto_unlimited, client_id, topic)

    async def slow(record: dict[str, int]) -> dict[str, int]:
        await asyncio.sleep(0.0005)
        return record

    async def cut(proxy: TcpProxy, after: float) -> None:
        await asyncio.sleep(after)
        await proxy.stop()
        await asyncio.sleep(0.3)
        await proxy.start()

    async def scenario() -> tuple[Any, Any, list[Any]]:
        proxy = TcpProxy(mosquitto_unlimited)
        await proxy.start()
        publish = (
            Job.builder()
            .batch_size(50)
            .source(TestingSource([{"n": i} for i in range(3_000)]))
            .transform(Operators.map(slow, concurrency=1))
            .sink(Connectors.mqtt(port=proxy.port, topic=topic))
            .build()
        )
        task = asyncio.create_task(run_job_async(publish))
        await cut(proxy, 0.5)
        sent = await task
        out = TestingSink()
        read = (
            Job.builder()
            .batch_size(50)
            .source(
                Connectors.mqtt(
                    port=proxy.port,
                    topic=topic,
                    client_id=client_id,
                    reconnect_backoff=0.1,
                    max_records=50,
                    stop_when_idle=2.0,
                )
            )
            .transform(Operators.map(slow, concurrency=1))
            .sink(out)
            .build()
        )
        task = asyncio.create_task(run_job_async(read))
        await cut(proxy, 0.5)
        received = await task
        await proxy.stop()
        return sent, received, out.records

    sent, received, records = asyncio.run(scenario())
    assert sent.status is JobStatus.COMPLETED, sent.error
    assert received.status is JobStatus.COMPLETED, received.error
    # At-least-once both ways: a batch cut by the outage is published again, and
    # messages whose acknowledgement was cut are delivered again; none is lost.
    assert {r["n"] for r in records} == set(range(3_000))
    events = next(s for s in received.metrics.steps if s.kind == "source").connector_events
    assert events["reconnects"] >= 1


def test_a_checkpoint_stored_before_its_acks_left_is_not_read_twice(
    mosquitto_unlimited: int,
) -> None:
    """The process dies after checkpoint 1 is stored but before its acknowledgements
    reach the broker: the broker resends those messages; the restored reader
    recognises them by packet id and acknowledges them without reading them again."""
    from reflow.connectors.base import ConnectorContext
    from reflow.connectors.mqtt import MqttConnector

    port = mosquitto_unlimited
    topic = f"reflow/{uuid.uuid4().hex[:8]}/window"
    client_id = f"reader-{uuid.uuid4().hex[:8]}"
    _open_session(port, client_id, topic)
    _publish(port, topic, [{"n": i} for i in range(2_000)])
    spec = MqttConnector().create_source(
        {
            "port": port,
            "topic": topic,
            "client_id": client_id,
            "ack": "checkpoint",
            "max_records": 100,
            "poll_timeout": 0.3,
        }
    )

    def reader() -> Any:
        return spec.create_reader(ConnectorContext("mqtt", checkpointing=True))

    async def scenario() -> tuple[list[Any], list[Any], dict[str, int]]:
        first = reader()
        await first.open()
        before: list[Any] = []
        while len(before) < 1_200:
            before.extend(await first.read_batch())
            if len(before) == 1_000:
                first.on_checkpoint(1)
                position = first.snapshot()  # stored with checkpoint 1
        await first.close()  # dies: checkpoint 1 never acknowledged

        again = reader()
        again.restore(position)
        await again.open()
        after: list[Any] = []
        for _ in range(100):  # until a read after the last message finds nothing
            batch = await again.read_batch()
            after.extend(batch)
            if not batch and len(after) >= 1_000:
                break
        await again.close()
        return before, after, again.ctx.events

    before, after, events = asyncio.run(scenario())
    assert [r["n"] for r in before] == list(range(1_200))
    # 1,000..1,199 were read after the checkpoint: they come again; 0..999 do not.
    assert sorted(r["n"] for r in after) == list(range(1_000, 2_000))
    assert events["redelivered_skipped"] == 1_000
