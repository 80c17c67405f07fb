"""MongoDB sink throughput: every bid inserted as a document, 1,000 per ordered bulk
write, beside the same inserts with pymongo alone.

``python -m bench.mongo_sink --impl reflow|plain INPUT OUTPUT`` starts a MongoDB
wire-protocol server (SecantusDB, from the dev install) on loopback before the
timed part and counts the collection's documents after it. The server is in
Python, so it, not the client, sets the pace here: the figure shows what the sink
adds on top of the driver, not what a MongoDB server can take.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import orjson

from bench.common import main_for

BATCH = 1_000
DATABASE = "bench"


@contextlib.contextmanager
def _server() -> Iterator[str]:
    import pymongo

    binary = shutil.which("secantusd-py") or str(Path(sys.executable).parent / "secantusd-py")
    port = random.randrange(20_000, 32_000)
    with tempfile.TemporaryDirectory() as data:
        proc = subprocess.Popen(
            [binary, "--host", "127.0.0.1", "--port", str(port), "--storage-path", data],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"mongodb://127.0.0.1:{port}/?directConnection=true"
        try:
            client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
                url, serverSelectionTimeoutMS=200
            )
            for _ in range(600):
                try:
                    client.admin.command("ping")
                    break
                except pymongo.errors.PyMongoError:
                    time.sleep(0.05)
            client.close()
            yield url
        finally:
            proc.terminate()
            proc.wait()


def _count(url: str, collection: str) -> int:
    import pymongo

    with pymongo.MongoClient(url) as client:
        return int(client[DATABASE][collection].count_documents({}))


URL = ""  # set by __main__ once the server runs


def run_plain(inp: Path, out: Path) -> int:
    """The reference: parse each line, insert_many 1,000 documents at a time."""
    import pymongo

    loads = orjson.loads
    with pymongo.MongoClient(URL) as client:
        coll = client[DATABASE]["plain"]
        docs: list[dict[str, object]] = []
        with open(inp, "rb") as fin:
            for line in fin:
                docs.append(loads(line))
                if len(docs) == BATCH:
                    coll.insert_many(docs, ordered=True)
                    docs = []
        if docs:
            coll.insert_many(docs, ordered=True)
    return _count(URL, "plain")


def run_reflow(inp: Path, out: Path, parallelism: int = 1) -> int:
    from reflow import Connectors, Job
    from reflow.testing import run_job

    job = (
        Job.builder()
        .name("mongo-sink-bench")
        .parallelism(parallelism)
        .batch_size(BATCH)
        .source(Connectors.file(path=str(inp), format="json"), id="bids")
        .sink(
            Connectors.mongodb(url=URL, database=DATABASE, collection="reflow", batch_size=BATCH),
            id="out",
        )
        .build()
    )
    result = run_job(job)
    if result.error:
        raise SystemExit(result.error)
    return _count(URL, "reflow")


if __name__ == "__main__":
    with _server() as URL:
        main_for(run_plain, run_reflow)
