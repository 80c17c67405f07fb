"""NATS JetStream sink throughput: every bid published as JSON to a stream, each
publish waiting for its acknowledgement, 500 at a time, beside nats-py alone.

``python -m bench.nats_sink --impl reflow|plain INPUT OUTPUT`` needs the NATS
server with JetStream on 127.0.0.1:4222; the stream is named after OUTPUT and
deleted after.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from bench.common import main_for

SERVERS = "nats://127.0.0.1:4222"
BATCH = 500


def _stream(out: Path) -> str:
    return f"reflow_bench_{out.parent.name.replace('.', '_')}"


async def _finish(stream: str) -> int:
    import nats

    client = await nats.connect(SERVERS)
    js = client.jetstream()
    info = await js.stream_info(stream)
    await js.delete_stream(stream)
    await client.close()
    return int(info.state.messages)


async def _publish_plain(inp: Path, stream: str) -> None:
    """The reference: acknowledged publishes, 500 in flight at a time."""
    import nats

    client = await nats.connect(SERVERS)
    js = client.jetstream()
    await js.add_stream(name=stream, subjects=[stream])
    loads, dumps = orjson.loads, orjson.dumps
    batch = []
    with open(inp, "rb") as fin:
        for line in fin:
            batch.append(dumps(loads(line)))
            if len(batch) == BATCH:
                await asyncio.gather(*(js.publish(stream, p) for p in batch))
                batch = []
    await asyncio.gather(*(js.publish(stream, p) for p in batch))
    await client.close()


def run_plain(inp: Path, out: Path) -> int:
    asyncio.run(_publish_plain(inp, _stream(out)))
    return asyncio.run(_finish(_stream(out)))


def run_reflow(inp: Path, out: Path, parallelism: int = 1) -> int:
    from reflow import Connectors, Job
    from reflow.testing import run_job

    job = (
        Job.builder()
        .name("nats-sink-bench")
        .parallelism(parallelism)
        .batch_size(BATCH)
        .source(Connectors.file(path=str(inp), format="json"), id="bids")
        .sink(Connectors.nats(servers=SERVERS, stream=_stream(out)), id="out")
        .build()
    )
    result = run_job(job)
    if result.error:
        raise SystemExit(result.error)
    return asyncio.run(_finish(_stream(out)))


if __name__ == "__main__":
    main_for(run_plain, run_reflow)
