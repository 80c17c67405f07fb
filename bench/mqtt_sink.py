"""MQTT sink throughput: every bid published as JSON at QoS 1, each publish
acknowledged by the broker, 100 in flight at a time, beside aiomqtt alone.

``python -m bench.mqtt_sink --impl reflow|plain INPUT OUTPUT`` starts its own
Mosquitto (the Debian package's binary) on loopback with high-volume settings
(no in-flight or queue limits, TCP_NODELAY) before the timed part; a persistent
subscriber session counts what arrived after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import orjson

from bench.common import main_for

TOPIC = "bench/bids"
BATCH = 100
COUNTER = "bench-counter"


@contextlib.contextmanager
def _broker() -> Iterator[int]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = random.randrange(20_000, 32_000)
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "mosquitto.conf"
        config.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "max_inflight_messages 0\nmax_queued_messages 0\nset_tcp_nodelay true\n"
        )
        proc = subprocess.Popen(
            [binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            for _ in range(200):
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                time.sleep(0.05)
            asyncio.run(_subscribe(port))
            yield port
        finally:
            proc.terminate()
            proc.wait()


async def _subscribe(port: int) -> None:
    """A persistent session that keeps every message for the count."""
    import aiomqtt

    async with aiomqtt.Client("127.0.0.1", port, identifier=COUNTER, clean_session=False) as client:
        await client.subscribe(TOPIC, qos=1)


async def _count(port: int) -> int:
    import aiomqtt

    count = 0
    async with aiomqtt.Client("127.0.0.1", port, identifier=COUNTER, clean_session=False) as client:
        while True:
            try:
                async with asyncio.timeout(1.0):
                    await anext(client.messages)
            except TimeoutError:
                return count
            count += 1


async def _publish_plain(inp: Path, port: int) -> None:
    """The reference: aiomqtt's QoS 1 publishes, a batch of 100 awaited together."""
    import aiomqtt

    loads, dumps = orjson.loads, orjson.dumps
    async with aiomqtt.Client("127.0.0.1", port, max_inflight_messages=1_000) as client:
        client.pending_calls_threshold = 10_000
        batch: list[bytes] = []
        with open(inp, "rb") as fin:
            for line in fin:
                batch.append(dumps(loads(line)))
                if len(batch) == BATCH:
                    await asyncio.gather(*(client.publish(TOPIC, p, qos=1) for p in batch))
                    batch = []
        await asyncio.gather(*(client.publish(TOPIC, p, qos=1) for p in batch))


def run_plain(inp: Path, out: Path) -> int:
    with _broker() as port:
        asyncio.run(_publish_plain(inp, port))
        return asyncio.run(_count(port))


def run_reflow(inp: Path, out: Path, parallelism: int = 1) -> int:
    from reflow import Connectors, Job
    from reflow.testing import run_job

    with _broker() as port:
        job = (
            Job.builder()
            .name("mqtt-sink-bench")
            .parallelism(parallelism)
            .batch_size(BATCH)
            .source(Connectors.file(path=str(inp), format="json"), id="bids")
            .sink(Connectors.mqtt(port=port, topic=TOPIC, qos=1), id="out")
            .build()
        )
        result = run_job(job)
        if result.error:
            raise SystemExit(result.error)
        return asyncio.run(_count(port))


if __name__ == "__main__":
    main_for(run_plain, run_reflow)
