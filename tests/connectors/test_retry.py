"""The connectors' one retry helper (reflow/connectors/retry.py): its waits run on the
connector's clock, so a ManualClock decides when each retry happens -- here for the
helper itself and for the HTTP sink against a real server answering 503."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from aiohttp import web

from reflow import Connectors
from reflow.connectors.base import ConnectorContext
from reflow.connectors.registry import resolve_sink
from reflow.connectors.retry import retry
from reflow.errors import ConnectorError
from reflow.eventtime.clock import ManualClock
from tests.connectors.http_server import ThreadedServer


class Flaky:
    """Fails ``failures`` times with ``error``, then answers ``"ok"``; records the
    clock's time of each call."""

    def __init__(self, clock: ManualClock, failures: int, error: Exception) -> None:
        self.clock = clock
        self.failures = failures
        self.error = error
        self.calls: list[int] = []

    async def __call__(self) -> str:
        self.calls.append(self.clock.now_ms())
        if len(self.calls) <= self.failures:
            raise self.error
        return "ok"


async def _drive(clock: ManualClock, awaitable: Any) -> list[float]:
    """Run ``awaitable`` with the clock moved straight to each wait; the waits."""
    clock.jumps.clear()
    await clock.drive(awaitable)
    return list(clock.jumps)


def test_waits_double_on_the_connectors_clock_and_are_counted() -> None:
    clock = ManualClock()
    ctx = ConnectorContext("out", clock=clock)
    flaky = Flaky(clock, 3, OSError("connection reset"))

    async def scenario() -> tuple[str, list[float]]:
        result = await clock.drive(
            retry(ctx, flaky, what="writing", retries=5, first_delay=0.5, max_delay=1.5)
        )
        return result, clock.jumps

    result, waits = asyncio.run(scenario())
    assert result == "ok"
    assert waits == [0.5, 1.0, 1.5]  # doubled, capped at max_delay
    assert flaky.calls == [0, 500, 1_500, 3_000]  # no attempt before its wait was over
    assert ctx.events == {"retries": 3}


def test_gives_up_after_the_retries_with_the_callers_error() -> None:
    clock = ManualClock()
    ctx = ConnectorContext("out", clock=clock)
    flaky = Flaky(clock, 10, OSError("refused"))

    def give_up(error: BaseException, retries: int) -> ConnectorError:
        return ConnectorError(f"sink: failed after {retries} retries: {error}")

    async def scenario() -> None:
        await _drive(
            clock, retry(ctx, flaky, what="writing", retries=2, first_delay=1, give_up=give_up)
        )

    with pytest.raises(ConnectorError, match="failed after 2 retries: refused") as raised:
        asyncio.run(scenario())
    assert isinstance(raised.value.__cause__, OSError)
    assert len(flaky.calls) == 3 and ctx.events == {"retries": 2}


def test_an_error_it_does_not_retry_fails_at_once() -> None:
    clock = ManualClock()
    ctx = ConnectorContext("out", clock=clock)
    flaky = Flaky(clock, 1, ValueError("bad request"))

    async def scenario() -> None:
        await retry(
            ctx,
            flaky,
            what="writing",
            retries=5,
            first_delay=1,
            retry_on=lambda e: isinstance(e, OSError),
            give_up=lambda e, n: ConnectorError(f"gave up after {n} retries: {e}"),
        )

    with pytest.raises(ConnectorError, match="gave up after 0 retries: bad request"):
        asyncio.run(scenario())
    assert len(flaky.calls) == 1 and ctx.events == {}


def test_a_hint_longer_than_the_backoff_wins_and_reconnects_come_between() -> None:
    clock = ManualClock()
    ctx = ConnectorContext("out", clock=clock)
    flaky = Flaky(clock, 2, OSError("busy"))
    between: list[int] = []

    async def reconnect(error: BaseException) -> None:
        between.append(clock.now_ms())

    async def scenario() -> list[float]:
        return await _drive(
            clock,
            retry(
                ctx,
                flaky,
                what="publishing",
                retries=3,
                first_delay=0.2,
                delay_hint=lambda e: 5.0,
                before_retry=reconnect,
                counter="publish_retries",
            ),
        )

    assert asyncio.run(scenario()) == [5.0, 5.0]
    assert between == [5_000, 10_000]  # after each wait, before the next attempt
    assert flaky.calls == [0, 5_000, 10_000]
    assert ctx.events == {"publish_retries": 2}


class Busy:
    """An ingest endpoint that answers 503 with Retry-After: 30 ``busy`` times."""

    def __init__(self, busy: int) -> None:
        self.busy = busy
        self.calls = 0
        self.stored: list[Any] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/ingest", self.ingest)
        return app

    async def ingest(self, request: web.Request) -> web.Response:
        self.calls += 1
        if self.calls <= self.busy:
            return web.Response(status=503, headers={"Retry-After": "30"}, text="busy")
        self.stored.extend(orjson.loads(await request.read()))
        return web.Response(status=200)


def test_the_http_sink_waits_out_retry_after_on_the_jobs_clock() -> None:
    """A real server asks for 30 s twice; on a ManualClock the sink makes no request
    before the clock has moved that far, and the test does not wait 60 s."""
    busy = Busy(2)
    clock = ManualClock()
    with ThreadedServer(busy.app) as server:
        sink = resolve_sink(
            Connectors.http(url=server.url + "/ingest", retry_backoff=0.1, max_retries=3)
        )
        ctx = ConnectorContext("out", clock=clock)
        writer = sink.create_writer(ctx)
        records = [{"id": i} for i in range(10)]

        async def scenario() -> list[float]:
            await writer.open()
            try:
                waits = await _drive(clock, writer.write(records))
                return waits + await _drive(clock, writer.flush())
            finally:
                await writer.close()

        waits = asyncio.run(scenario())
    assert busy.stored == records
    assert busy.calls == 3
    assert waits == [30.0, 30.0]  # Retry-After, longer than the 0.1 s backoff
    assert ctx.events["retries"] == 2 and ctx.events["status_503"] == 2


def test_cancelling_a_retrying_call_cancels_it_instead_of_retrying() -> None:
    clock = ManualClock()
    ctx = ConnectorContext("out", clock=clock)
    started = asyncio.Event()
    calls = []

    async def hangs() -> None:
        calls.append(clock.now_ms())
        started.set()
        await asyncio.Event().wait()

    async def scenario() -> None:
        task = asyncio.ensure_future(retry(ctx, hangs, what="writing", retries=5, first_delay=0.1))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert calls == [0] and ctx.events == {}
