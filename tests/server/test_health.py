"""/health's decision flow (seed §7.3): DEGRADED under backpressure, DOWN when a
connector's server goes away, UP again when it returns."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from reflow import Connectors, Flow, Job
from reflow.runtime import ExecutorSettings, LocalExecutor
from reflow.server.health import HealthChecker
from reflow.testing import TestingSink, TestingSource
from tests.conftest import source_blocked


class TcpProxy:
    """A loopback TCP forwarder we can stop and start: the server "goes away"."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.server: asyncio.Server | None = None
        self.port = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server = self.server
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        if server is not self.server or server is None or not server.is_serving():
            writer.close()  # the proxy stopped while this connection was being set up
            up_writer.close()
            return
        self.writers += [writer, up_writer]
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        self.writers = []
        await self.server.wait_closed()

    async def run_through_outage(self, job: Any, after: float, down: float) -> Any:
        """Run ``job`` (reflow.testing.run_job_async); ``after`` seconds in, cut every
        connection and refuse new ones for ``down`` seconds."""
        from reflow.testing import run_job_async

        task = asyncio.create_task(run_job_async(job))
        await asyncio.sleep(after)
        await self.stop()
        await asyncio.sleep(down)
        await self.start()
        return await task


def test_degraded_under_sustained_backpressure() -> None:
    async def slow(x: int) -> int:
        await asyncio.sleep(0.002)
        return x

    flow = Flow("pressure", batch_size=10)
    flow.source(TestingSource(range(100_000), bounded=False)).rebalance().map(
        slow, concurrency=1
    ).sink(TestingSink())
    job = flow.to_job()

    async def scenario() -> tuple[Any, Any]:
        with LocalExecutor(ExecutorSettings(channel_capacity=2)) as executor:
            checker = HealthChecker(executor)
            task = asyncio.create_task(executor.execute(job))
            await source_blocked(executor, job.job_id)
            await checker.check()  # the first check starts the measurement window
            await asyncio.sleep(0.4)
            second = await checker.check()
            await executor.stop(job.job_id)
            await task
            idle = await checker.check()
            return second, idle

    second, idle = asyncio.run(scenario())
    executor_health = next(c for c in second.components if c.name == "executor")
    assert second.status == "DEGRADED" and executor_health.status == "DEGRADED"
    assert "backpressure" in executor_health.reason
    assert idle.status == "UP"


def test_down_when_the_database_goes_away_and_up_when_it_returns(postgres_url: str) -> None:
    async def scenario() -> list[tuple[str, str]]:
        proxy = TcpProxy(5432)
        await proxy.start()
        url = postgres_url.replace(":5432/", f":{proxy.port}/")
        job = (
            Job.builder()
            .source(TestingSource([{"id": 1}], bounded=False))
            .sink(
                Connectors.sql(url=url, table="health", create_table=True, flush_interval="1h"),
                id="warehouse",
            )
            .build()
        )
        seen = []
        with LocalExecutor(ExecutorSettings()) as executor:
            checker = HealthChecker(executor)
            task = asyncio.create_task(executor.execute(job))
            await asyncio.sleep(0.5)
            for step in ("up", "down", "back"):
                if step == "down":
                    await proxy.stop()
                elif step == "back":
                    await proxy.start()
                report = await checker.check()
                connectors = next(c for c in report.components if c.name == "connectors")
                seen.append((report.status, connectors.reason))
            await executor.stop(job.job_id)
            await task
        await proxy.stop()
        return seen

    (up, up_reason), (down, down_reason), (back, _) = asyncio.run(scenario())
    assert up == "UP" and "1 connections checked" in up_reason
    assert down == "DOWN"
    assert "sink 'warehouse'" in down_reason and "cannot reach postgresql+psycopg" in down_reason
    assert back == "UP"
