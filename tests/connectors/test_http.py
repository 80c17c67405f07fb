"""The http connector (polling source, batching sink) and the webhook source,
against real aiohttp servers on loopback that the tests start."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import Counter
from typing import Any

import orjson
import pytest
from aiohttp import ClientSession, web

from reflow import Connectors, ErrorMode, ErrorPolicy, Job, JobStatus, Operators
from reflow.errors import ConnectorConfigError
from reflow.eventtime.clock import ManualClock
from reflow.runtime import ExecutorSettings
from reflow.testing import TestingSink, TestingSource, run_job, run_job_async
from tests.connectors.http_server import ThreadedServer, free_port

ITEMS = [{"id": i, "name": f"item-{i}", "price": i * 0.5} for i in range(100_000)]


class Api:
    """A REST API over ``items`` with every pagination style, and a flaky mode."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items
        self.requests: list[tuple[float, str]] = []
        self.fail_every = 0  # answer 503 to every n-th request (0: never)
        self.down = False
        self.clock: ManualClock | None = None
        """Set: requests are timed on this clock instead of the wall clock."""

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/page", self.page)
        app.router.add_get("/offset", self.offset)
        app.router.add_get("/cursor", self.cursor)
        app.router.add_get("/link", self.link)
        app.router.add_get("/since", self.since)
        app.router.add_get("/text", self.text)
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        now = time.monotonic() if self.clock is None else self.clock.now_ms() / 1000
        self.requests.append((now, str(request.rel_url)))
        if self.down:
            return web.Response(status=503, text="maintenance")
        if self.fail_every and len(self.requests) % self.fail_every == 0:
            return web.Response(status=503, headers={"Retry-After": "0"}, text="busy")
        response: web.StreamResponse = await handler(request)
        return response

    async def page(self, request: web.Request) -> web.Response:
        page, size = int(request.query["page"]), int(request.query["per_page"])
        return web.json_response({"data": self.items[(page - 1) * size : page * size]})

    async def offset(self, request: web.Request) -> web.Response:
        start, limit = int(request.query["offset"]), int(request.query["limit"])
        return web.json_response(self.items[start : start + limit])

    async def cursor(self, request: web.Request) -> web.Response:
        start = int(request.query.get("after", "0"), 16)
        chunk = self.items[start : start + 2_000]
        following = start + len(chunk)
        nxt = format(following, "x") if following < len(self.items) else None
        return web.json_response({"result": {"items": chunk}, "meta": {"next": nxt}})

    async def link(self, request: web.Request) -> web.Response:
        start = int(request.query.get("start", "0"))
        chunk = self.items[start : start + 5_000]
        headers = {}
        if start + 5_000 < len(self.items):
            headers["Link"] = f'<{request.url.with_query(start=start + 5_000)}>; rel="next"'
        return web.json_response(chunk, headers=headers)

    async def since(self, request: web.Request) -> web.Response:
        since = int(request.query.get("since", "-1"))
        return web.json_response([item for item in self.items if item["id"] > since][:100])

    async def text(self, request: web.Request) -> web.Response:
        return web.Response(text="<html>not json</html>")


@pytest.fixture
def api() -> Any:
    service = Api(ITEMS)
    with ThreadedServer(service.app) as server:
        service.url = server.url  # type: ignore[attr-defined]
        yield service


@pytest.mark.parametrize(
    ("path", "options"),
    [
        (
            "/page",
            {
                "pagination": "page",
                "page_size": 1_000,
                "page_size_param": "per_page",
                "records_path": "data",
            },
        ),
        ("/offset", {"pagination": "offset", "page_size": 4_000}),
        (
            "/cursor",
            {
                "pagination": "cursor",
                "cursor_param": "after",
                "next_cursor_path": "meta.next",
                "records_path": "result.items",
            },
        ),
        ("/link", {"pagination": "link"}),
    ],
)
def test_polling_source_reads_100k_records_through_each_pagination(
    api: Any, path: str, options: dict[str, Any]
) -> None:
    out = TestingSink()
    source = Connectors.http(url=api.url + path, **options)
    result = run_job(Job.builder().source(source).sink(out).build())
    assert result.status is JobStatus.COMPLETED, result.error
    assert out.records == ITEMS  # every record, in order, exactly as served


def test_rate_limit_spaces_requests(api: Any) -> None:
    """On the job's clock (a ManualClock moved only as far as the source waits), no
    two requests are closer than 1/rate_limit."""
    out = TestingSink()
    api.clock = clock = ManualClock(start_ms=1_000_000)
    source = Connectors.http(
        url=api.url + "/offset", pagination="offset", page_size=10_000, rate_limit=20
    )
    job = Job.builder().source(source).sink(out).build()
    result = asyncio.run(clock.drive(run_job_async(job, ExecutorSettings(clock=clock))))
    assert result.status is JobStatus.COMPLETED, result.error
    assert len(out.records) == 100_000
    times = [t for t, _ in api.requests]
    assert len(times) == 11  # ten full pages and an empty one
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(round(g, 6) for g in gaps) >= 0.05  # 20 requests per second at most
    assert round(sum(clock.jumps), 6) >= 0.5  # the waits were on the clock


