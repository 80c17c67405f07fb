"""Redis sink throughput: every bid appended to a Redis stream (XADD, JSON), in
pipelines of 500 commands, beside the same writes with redis-py alone.

``python -m bench.redis_sink --impl reflow|plain INPUT OUTPUT`` needs the Redis
server on 127.0.0.1:6379; the stream key is named after OUTPUT and deleted after.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from bench.common import main_for

URL = "redis://127.0.0.1:6379/0"
PIPELINE = 500


def _key(out: Path) -> str:
    return f"reflow-bench:{out.parent.name}:{out.name}"


def _finish(key: str) -> int:
    import redis

    client = redis.Redis.from_url(URL)
    written = int(client.xlen(key))
    client.delete(key)
    client.close()
    return written


def run_plain(inp: Path, out: Path) -> int:
    """The reference: parse each line and XADD it, 500 commands per round trip."""
    import redis

    key = _key(out)
    client = redis.Redis.from_url(URL)
    loads, dumps = orjson.loads, orjson.dumps
    pipe = client.pipeline(transaction=False)
    queued = 0
    with open(inp, "rb") as fin:
        for line in fin:
            pipe.xadd(key, {"data": dumps(loads(line))})
            queued += 1
            if queued == PIPELINE:
                pipe.execute()
                queued = 0
    if queued:
        pipe.execute()
    client.close()
    return _finish(key)


def run_reflow(inp: Path, out: Path, parallelism: int = 1) -> int:
    from reflow import Connectors, Job
    from reflow.testing import run_job

    key = _key(out)
    job = (
        Job.builder()
        .name("redis-sink-bench")
        .parallelism(parallelism)
        .batch_size(PIPELINE)
        .source(Connectors.file(path=str(inp), format="json"), id="bids")
        .sink(Connectors.redis(url=URL, data_type="stream", key=key, batch_size=PIPELINE), id="out")
        .build()
    )
    result = run_job(job)
    if result.error:
        raise SystemExit(result.error)
    return _finish(key)


if __name__ == "__main__":
    main_for(run_plain, run_reflow)
