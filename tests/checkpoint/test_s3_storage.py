"""Checkpoints on S3 (an S3-compatible server on loopback): the same interface as folders."""

from __future__ import annotations

from dataclasses import replace

import boto3

from reflow import Flow, JobStatus
from reflow.checkpoint import CheckpointData, open_storage, read_checkpoint
from reflow.graph.job import CheckpointConfig
from reflow.graph.restart import FixedDelayRestart
from reflow.testing import TestingSink, TestingSource, run_job


def _data(n: int, savepoint: bool = False) -> CheckpointData:
    return CheckpointData("job-s3", n, {("s", 0): {"logic": n}}, {"s": 1}, savepoint=savepoint)


def test_write_read_retain_and_skip_corrupt(s3_bucket: str) -> None:
    storage = open_storage(f"s3://{s3_bucket}/ckpts", retained=2)
    for n in (1, 2, 3):
        storage.write(_data(n))
    saved = storage.write(_data(4, savepoint=True))
    assert [loc.rsplit("/", 1)[1] for loc in storage.checkpoints("job-s3")] == [
        "chk-0000000002.ckpt",
        "chk-0000000003.ckpt",
    ]
    assert read_checkpoint(saved).savepoint
    assert storage.next_id("job-s3") == 5
    latest = storage.latest("job-s3")
    assert latest is not None and latest.checkpoint_id == 3
    boto3.client("s3").put_object(
        Bucket=s3_bucket, Key="ckpts/job-s3/chk-0000000003.ckpt", Body=b"RFLWCKP1broken"
    )
    latest = storage.latest("job-s3")
    assert latest is not None and latest.checkpoint_id == 2


class FailOnce:
    def __init__(self) -> None:
        self.failed = False

    async def __call__(self, x: int) -> int:
        import asyncio

        if x % 50 == 0:
            await asyncio.sleep(0.005)
        if x == 1_500 and not self.failed:
            self.failed = True
            raise RuntimeError("once")
        return x


def test_a_job_recovers_from_s3_checkpoints(s3_bucket: str) -> None:
    flow = Flow("s3-recover", batch_size=20)
    sink = TestingSink(exactly_once=True)
    flow.source(TestingSource(range(2_000))).map(FailOnce()).sink(sink)
    job = flow.to_job(job_id="s3-recover")
    job.config = replace(
        job.config,
        checkpoint=CheckpointConfig(f"s3://{s3_bucket}/jobs", interval_ms=30),
        restart=FixedDelayRestart(attempts=1, delay_s=0),
    )
    result = run_job(job)
    assert result.status is JobStatus.COMPLETED and result.restarts == 1
    assert sorted(sink.records) == list(range(2_000))
    assert open_storage(f"s3://{s3_bucket}/jobs").checkpoints("s3-recover")