def test_retries_busy_answers_and_counts_them(api: Any) -> None:
    api.fail_every = 3
    out = TestingSink()
    source = Connectors.http(
        url=api.url + "/page",
        pagination="page",
        page_size=5_000,
        page_size_param="per_page",
        records_path="data",
        retry_backoff=0.01,
    )
    result = run_job(Job.builder().source(source).sink(out).build())
    assert result.status is JobStatus.COMPLETED, result.error
    assert out.records == ITEMS
    step = next(s for s in result.metrics.steps if s.kind == "source")
    assert step.connector_events["retries"] == step.connector_events["status_503"] >= 6
    assert step.connector_events["requests"] == len(api.requests)


def test_server_gone_mid_run_fails_with_the_reason_after_retries(api: Any) -> None:
    def outage(record: dict[str, Any]) -> dict[str, Any]:
        if record["id"] == 30_000:
            api.down = True
        return record

    out = TestingSink()
    source = Connectors.http(
        url=api.url + "/offset",
        pagination="offset",
        page_size=1_000,
        max_retries=2,
        retry_backoff=0.01,
    )
    result = run_job(
        Job.builder().source(source).transform(Operators.map(outage)).sink(out).build()
    )
    assert result.status is JobStatus.FAILED
    assert "answered 503" in str(result.error) and "after 2 retries" in str(result.error)


def test_server_down_at_start_is_a_clear_error() -> None:
    port = free_port()
    source = Connectors.http(url=f"http://127.0.0.1:{port}/items")
    result = run_job(Job.builder().source(source).sink(TestingSink()).build())
    assert result.status is JobStatus.FAILED
    assert f"http source: cannot reach http://127.0.0.1:{port}/items" in str(result.error)


def test_incremental_polling_reads_only_new_records_each_round(api: Any) -> None:
    api.items = [{"id": i} for i in range(250)]

    def grow() -> None:
        time.sleep(0.5)
        api.items = [{"id": i} for i in range(400)]

    threading.Thread(target=grow, daemon=True).start()
    out = TestingSink()
    source = Connectors.http(
        url=api.url + "/since",
        incremental_field="id",
        incremental_param="since",
        interval=0.05,
        stop_when_idle=1.5,
    )
    result = run_job(Job.builder().source(source).sink(out).build())
    assert result.status is JobStatus.COMPLETED, result.error
    assert [r["id"] for r in out.records] == list(range(400))  # each once, in order
    later = [url for _, url in api.requests[1:]]
    assert all("since=" in url for url in later)


def test_a_page_that_is_not_json_goes_to_the_dead_letter(api: Any) -> None:
    dead = TestingSink()
    job = (
        Job.builder()
        .error_policy(ErrorPolicy(ErrorMode.DEAD_LETTER, dead_letter=dead))
        .source(Connectors.http(url=api.url + "/text"))
        .sink(TestingSink())
        .build()
    )
    result = run_job(job)
    assert result.status is JobStatus.COMPLETED, result.error
    assert "<html>not json</html>" in str(dead.records[0]["record"])
    assert "page from" in dead.records[0]["error"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"url": "http://x", "pagination": "cursor"}, "next_cursor_path"),
        ({"url": "http://x", "stop_when_idle": 1}, "set interval too"),
        ({"url": "http://x", "pagination": "pages"}, "pagination"),
        ({"urll": "http://x"}, "did you mean 'url'"),
    ],
)
def test_wrong_source_options_are_clear_errors(options: dict[str, Any], message: str) -> None:
    from reflow.connectors.http import HttpConnector

    with pytest.raises(ConnectorConfigError, match=message):
        HttpConnector().validate_config(options, "source")


class Ingest:
    """A receiving API that honours idempotency keys, and misbehaves on purpose:
    every 5th request is stored but answered 500 (the answer is lost), every 7th
    is refused with 429; a record with ``bad`` is refused with 422."""

    def __init__(self) -> None:
        self.stored: list[Any] = []
        self.keys: set[str] = set()
        self.calls = 0
        self.duplicates_avoided = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/ingest", self.ingest)
        return app

    async def ingest(self, request: web.Request) -> web.Response:
        self.calls += 1
        key = request.headers["Idempotency-Key"]
        records = orjson.loads(await request.read())
        if any(r.get("bad") for r in records):
            return web.Response(status=422, text="bad record")
        if self.calls % 7 == 0:
            return web.Response(status=429, headers={"Retry-After": "0"})
        if key in self.keys:
            self.duplicates_avoided += 1
            return web.Response(status=200)
        self.keys.add(key)
        self.stored.extend(records)
        if self.calls % 5 == 0:
            return web.Response(status=500, text="lost answer")
        return web.Response(status=200)


