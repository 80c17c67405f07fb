"""S3 sink throughput: every bid written as a JSON line into objects of 250,000
records (multipart uploads), beside the same objects written with pyarrow's S3
filesystem alone.

``python -m bench.s3_sink --impl reflow|plain INPUT OUTPUT`` starts an
S3-compatible server (moto, from the dev install) on loopback before the timed
part and counts the lines of the objects after it. moto keeps objects in
memory in Python: the figures measure the client side against a slow server,
so compare the two implementations, not the absolute numbers.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson

from bench.common import main_for

BUCKET = "bench"
PER_OBJECT = 250_000


@contextlib.contextmanager
def _server() -> Iterator[str]:
    port = random.randrange(20_000, 32_000)
    binary = str(Path(sys.executable).parent / "moto_server")
    proc = subprocess.Popen(
        [binary, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
    )
    try:
        for _ in range(400):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        import boto3

        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait()


def _count() -> int:
    import boto3

    client = boto3.client("s3")
    lines = 0
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        body = client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
        lines += body.count(b"\n")
    return lines


def _filesystem(endpoint: str) -> object:
    from pyarrow import fs

    return fs.S3FileSystem(
        endpoint_override=endpoint.removeprefix("http://"), scheme="http", region="us-east-1"
    )


def run_plain(inp: Path, out: Path) -> int:
    with _server() as endpoint:
        filesystem = _filesystem(endpoint)
        loads, dumps = orjson.loads, orjson.dumps
        part, written, lines, stream = 0, 0, [], None
        with open(inp, "rb") as fin:
            for line in fin:
                if stream is None:
                    key = f"{BUCKET}/plain/bids-{part}.jsonl"
                    stream = filesystem.open_output_stream(key)  # type: ignore[attr-defined]
                lines.append(dumps(loads(line)) + b"\n")
                written += 1
                if len(lines) == 1_000:
                    stream.write(b"".join(lines))
                    lines = []
                if written % PER_OBJECT == 0:
                    stream.write(b"".join(lines))
                    stream.close()
                    lines, stream, part = [], None, part + 1
        if stream is not None:
            stream.write(b"".join(lines))
            stream.close()
        return _count()


def run_reflow(inp: Path, out: Path, parallelism: int = 1) -> int:
    from reflow import Connectors, Job
    from reflow.testing import run_job

    with _server():
        sink = Connectors.file(
            path=f"s3://{BUCKET}/reflow/bids.jsonl", rolling_max_records=PER_OBJECT
        )
        job = (
            Job.builder()
            .name("s3-sink-bench")
            .parallelism(parallelism)
            .source(Connectors.file(path=str(inp), format="json"), id="bids")
            .sink(sink, id="out")
            .build()
        )
        result = run_job(job)
        if result.error:
            raise SystemExit(result.error)
        return _count()


if __name__ == "__main__":
    main_for(run_plain, run_reflow)
