"""A real aiohttp server on loopback, run in its own thread and event loop, for
the HTTP, webhook and WebSocket connector tests (the job runs in the test's thread)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.conftest import _free_low_port

free_port = _free_low_port
"""A free loopback port below the ephemeral range (SERVICES.md)."""


class ThreadedServer:
    """Serves ``make_app()`` on 127.0.0.1:``port`` until ``stop()``."""

    def __init__(self, make_app: Callable[[], web.Application], port: int | None = None) -> None:
        self.make_app = make_app
        self.port = port or free_port()
        self.loop = asyncio.new_event_loop()
        self.runner: web.AppRunner | None = None
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ThreadedServer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    async def _start(self) -> None:
        self.runner = web.AppRunner(self.make_app(), access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the server's loop (to change its state safely)."""

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def stop(self) -> None:
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
            self.runner = None
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