def test_sink_sends_100k_records_once_despite_retries_and_isolates_refused_ones() -> None:
    ingest = Ingest()
    records = [{"id": i, "bad": i == 31_337} for i in range(100_000)]
    dead = TestingSink()
    with ThreadedServer(ingest.app) as server:
        sink = Connectors.http(
            url=server.url + "/ingest", batch_size=1_000, retry_backoff=0.01, max_retries=5
        )
        job = (
            Job.builder()
            .error_policy(ErrorPolicy(ErrorMode.DEAD_LETTER, dead_letter=dead))
            .source(TestingSource(records))
            .sink(sink)
            .build()
        )
        result = run_job(job)
    assert result.status is JobStatus.COMPLETED, result.error
    ids = Counter(r["id"] for r in ingest.stored)
    assert sorted(ids) == [i for i in range(100_000) if i != 31_337]
    assert set(ids.values()) == {1}  # retried requests were recognised by their key
    assert ingest.duplicates_avoided > 0
    assert [d["record"]["id"] for d in dead.records] == [31_337]
    assert "422" in dead.records[0]["error"]
    events = next(s for s in result.metrics.steps if s.kind == "sink").connector_events
    assert events["retries"] > 0 and events["refused"] == 1


def test_sink_to_a_server_that_is_down_is_a_clear_error() -> None:
    port = free_port()
    sink = Connectors.http(url=f"http://127.0.0.1:{port}/ingest")
    result = run_job(Job.builder().source(TestingSource([{"a": 1}])).sink(sink).build())
    assert result.status is JobStatus.FAILED
    assert f"http sink: cannot reach http://127.0.0.1:{port}/ingest" in str(result.error)


def test_sink_one_request_per_record_as_json_lines() -> None:
    got: list[tuple[str, bytes]] = []

    async def handle(request: web.Request) -> web.Response:
        got.append((request.headers["Content-Type"], await request.read()))
        return web.Response()

    def app() -> web.Application:
        application = web.Application()
        application.router.add_put("/one", handle)
        return application

    with ThreadedServer(app) as server:
        for body in ("record", "lines"):
            got.clear()
            sink = Connectors.http(url=server.url + "/one", method="PUT", body=body, batch_size=2)
            records = [{"n": i} for i in range(5)]
            result = run_job(Job.builder().source(TestingSource(records)).sink(sink).build())
            assert result.status is JobStatus.COMPLETED, result.error
            if body == "record":
                assert sorted(orjson.loads(b)["n"] for _, b in got) == list(range(5))
            else:
                lines = [orjson.loads(line) for _, b in got for line in b.splitlines()]
                assert lines == records
                assert {t for t, _ in got} == {"application/x-ndjson"}


# -- webhook ---------------------------------------------------------------------------


async def _post_all(
    url: str, records: list[Any], batch: int, senders: int
) -> tuple[Counter[int], float]:
    """POST ``records`` in batches from ``senders`` concurrent clients, retrying 429/503
    until each batch is answered 200; returns the answers' status counts."""
    statuses: Counter[int] = Counter()
    chunks = [records[i : i + batch] for i in range(0, len(records), batch)]
    queue: asyncio.Queue[list[Any]] = asyncio.Queue()
    for chunk in chunks:
        queue.put_nowait(chunk)
    started = time.monotonic()

    async def sender(session: ClientSession) -> None:
        while not queue.empty():
            chunk = queue.get_nowait()
            while True:
                try:
                    async with session.post(url, data=orjson.dumps(chunk)) as response:
                        statuses[response.status] += 1
                        if response.status == 200:
                            break
                        await asyncio.sleep(0.02)
                except OSError:  # not listening yet
                    await asyncio.sleep(0.05)

    async with ClientSession() as session:
        await asyncio.gather(*(sender(session) for _ in range(senders)))
    return statuses, time.monotonic() - started


