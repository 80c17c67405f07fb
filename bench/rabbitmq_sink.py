"""RabbitMQ sink throughput: every bid published as JSON to a durable queue with
publisher confirms, beside the same publishes with aio-pika alone.

``python -m bench.rabbitmq_sink --impl reflow|plain INPUT OUTPUT`` needs the
RabbitMQ server on 127.0.0.1:5672; the queue is named after OUTPUT and deleted after.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from bench.common import main_for

URL = "amqp://guest:guest@127.0.0.1:5672/"
BATCH = 500


def _queue(out: Path) -> str:
    return f"reflow-bench-{out.parent.name}"


async def _finish(queue: str) -> int:
    import aio_pika

    connection = await aio_pika.connect(URL)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        count = int(declared.declaration_result.message_count or 0)
        await channel.queue_delete(queue)
    return count


async def _publish_plain(inp: Path, queue: str) -> None:
    """The reference: confirmed, persistent publishes, 500 in flight at a time."""
    import aio_pika

    connection = await aio_pika.connect(URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue(queue, durable=True)
        exchange = channel.default_exchange
        persistent = aio_pika.DeliveryMode.PERSISTENT
        loads, dumps = orjson.loads, orjson.dumps
        batch = []
        with open(inp, "rb") as fin:
            for line in fin:
                batch.append(aio_pika.Message(dumps(loads(line)), delivery_mode=persistent))
                if len(batch) == BATCH:
                    await asyncio.gather(*(exchange.publish(m, queue) for m in batch))
                    batch = []
        await asyncio.gather(*(exchange.publish(m, queue) for m in batch))


def run_plain(inp: Path, out: Path) -> int:
    asyncio.run(_publish_plain(inp, _queue(out)))
    return asyncio.run(_finish(_queue(out)))


def run_reflow(inp: Path, out: Path, parallelism: int = 1) -> int:
    from reflow import Connectors, Job
    from reflow.testing import run_job

    job = (
        Job.builder()
        .name("rabbitmq-sink-bench")
        .parallelism(parallelism)
        .batch_size(BATCH)
        .source(Connectors.file(path=str(inp), format="json"), id="bids")
        .sink(Connectors.rabbitmq(url=URL, queue=_queue(out)), id="out")
        .build()
    )
    result = run_job(job)
    if result.error:
        raise SystemExit(result.error)
    return asyncio.run(_finish(_queue(out)))


if __name__ == "__main__":
    main_for(run_plain, run_reflow)
