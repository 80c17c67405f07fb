"""The websocket source against a real aiohttp WebSocket server on loopback:
100k pushed messages across a dropped connection, subscriptions, backoff, and
the error paths."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import WSMsgType, web

from reflow import Connectors, Job, JobStatus, Operators
from reflow.testing import TestingSink, run_job
from tests.connectors.http_server import ThreadedServer, free_port
from tests.connectors.scenarios import dead_lettered_job


class Feed:
    """Pushes records ``0..total-1`` to whoever subscribes, continuing where the
    previous connection stopped; closes the connection after ``drop_at`` records
    of the first connection, and sends one malformed message at ``bad_at``."""

    def __init__(self, total: int, drop_at: int | None = None, bad_at: int | None = None) -> None:
        self.total = total
        self.drop_at = drop_at
        self.bad_at = bad_at
        self.sent = 0
        self.connections = 0
        self.subscriptions: list[Any] = []
        self.refuse = False

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/feed", self.feed)
        return app

    async def feed(self, request: web.Request) -> web.StreamResponse:
        if self.refuse:
            return web.Response(status=503)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.connections += 1
        first = await ws.receive()
        assert first.type in (WSMsgType.TEXT, WSMsgType.BINARY)
        self.subscriptions.append(orjson.loads(first.data))
        assert request.headers.get("Authorization") == "Bearer s3cret"
        while self.sent < self.total:
            if self.connections == 1 and self.sent == self.drop_at:
                await ws.close()
                return ws
            if self.sent == self.bad_at:
                await ws.send_str("{not json")
            await ws.send_str(orjson.dumps({"seq": self.sent}).decode())
            self.sent += 1
        async for _ in ws:  # stay connected, as a live feed does, until the client leaves
            pass
        return ws


def test_100k_messages_across_a_dropped_connection_arrive_once() -> None:
    feed = Feed(100_000, drop_at=30_000, bad_at=77_777)
    dead, out = TestingSink(), TestingSink()
    with ThreadedServer(feed.app) as server:
        source = Connectors.websocket(
            url=server.url.replace("http", "ws") + "/feed",
            subscribe=[{"op": "subscribe", "channel": "ticks"}],
            auth_token="s3cret",
            reconnect_backoff=0.05,
            stop_when_idle=1.0,
        )
        job = dead_lettered_job(source, out, dead)
        result = run_job(job)
    assert result.status is JobStatus.COMPLETED, result.error
    assert [r["seq"] for r in out.records] == list(range(100_000))
    assert feed.connections == 2
    assert feed.subscriptions == [{"op": "subscribe", "channel": "ticks"}] * 2
    assert len(dead.records) == 1 and "websocket message" in dead.records[0]["error"]
    events = next(s for s in result.metrics.steps if s.kind == "source").connector_events
    assert events == {"connects": 2, "reconnects": 1}


def test_server_down_at_start_is_a_clear_error() -> None:
    port = free_port()
    source = Connectors.websocket(url=f"ws://127.0.0.1:{port}/feed", stop_when_idle=1.0)
    result = run_job(Job.builder().source(source).sink(TestingSink()).build())
    assert result.status is JobStatus.FAILED
    assert f"websocket source: cannot connect to ws://127.0.0.1:{port}/feed" in str(result.error)


def test_server_gone_for_good_fails_after_the_reconnect_attempts() -> None:
    feed = Feed(5_000, drop_at=2_000)
    out = TestingSink()
    with ThreadedServer(feed.app) as server:

        def refuse_after_drop(record: dict[str, int]) -> dict[str, int]:
            if record["seq"] == 1_999:
                feed.refuse = True  # every reconnect is answered 503
            return record

        source = Connectors.websocket(
            url=server.url.replace("http", "ws") + "/feed",
            subscribe=['{"op": "hello"}'],
            headers={"Authorization": "Bearer s3cret"},
            reconnect_backoff=0.02,
            max_reconnects=3,
        )
        feed.subscriptions = []
        job = (
            Job.builder()
            .source(source)
            .transform(Operators.map(refuse_after_drop))
            .sink(out)
            .build()
        )
        result = run_job(job)
    assert result.status is JobStatus.FAILED
    message = str(result.error)
    assert "websocket source" in message and "3 reconnect attempts failed" in message
    assert "503" in message
    assert [r["seq"] for r in out.records] == list(range(2_000))  # what came before is kept