def test_webhook_receives_100k_records_and_answers_429_under_backpressure() -> None:
    port = free_port()
    records = [{"id": i} for i in range(100_000)]
    outcome: dict[str, Any] = {}

    def send() -> None:
        outcome["statuses"], _ = asyncio.run(
            _post_all(f"http://127.0.0.1:{port}/events", records, 500, 4)
        )

    async def slow(record: dict[str, int]) -> dict[str, int]:
        if record["id"] % 1_000 == 0:
            await asyncio.sleep(0.01)
        return record

    client = threading.Thread(target=send)
    client.start()
    out = TestingSink()
    source = Connectors.webhook(port=port, path="/events", max_pending=1_000, stop_when_idle=1.0)
    job = (
        Job.builder().source(source).transform(Operators.map(slow, concurrency=1)).sink(out).build()
    )
    result = run_job(job)
    client.join(30)
    assert result.status is JobStatus.COMPLETED, result.error
    assert sorted(r["id"] for r in out.records) == list(range(100_000))  # all, once
    statuses = outcome["statuses"]
    assert statuses[200] == 200 and statuses[429] > 0
    events = next(s for s in result.metrics.steps if s.kind == "source").connector_events
    assert events["throttled"] == statuses[429]


def test_webhook_with_checkpoints_answers_after_the_checkpoint_and_rejects_bad_bodies(
    tmp_path: Any,
) -> None:
    port = free_port()
    outcome: dict[str, Any] = {}

    async def client() -> None:
        url = f"http://127.0.0.1:{port}/"
        async with ClientSession() as session:
            for _ in range(100):
                try:
                    async with session.post(url, data=b"{broken") as response:
                        outcome["bad"] = (response.status, await response.text())
                        break
                except OSError:
                    await asyncio.sleep(0.05)
            started = time.monotonic()
            lines = b'{"id": 1}\n{"id": 2}\n'
            async with session.post(url, data=lines) as response:
                outcome["lines"] = (response.status, time.monotonic() - started)

    thread = threading.Thread(target=lambda: asyncio.run(client()))
    thread.start()
    out = TestingSink()
    job = (
        Job.builder()
        .checkpointing(str(tmp_path / "ckpt"), interval_ms=300)
        .source(Connectors.webhook(port=port, stop_when_idle=1.5))
        .sink(out)
        .build()
    )
    result = run_job(job)
    thread.join(10)
    assert result.status is JobStatus.COMPLETED, result.error
    assert out.records == [{"id": 1}, {"id": 2}]
    assert outcome["bad"][0] == 400 and "not JSON" in outcome["bad"][1]
    status, waited = outcome["lines"]
    assert status == 200 and waited >= 0.05  # answered when a checkpoint completed


def test_webhook_port_in_use_is_a_clear_error() -> None:
    with ThreadedServer(web.Application) as taken:
        source = Connectors.webhook(port=taken.port, stop_when_idle=0.5)
        result = run_job(Job.builder().source(source).sink(TestingSink()).build())
    assert result.status is JobStatus.FAILED
    assert f"webhook source: cannot listen on 127.0.0.1:{taken.port}" in str(result.error)


def _endless_app(declared: bool) -> web.Application:
    """A server whose answer never ends (chunked), or declares a huge length."""

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        if declared:
            response.content_length = 10**12
        await response.prepare(request)
        chunk = b"[" + b'{"a": 1},' * 10_000
        try:
            for _ in range(100_000):  # bounded: ~9 GB at most, stopped by the client
                await response.write(chunk)
        except (ConnectionResetError, RuntimeError):
            pass
        return response

    app = web.Application()
    app.router.add_get("/endless", endless)
    return app


@pytest.mark.parametrize("declared", [False, True])
def test_an_endless_response_body_fails_at_the_limit(declared: bool) -> None:
    with ThreadedServer(lambda: _endless_app(declared)) as server:
        source = Connectors.http(url=f"{server.url}/endless", max_response_bytes=1_000_000)
        result = run_job(Job.builder().source(source).sink(TestingSink()).build())
    assert result.status is JobStatus.FAILED
    assert "a body of more than 1000000 bytes" in str(result.error)
    events = next(s for s in result.metrics.steps if s.kind == "source").connector_events
    assert events["oversized"] == 1


def test_a_webhook_body_over_the_limit_gets_413() -> None:
    port = free_port()
    outcome: dict[str, Any] = {}

    async def post() -> None:
        async with ClientSession() as session:
            url = f"http://127.0.0.1:{port}/in"
            for _ in range(200):  # until the source listens
                try:
                    async with session.post(url, data=b"[" + b'{"a":1},' * 20_000 + b"{}]") as r:
                        outcome["big"] = r.status
                    break
                except OSError:
                    await asyncio.sleep(0.05)
            async with session.post(url, json=[{"a": 1}, {"a": 2}]) as r:
                outcome["small"] = r.status

    client = threading.Thread(target=lambda: asyncio.run(post()))
    client.start()
    out = TestingSink()
    source = Connectors.webhook(port=port, path="/in", max_body_bytes=100_000, stop_when_idle=1.0)
    result = run_job(Job.builder().source(source).sink(out).build())
    client.join(30)
    assert result.status is JobStatus.COMPLETED, result.error
    assert outcome == {"big": 413, "small": 200}
    assert out.records == [{"a": 1}, {"a": 2}]
