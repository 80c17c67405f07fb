"""The rabbitmq connector against the real RabbitMQ server: 100k messages through
the confirmed sink and back, acknowledgements held until checkpoints complete (a
failed run loses nothing), bad messages and an unreachable server."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import aio_pika

from reflow import Connectors, Job, JobStatus, Operators
from reflow.testing import TestingSink, TestingSource, run_job
from tests.conftest import RABBITMQ_URL
from tests.connectors.scenarios import dead_lettered_job, run_until_crash


def _queue_depth(queue: str) -> int:
    async def depth() -> int:
        connection = await aio_pika.connect(RABBITMQ_URL)
        async with connection:
            channel = await connection.channel()
            declared = await channel.declare_queue(queue, passive=True)
            return int(declared.declaration_result.message_count or 0)

    return asyncio.run(depth())


def _publish(queue: str, records: list[Any]) -> None:
    sink = Connectors.rabbitmq(url=RABBITMQ_URL, queue=queue)
    result = run_job(Job.builder().source(TestingSource(records)).sink(sink).build())
    assert result.status is JobStatus.COMPLETED, result.error


def _source(queue: str, **options: Any) -> Any:
    return Connectors.rabbitmq(url=RABBITMQ_URL, queue=queue, stop_when_idle="1s", **options)


def test_100k_messages_round_trip(rabbitmq_queue: str) -> None:
    records = [{"id": i, "user": f"u{i % 31}", "amount": i * 0.5} for i in range(100_000)]
    _publish(rabbitmq_queue, records)
    assert _queue_depth(rabbitmq_queue) == 100_000

    out = TestingSink()
    result = run_job(Job.builder().source(_source(rabbitmq_queue)).sink(out).build())
    assert result.status is JobStatus.COMPLETED, result.error
    assert out.records == records  # one consumer: queue order
    assert _queue_depth(rabbitmq_queue) == 0


def test_a_failed_checkpointed_run_loses_nothing(rabbitmq_queue: str, tmp_path: Path) -> None:
    records = [{"n": i} for i in range(4_000)]
    _publish(rabbitmq_queue, records)

    committed = run_until_crash(
        _source(rabbitmq_queue, max_records=50, prefetch=500), tmp_path / "ckpt"
    )
    # Only what completed checkpoints covered was acknowledged; the rest is back.
    left = _queue_depth(rabbitmq_queue)
    assert left == 4_000 - len(committed)

    second = TestingSink()
    result = run_job(Job.builder().source(_source(rabbitmq_queue)).sink(second).build())
    assert result.status is JobStatus.COMPLETED, result.error
    assert sorted(committed + [r["n"] for r in second.records]) == list(range(4_000))


def test_bad_messages_go_to_the_dead_letter(rabbitmq_queue: str) -> None:
    async def raw() -> None:
        connection = await aio_pika.connect(RABBITMQ_URL)
        async with connection:
            channel = await connection.channel()
            await channel.declare_queue(rabbitmq_queue, durable=True)
            for body in (b'{"ok": 1}', b"{broken", b'{"ok": 2}'):
                await channel.default_exchange.publish(aio_pika.Message(body), rabbitmq_queue)

    asyncio.run(raw())
    dead, out = TestingSink(), TestingSink()
    job = dead_lettered_job(_source(rabbitmq_queue), out, dead)
    result = run_job(job)
    assert result.status is JobStatus.COMPLETED, result.error
    assert out.records == [{"ok": 1}, {"ok": 2}]
    assert [d["record"] for d in dead.records] == ["{broken"]
    assert _queue_depth(rabbitmq_queue) == 0


def test_routing_key_placeholders_and_missing_fields(rabbitmq_queue: str) -> None:
    dead = TestingSink()
    sink = Connectors.rabbitmq(url=RABBITMQ_URL, routing_key=rabbitmq_queue + "{suffix}")
    rows: list[Any] = [{"suffix": "", "v": 1}, {"v": 2}]
    asyncio.run(_declare(rabbitmq_queue))
    job = dead_lettered_job(TestingSource(rows), sink, dead)
    assert run_job(job).status is JobStatus.COMPLETED
    assert [d["record"] for d in dead.records] == [{"v": 2}]
    assert _queue_depth(rabbitmq_queue) == 1


async def _declare(queue: str) -> None:
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(queue, durable=True)


def test_unreachable_server_is_a_clear_error(rabbitmq_queue: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"amqp://guest:secret@127.0.0.1:{port}/"
    sink = Connectors.rabbitmq(url=url, queue=rabbitmq_queue)
    result = run_job(Job.builder().source(TestingSource([{"a": 1}])).sink(sink).build())
    assert result.status is JobStatus.FAILED
    message = str(result.error)
    assert "rabbitmq sink" in message and f"127.0.0.1:{port}" in message
    assert "secret" not in message


def test_a_short_outage_mid_run_is_retried_without_loss(rabbitmq_queue: str) -> None:
    from reflow.testing import run_job_async
    from tests.server.test_health import TcpProxy

    async def slow(record: dict[str, int]) -> dict[str, int]:
        await asyncio.sleep(0.001)
        return record

    async def scenario() -> Any:
        proxy = TcpProxy(5672)
        await proxy.start()
        url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/"
        job = (
            Job.builder()
            .batch_size(50)
            .source(TestingSource([{"n": i} for i in range(2_000)]))
            .transform(Operators.map(slow, concurrency=1))
            .sink(Connectors.rabbitmq(url=url, queue=rabbitmq_queue))
            .build()
        )
        task = asyncio.create_task(run_job_async(job))
        await asyncio.sleep(0.8)
        await proxy.stop()
        await asyncio.sleep(0.3)
        await proxy.start()
        result = await task
        await proxy.stop()
        return result

    result = asyncio.run(scenario())
    assert result.status is JobStatus.COMPLETED, result.error
    out = TestingSink()
    result = run_job(Job.builder().source(_source(rabbitmq_queue)).sink(out).build())
    assert result.status is JobStatus.COMPLETED, result.error
    # At-least-once: a batch cut by the outage is published again, never lost.
    assert {r["n"] for r in out.records} == set(range(2_000))


def test_source_connection_lost_mid_run_restarts_the_job_without_loss(
    rabbitmq_queue: str, tmp_path: Path
) -> None:
    """The source's connection is cut: the step fails naming the lost connection,
    the job restarts from its checkpoint, the broker delivers again what was not
    acknowledged; none is lost."""
    from reflow.graph.restart import FixedDelayRestart
    from reflow.testing import run_job_async
    from tests.server.test_health import TcpProxy

    records = [{"n": i} for i in range(5_000)]
    sink = Connectors.rabbitmq(url=RABBITMQ_URL, queue=rabbitmq_queue)
    assert run_job(Job.builder().source(TestingSource(records)).sink(sink).build()).error is None

    async def slow(record: dict[str, int]) -> dict[str, int]:
        if record["n"] % 50 == 0:
            await asyncio.sleep(0.01)
        return record

    out = TestingSink(exactly_once=True)

    async def scenario() -> Any:
        proxy = TcpProxy(5672)
        await proxy.start()
        job = (
            Job.builder()
            .batch_size(50)
            .checkpointing(str(tmp_path / "ckpt"), interval_ms=100)
            .restart_strategy(FixedDelayRestart(attempts=5, delay_s=0.5))
            .source(
                Connectors.rabbitmq(
                    url=f"amqp://guest:guest@127.0.0.1:{proxy.port}/",
                    queue=rabbitmq_queue,
                    prefetch=500,
                    stop_when_idle=1.5,
                )
            )
            .transform(Operators.map(slow, concurrency=1))
            .sink(out)
            .build()
        )
        task = asyncio.create_task(run_job_async(job))
        await asyncio.sleep(0.5)
        await proxy.stop()
        await asyncio.sleep(0.5)
        await proxy.start()
        result = await task
        await proxy.stop()
        return result

    result = asyncio.run(scenario())
    assert result.status is JobStatus.COMPLETED, result.error
    assert result.restarts >= 1
    # None lost. Acknowledgements cut by the outage make the broker deliver those
    # messages again, so a record may arrive twice (the source is at-least-once).
    assert {r["n"] for r in out.records} == set(range(5_000))
