"""The file connector on ``s3://`` paths, against an S3-compatible server (moto)
on loopback: 100k records through rolling objects and back through a glob,
every format, multipart uploads, exactly-once objects, and the error paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest

from reflow import Connectors, Job, JobStatus, Operators
from reflow.graph.restart import FixedDelayRestart
from reflow.testing import TestingSink, TestingSource, check_connector, run_job

RECORDS = [{"id": i, "user": f"u{i % 101}", "amount": i * 0.25} for i in range(100_000)]


def _keys(bucket: str, prefix: str = "") -> list[str]:
    paginator = boto3.client("s3").get_paginator("list_objects_v2")
    keys: list[str] = []
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    return sorted(keys)


def test_100k_records_through_rolling_objects_and_back_through_a_glob(s3_bucket: str) -> None:
    sink = Connectors.file(
        path=f"s3://{s3_bucket}/out/bids.jsonl", rolling_max_records=30_000, parallelism=2
    )
    result = run_job(Job.builder().source(TestingSource(RECORDS)).sink(sink).build())
    assert result.status is JobStatus.COMPLETED, result.error
    keys = _keys(s3_bucket, "out/")
    assert len(keys) == 4  # two writers, 50k each, rolled at 30k
    assert all(k.startswith("out/bids-") and k.endswith(".jsonl") for k in keys)

    out = TestingSink()
    source = Connectors.file(path=f"s3://{s3_bucket}/out/*.jsonl", parallelism=3)
    result = run_job(Job.builder().source(source).sink(out).build())
    assert result.status is JobStatus.COMPLETED, result.error
    assert sorted(out.records, key=lambda r: r["id"]) == RECORDS


def test_one_large_object_is_uploaded_in_parts_and_read_in_byte_ranges(s3_bucket: str) -> None:
    big = [{"id": i, "pad": "x" * 200} for i in range(60_000)]  # ~13 MB: several parts
    path = f"s3://{s3_bucket}/big.jsonl"
    result = run_job(
        Job.builder().source(TestingSource(big)).sink(Connectors.file(path=path)).build()
    )
    assert result.status is JobStatus.COMPLETED, result.error
    head = boto3.client("s3").head_object(Bucket=s3_bucket, Key="big.jsonl")
    assert head["ContentLength"] > 10_000_000
    assert "-" in head["ETag"]  # a multipart upload's ETag ends in -<parts>

    out = TestingSink()
    source = Connectors.file(path=path, parallelism=4)  # four byte ranges of one object
    result = run_job(Job.builder().source(source).sink(out).build())
    assert result.status is JobStatus.COMPLETED, result.error
    assert sorted(r["id"] for r in out.records) == list(range(60_000))


@pytest.mark.parametrize("fmt", ["csv", "parquet", "text"])
def test_every_format_on_s3(s3_bucket: str, fmt: str) -> None:
    if fmt == "text":
        records: list[Any] = [f"line {i}" for i in range(5_000)]
    else:
        records = [{"id": i, "name": f"n{i}"} for i in range(5_000)]
    path = f"s3://{s3_bucket}/data/part.{'txt' if fmt == 'text' else fmt}"
    extra: dict[str, Any] = {"types": {"id": "int"}} if fmt == "csv" else {}
    result = run_job(
        Job.builder().source(TestingSource(records)).sink(Connectors.file(path=path)).build()
    )
    assert result.status is JobStatus.COMPLETED, result.error
    out = TestingSink()
    result = run_job(Job.builder().source(Connectors.file(path=path, **extra)).sink(out).build())
    assert result.status is JobStatus.COMPLETED, result.error
    assert out.records == records


def test_exactly_once_objects_appear_only_for_completed_checkpoints(
    s3_bucket: str, tmp_path: Path
) -> None:
    failures = {"left": 1}

    async def flaky(record: dict[str, Any]) -> dict[str, Any]:
        if record["id"] % 500 == 0:
            import asyncio

            await asyncio.sleep(0.01)
        if record["id"] == 15_000 and failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("forced failure")
        return record

    records = RECORDS[:20_000]
    job = (
        Job.builder()
        .checkpointing(str(tmp_path / "ckpt"), interval_ms=200)
        .restart_strategy(FixedDelayRestart(attempts=2, delay_s=0.05))
        .source(TestingSource(records))
        .transform(Operators.map(flaky, concurrency=1))
        .sink(Connectors.file(path=f"s3://{s3_bucket}/eo/out.jsonl", delivery="exactly-once"))
        .build()
    )
    result = run_job(job)
    assert result.status is JobStatus.COMPLETED, result.error
    assert result.restarts == 1
    keys = _keys(s3_bucket, "eo/")
    assert keys and not any(".inprogress" in k for k in keys)  # strays removed
    out = TestingSink()
    result = run_job(
        Job.builder()
        .source(Connectors.file(path=f"s3://{s3_bucket}/eo/", format="json"))
        .sink(out)
        .build()
    )
    assert sorted(r["id"] for r in out.records) == list(range(20_000))  # each once


def test_missing_objects_and_unreachable_server_are_clear_errors(
    s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = Connectors.file(path=f"s3://{s3_bucket}/nothing/*.jsonl")
    result = run_job(Job.builder().source(source).sink(TestingSink()).build())
    assert result.status is JobStatus.FAILED
    assert f"no object matches 's3://{s3_bucket}/nothing/*.jsonl'" in str(result.error)

    from tests.connectors.http_server import free_port

    port = free_port()
    source = Connectors.file(
        path=f"s3://{s3_bucket}/x.jsonl", s3_endpoint=f"http://127.0.0.1:{port}"
    )
    result = run_job(Job.builder().source(source).sink(TestingSink()).build())
    assert result.status is JobStatus.FAILED
    message = str(result.error)
    assert f"s3://{s3_bucket}/x.jsonl" in message and f"127.0.0.1:{port}" in message

    sink = Connectors.file(path=f"s3://{s3_bucket}/a.jsonl", mode="append")
    result = run_job(Job.builder().source(TestingSource([{"a": 1}])).sink(sink).build())
    assert result.status is JobStatus.FAILED
    assert "S3 objects cannot be appended to" in str(result.error)


def test_file_connector_contract_on_s3(s3_bucket: str) -> None:
    path = f"s3://{s3_bucket}/contract.jsonl"
    report = check_connector(
        "file",
        sink_options={"path": path},
        source_options={"path": path},
        ordered=True,
    )
    assert "source resumes exactly from its snapshot" in report.passed, report


def test_server_outage_mid_run_is_retried_or_recovered_without_loss(
    s3_bucket: str, s3_endpoint: str, tmp_path: Path
) -> None:
    """The S3 server goes away for 0.5 s while objects are written and read: the
    client's retries (or, past them, a job restart from the checkpoint) carry the
    job through; every record arrives exactly once in the exactly-once objects."""
    import asyncio

    from tests.server.test_health import TcpProxy

    port = int(s3_endpoint.rsplit(":", 1)[1])
    records = RECORDS[:30_000]

    async def slow(record: dict[str, Any]) -> dict[str, Any]:
        if record["id"] % 300 == 0:
            await asyncio.sleep(0.01)
        return record

    async def scenario() -> tuple[Any, Any, list[Any]]:
        proxy = TcpProxy(port)
        await proxy.start()
        endpoint = f"http://127.0.0.1:{proxy.port}"

        write = (
            Job.builder()
            .checkpointing(str(tmp_path / "ckpt-write"), interval_ms=100)
            .restart_strategy(FixedDelayRestart(attempts=5, delay_s=0.3))
            .source(TestingSource(records))
            .transform(Operators.map(slow, concurrency=1))
            .sink(
                Connectors.file(
                    path=f"s3://{s3_bucket}/outage/out.jsonl",
                    delivery="exactly-once",
                    s3_endpoint=endpoint,
                )
            )
            .build()
        )
        written = await proxy.run_through_outage(write, 0.4, 0.5)
        out = TestingSink(exactly_once=True)
        read = (
            Job.builder()
            .batch_size(100)
            .checkpointing(str(tmp_path / "ckpt-read"), interval_ms=100)
            .restart_strategy(FixedDelayRestart(attempts=5, delay_s=0.3))
            .source(
                Connectors.file(
                    path=f"s3://{s3_bucket}/outage/", format="json", s3_endpoint=endpoint
                )
            )
            .transform(Operators.map(slow, concurrency=1))
            .sink(out)
            .build()
        )
        read_result = await proxy.run_through_outage(read, 0.4, 0.5)
        await proxy.stop()
        return written, read_result, out.records

    written, read, got = asyncio.run(scenario())
    assert written.status is JobStatus.COMPLETED, written.error
    assert read.status is JobStatus.COMPLETED, read.error
    assert sorted(r["id"] for r in got) == list(range(30_000))
