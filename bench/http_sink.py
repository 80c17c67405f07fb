"""HTTP sink throughput: every bid POSTed as part of a JSON array of 500 with an
idempotency key, one request at a time, beside the same requests with aiohttp
alone.

``python -m bench.http_sink --impl reflow|plain INPUT OUTPUT`` starts a
receiving aiohttp server in a child process on loopback (it counts the records
it was sent) before the timed part.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson

from bench.common import main_for

BATCH = 500


def serve(port: int) -> None:
    """The receiving end: counts records; GET /count answers the total."""
    from aiohttp import web

    total = 0

    async def ingest(request: web.Request) -> web.Response:
        nonlocal total
        total += len(orjson.loads(await request.read()))
        return web.Response()

    async def count(request: web.Request) -> web.Response:
        return web.Response(text=str(total))

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/ingest", ingest)
    app.router.add_get("/count", count)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


@contextlib.contextmanager
def _server() -> Iterator[str]:
    port = random.randrange(20_000, 32_000)
    code = f"from bench.http_sink import serve; serve({port})"
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        for _ in range(200):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait()


def _count(url: str) -> int:
    import urllib.request

    with urllib.request.urlopen(url + "/count") as answer:
        return int(answer.read())


async def _post_plain(inp: Path, url: str) -> None:
    """The reference: aiohttp, a JSON array of 500 bids per request, with its key."""
    import aiohttp

    loads, dumps = orjson.loads, orjson.dumps
    async with aiohttp.ClientSession() as session:

        async def post(batch: list[object]) -> None:
            body = dumps(batch)
            key = hashlib.sha256(body).hexdigest()[:40]
            headers = {"Content-Type": "application/json", "Idempotency-Key": key}
            async with session.post(url + "/ingest", data=body, headers=headers) as answer:
                answer.raise_for_status()

        batch: list[object] = []
        with open(inp, "rb") as fin:
            for line in fin:
                batch.append(loads(line))
                if len(batch) == BATCH:
                    await post(batch)
                    batch = []
        if batch:
            await post(batch)


def run_plain(inp: Path, out: Path) -> int:
    with _server() as url:
        asyncio.run(_post_plain(inp, url))
        return _count(url)


def run_reflow(inp: Path, out: Path, parallelism: int = 1) -> int:
    from reflow import Connectors, Job
    from reflow.testing import run_job

    with _server() as url:
        job = (
            Job.builder()
            .name("http-sink-bench")
            .parallelism(parallelism)
            .source(Connectors.file(path=str(inp), format="json"), id="bids")
            .sink(Connectors.http(url=url + "/ingest", batch_size=BATCH), id="out")
            .build()
        )
        result = run_job(job)
        if result.error:
            raise SystemExit(result.error)
        return _count(url)


if __name__ == "__main__":
    main_for(run_plain, run_reflow)
