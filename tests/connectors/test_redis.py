"""The redis connector against the real Redis server: every data type, TTLs, a
100k-entry stream round trip through a consumer group, and a server that is
absent at start or goes away mid-run."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import orjson
import redis
import redis.asyncio

from reflow import Connectors, Job, JobStatus, Operators
from reflow.testing import TestingSink, TestingSource, run_job, run_job_async
from tests.connectors.scenarios import dead_lettered_job
from tests.server.test_health import TcpProxy

URL = "redis://127.0.0.1:6379/0"


def _client() -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=6379)


def _write(records: list[Any], **options: Any) -> Any:
    job = Job.builder().source(TestingSource(records)).sink(Connectors.redis(**options)).build()
    return run_job(job)


def test_stream_round_trip_of_100k_entries_acknowledges_everything(redis_prefix: str) -> None:
    stream = f"{redis_prefix}events"
    records = [{"id": i, "user": f"u{i % 97}", "amount": i * 0.5} for i in range(100_000)]
    result = _write(records, url=URL, data_type="stream", key=stream, batch_size=2_000)
    assert result.status is JobStatus.COMPLETED, result.error
    assert _client().xlen(stream) == 100_000

    sink = TestingSink()
    source = Connectors.redis(url=URL, stream=stream, group="g1", count=1_000, stop_at_end=True)
    result = run_job(Job.builder().source(source).sink(sink).build())
    assert result.status is JobStatus.COMPLETED, result.error
    assert sink.records == records  # one reader: stream order
    assert _client().xpending(stream, "g1")["pending"] == 0


def test_checkpointed_stream_source_acks_only_after_checkpoints(
    redis_prefix: str, tmp_path: Any
) -> None:
    stream = f"{redis_prefix}ck"
    records = [{"n": i} for i in range(3_000)]
    assert _write(records, url=URL, data_type="stream", key=stream).status is JobStatus.COMPLETED

    async def slow(record: dict[str, int]) -> dict[str, int]:
        await asyncio.sleep(0.0005)
        return record

    sink = TestingSink()
    source = Connectors.redis(url=URL, stream=stream, group="g", count=100, stop_at_end=True)
    job = (
        Job.builder()
        .checkpointing(str(tmp_path / "ckpt"), interval_ms=100)
        .batch_size(100)
        .source(source)
        .transform(Operators.map(slow, concurrency=1))
        .sink(sink)
        .build()
    )

    async def scenario() -> tuple[Any, list[int]]:
        client = redis.asyncio.Redis(host="127.0.0.1", port=6379)
        task = asyncio.create_task(run_job_async(job))
        seen = []
        while not task.done():
            await asyncio.sleep(0.05)
            with_group = await client.xinfo_groups(stream)
            if with_group:
                seen.append(int((await client.xpending(stream, "g"))["pending"]))
        await client.aclose()
        return await task, seen

    result, pending = asyncio.run(scenario())
    assert result.status is JobStatus.COMPLETED, result.error
    assert [r["n"] for r in sink.records] == list(range(3_000))
    # While running, entries read but not yet covered by a completed checkpoint stay
    # pending; each completed checkpoint acknowledges its share, so they never pile up.
    assert max(pending) > 0
    assert max(pending) < 1_500
    assert _client().xpending(stream, "g")["pending"] == 0


def test_each_data_type_and_ttl(redis_prefix: str) -> None:
    users = [{"id": i, "name": f"n{i}", "score": i * 1.5} for i in range(50)]
    p = redis_prefix
    for options in [
        {"data_type": "string", "key": p + "user:{id}", "ttl": "1h"},
        {"data_type": "hash", "key": p + "h:{id}", "ttl": "10m"},
        {"data_type": "list", "key": p + "names", "value_field": "name"},
        {"data_type": "zset", "key": p + "ranking", "value_field": "name", "score_field": "score"},
    ]:
        result = _write(users, url=URL, **options)
        assert result.status is JobStatus.COMPLETED, (options, result.error)
    r = _client()
    stored = r.get(f"{p}user:7")
    assert stored is not None and orjson.loads(stored) == users[7]
    assert 3_500 < r.ttl(f"{p}user:7") <= 3_600
    assert r.hgetall(f"{p}h:3") == {b"id": b"3", b"name": b'"n3"', b"score": b"4.5"}
    assert 500 < r.ttl(f"{p}h:3") <= 600
    assert r.ttl(f"{p}names") == -1  # no TTL asked
    assert [orjson.loads(v) for v in r.lrange(f"{p}names", 0, -1)] == [u["name"] for u in users]
    top = r.zrevrange(f"{p}ranking", 0, 2, withscores=True)
    assert top == [(b'"n49"', 73.5), (b'"n48"', 72.0), (b'"n47"', 70.5)]
    assert len(list(r.scan_iter(match=f"{p}user:*"))) == 50


def test_records_that_cannot_be_written_go_to_the_dead_letter(redis_prefix: str) -> None:
    dead = TestingSink()
    rows = [{"name": "a", "score": 1}, {"name": "b"}, {"name": "c", "score": "x"}]
    sink = Connectors.redis(
        url=URL, data_type="zset", key=f"{redis_prefix}z", value_field="name", score_field="score"
    )
    job = dead_lettered_job(TestingSource(rows), sink, dead)
    result = run_job(job)
    assert result.status is JobStatus.COMPLETED, result.error
    assert [d["record"]["name"] for d in dead.records] == ["b", "c"]
    assert _client().zrange(f"{redis_prefix}z", 0, -1) == [b'"a"']


def test_malformed_stream_entries_go_to_the_dead_letter(redis_prefix: str) -> None:
    stream = f"{redis_prefix}bad"
    r = _client()
    r.xadd(stream, {"data": b'{"ok": 1}'})
    r.xadd(stream, {"data": b"{not json"})
    r.xadd(stream, {"plain": b"fields"})
    dead, sink = TestingSink(), TestingSink()
    job = dead_lettered_job(Connectors.redis(url=URL, stream=stream, stop_at_end=True), sink, dead)
    result = run_job(job)
    assert result.status is JobStatus.COMPLETED, result.error
    assert sink.records == [{"ok": 1}, {"plain": "fields"}]
    assert len(dead.records) == 1 and "not json" in str(dead.records[0]["record"])


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_server_absent_at_start_is_a_clear_error(redis_prefix: str) -> None:
    port = _unused_port()
    result = _write([{"id": 1}], url=f"redis://user:secret@127.0.0.1:{port}/0", key="k")
    assert result.status is JobStatus.FAILED
    message = str(result.error)
    assert f"127.0.0.1:{port}" in message and "Redis server is running" in message
    assert "secret" not in message


def test_a_short_outage_mid_run_is_retried_and_a_long_one_fails(redis_prefix: str) -> None:
    async def slow(record: dict[str, int]) -> dict[str, int]:
        await asyncio.sleep(0.001)
        return record

    def job(proxy: TcpProxy, key: str) -> Job:
        return (
            Job.builder()
            .batch_size(50)
            .source(TestingSource([{"id": i} for i in range(2_000)]))
            .transform(Operators.map(slow, concurrency=1))
            .sink(
                Connectors.redis(
                    url=f"redis://127.0.0.1:{proxy.port}/0", key=redis_prefix + key + ":{id}"
                )
            )
            .build()
        )

    async def outage(key: str, seconds: float) -> Any:
        proxy = TcpProxy(6379)
        await proxy.start()
        task = asyncio.create_task(run_job_async(job(proxy, key)))
        await asyncio.sleep(0.5)
        await proxy.stop()
        await asyncio.sleep(seconds)
        await proxy.start()
        result = await task
        await proxy.stop()
        return result

    short = asyncio.run(outage("short", 0.3))
    assert short.status is JobStatus.COMPLETED, short.error
    assert len(list(_client().scan_iter(match=f"{redis_prefix}short:*", count=1000))) == 2_000

    long = asyncio.run(outage("long", 6.0))
    assert long.status is JobStatus.FAILED
    assert "redis sink" in str(long.error) and "retries" in str(long.error)


def test_entries_a_crashed_run_left_unacknowledged_are_read_again(redis_prefix: str) -> None:
    stream = f"{redis_prefix}crash"
    r = _client()
    for i in range(1_000):
        r.xadd(stream, {"data": orjson.dumps({"n": i})})
    r.xgroup_create(stream, "g", id="0")
    # A previous run of subtask 0 took 700 entries and died before acknowledging them.
    taken: Any = r.xreadgroup("g", "reflow-0", {stream: ">"}, count=700)
    assert len(taken[0][1]) == 700
    sink = TestingSink()
    source = Connectors.redis(url=URL, stream=stream, group="g", count=64, stop_at_end=True)
    result = run_job(Job.builder().source(source).sink(sink).build())
    assert result.status is JobStatus.COMPLETED, result.error
    assert [rec["n"] for rec in sink.records] == list(range(1_000))
    assert r.xpending(stream, "g")["pending"] == 0


def test_avro_and_csv_payloads_in_streams_and_lists(redis_prefix: str) -> None:
    import redis

    schema = {
        "type": "record",
        "name": "Bid",
        "fields": [{"name": "id", "type": "long"}, {"name": "bidder", "type": "string"}],
    }
    records = [{"id": i, "bidder": f"b{i}"} for i in range(1_000)]
    stream = f"{redis_prefix}avro"
    avro = {"format": "avro", "avro_schema": schema}
    sink = Connectors.redis(data_type="stream", key=stream, **avro)
    assert run_job(Job.builder().source(TestingSource(records)).sink(sink).build()).error is None
    out = TestingSink()
    source = Connectors.redis(stream=stream, stop_at_end=True, block=0.2, **avro)
    result = run_job(Job.builder().source(source).sink(out).build())
    assert result.status is JobStatus.COMPLETED, result.error
    assert out.records == records

    key = f"{redis_prefix}csv"
    sink = Connectors.redis(data_type="list", key=key, format="csv", csv_fields=["id", "bidder"])
    assert run_job(Job.builder().source(TestingSource(records)).sink(sink).build()).error is None
    client = redis.Redis()
    assert client.lrange(key, 0, 1) == [b"0,b0", b"1,b1"]
    client.close()
