"""Kafka sink throughput: every bid sent as JSON to a 3-partition topic, keyed by
bidder, beside the same sends with aiokafka alone.

``python -m bench.kafka_sink --impl reflow|plain INPUT OUTPUT`` starts a
Kafka-protocol broker (noida-db, from the dev install) on loopback before the
timed part and counts the topic's records after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import orjson

from bench.common import main_for

TOPIC = "bids"
PARTITIONS = 3


@contextlib.contextmanager
def _broker() -> Iterator[str]:
    binary = shutil.which("noida-db") or str(Path(sys.executable).parent / "noida-db")
    port = random.randrange(20_000, 32_000)
    with tempfile.TemporaryDirectory() as data:
        proc = subprocess.Popen(
            [
                binary,
                "start",
                "--data-dir",
                data,
                "--host",
                "127.0.0.1",
                "--only",
                "kafka",
                "--kafka-port",
                str(port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(200):
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                time.sleep(0.05)
            bootstrap = f"127.0.0.1:{port}"
            asyncio.run(_create_topic(bootstrap))
            yield bootstrap
        finally:
            proc.terminate()
            proc.wait()


async def _create_topic(bootstrap: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])
    finally:
        await admin.close()


async def _count(bootstrap: str) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(TOPIC, p) for p in range(PARTITIONS)])
    finally:
        await consumer.stop()
    return sum(ends.values())


async def _send_plain(inp: Path, bootstrap: str) -> None:
    """The reference: parse each line and send it; aiokafka's buffer blocks the
    loop when full, and one flush at the end waits for every delivery."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    loads, dumps = orjson.loads, orjson.dumps
    try:
        with open(inp, "rb") as fin:
            for line in fin:
                bid = loads(line)
                await producer.send(TOPIC, dumps(bid), key=str(bid["bidder"]).encode())
        await producer.flush()
    finally:
        await producer.stop()


BOOTSTRAP = ""  # set by __main__ once the broker runs


def run_plain(inp: Path, out: Path) -> int:
    asyncio.run(_send_plain(inp, BOOTSTRAP))
    return asyncio.run(_count(BOOTSTRAP))


def run_reflow(inp: Path, out: Path, parallelism: int = 1) -> int:
    from reflow import Connectors, Job
    from reflow.testing import run_job

    job = (
        Job.builder()
        .name("kafka-sink-bench")
        .parallelism(parallelism)
        .batch_size(500)
        .source(Connectors.file(path=str(inp), format="json"), id="bids")
        .sink(
            Connectors.kafka(bootstrap_servers=BOOTSTRAP, topic=TOPIC, key_field="bidder"),
            id="out",
        )
        .build()
    )
    result = run_job(job)
    if result.error:
        raise SystemExit(result.error)
    return asyncio.run(_count(BOOTSTRAP))


if __name__ == "__main__":
    with _broker() as BOOTSTRAP:
        main_for(run_plain, run_reflow)
