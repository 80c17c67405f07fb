"""The ``websocket`` connector (aiohttp): an unbounded source of the messages a
WebSocket server pushes, reconnecting with exponential backoff.

One connection per source (a server pushes the same stream to every
connection, so the source does not run in parallel). ``subscribe`` messages are
sent after every connect, for servers that want a subscription first. Messages
wait in a queue of ``max_pending``; when it is full the source stops reading the
socket, so TCP flow control slows the server down instead of memory growing.

If the connection drops, the source reconnects after ``reconnect_backoff``,
doubling up to ``reconnect_max_backoff``; after ``max_reconnects`` failed
attempts in a row the step fails with the last reason. A server that is down
when the job starts is an error at once. Messages the server sends while no
connection is open are not received: WebSocket has no replay, so the source's
guarantee is what the server offers (at-most-once across disconnects).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Mapping
from typing import Any, ClassVar

import orjson
from pydantic import Field

from reflow.connectors.base import (
    ConnectorContext,
    Sink,
    Source,
    SourceReader,
    cancel_and_wait,
)
from reflow.connectors.messaging import (
    IdleClock,
    MessageSource,
    PayloadCodec,
    PayloadOptions,
    masked_url,
)
from reflow.connectors.options import Duration, OptionsConnector
from reflow.connectors.retry import retry
from reflow.errors import ConnectorError

__all__ = ["WebSocketConnector", "WebSocketSourceOptions"]

logger = logging.getLogger(__name__)


class WebSocketSourceOptions(PayloadOptions):
    secret_fields: ClassVar[frozenset[str]] = frozenset({"auth_token"})

    url: str = Field(description="ws://host:port/path or wss://...")
    headers: dict[str, str] = Field(default_factory=dict, description="headers of the handshake")
    auth_token: str | None = Field(None, description="bearer token of the handshake (use ${ENV})")
    subscribe: list[Any] = Field(
        default_factory=list,
        description="messages sent after each connect (strings as text, others as JSON)",
    )
    reconnect_backoff: Duration = Field(0.5, description="first delay before reconnecting")
    reconnect_max_backoff: Duration = Field(30.0, description="longest delay between attempts")
    max_reconnects: int | None = Field(
        None, ge=0, description="failed reconnect attempts in a row before failing (None: forever)"
    )
    max_pending: int = Field(
        10_000, gt=0, description="messages received and not yet read by the job"
    )
    heartbeat: Duration | None = Field(
        30.0, description="ping interval; a missing pong counts as a dropped connection"
    )
    connect_timeout: Duration = Field(10.0, description="how long the handshake may take")
    stop_when_idle: Duration | None = Field(
        None, description="end the source after this long without a message (a bounded read)"
    )


_END = object()


class _WebSocketReader(SourceReader):
    def __init__(self, options: WebSocketSourceOptions, ctx: ConnectorContext) -> None:
        self.options = options
        self.ctx = ctx
        self.codec = PayloadCodec(options)
        self.session: Any = None
        self.ws: Any = None
        self.pump: asyncio.Task[None] | None = None
        self.queue: asyncio.Queue[Any] = asyncio.Queue(options.max_pending)
        self.error: BaseException | None = None
        self.idle = IdleClock(options.stop_when_idle)
        self.where = masked_url(options.url)

    async def _connect(self) -> Any:
        import aiohttp

        opts = self.options
        headers = dict(opts.headers)
        if opts.auth_token:
            headers["Authorization"] = f"Bearer {opts.auth_token}"
        ws = await self.session.ws_connect(
            opts.url,
            headers=headers,
            heartbeat=opts.heartbeat,
            timeout=aiohttp.ClientWSTimeout(ws_close=opts.connect_timeout),
            max_msg_size=64 * 1024 * 1024,
        )
        for message in opts.subscribe:
            if isinstance(message, str):
                await ws.send_str(message)
            else:
                await ws.send_bytes(orjson.dumps(message))
        self.ctx.count("connects")
        return ws

    async def open(self) -> None:
        import aiohttp

        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.options.connect_timeout)
        )
        try:
            self.ws = await self._connect()
        except Exception as exc:
            await self.session.close()
            raise ConnectorError(
                f"websocket source: cannot connect to {self.where}: {exc!r}. Check the url and "
                "that the server is running"
            ) from exc
        self.pump = asyncio.create_task(self._run())

    async def _run(self) -> None:
        import aiohttp

        opts = self.options
        delay = opts.reconnect_backoff
        while True:
            if self.ws is None:
                try:
                    self.ws = await self._reconnect()
                except ConnectorError as exc:
                    self.error = exc
                    await self.queue.put(_END)
                    return
            ws = self.ws
            received = False
            reason = ""
            try:
                async for message in ws:
                    received = True
                    if message.type == aiohttp.WSMsgType.TEXT:
                        await self.queue.put(message.data.encode())
                    elif message.type == aiohttp.WSMsgType.BINARY:
                        await self.queue.put(message.data)
                    elif message.type == aiohttp.WSMsgType.ERROR:
                        reason = repr(ws.exception())
                        break
                else:
                    reason = f"closed by the server (code {ws.close_code})"
            except (aiohttp.ClientError, OSError) as exc:
                reason = repr(exc)
            await ws.close()
            self.ws = None
            self.ctx.count("reconnects")
            # A connection that delivered messages worked: the backoff starts over.
            delay = (
                opts.reconnect_backoff if received else min(delay * 2, opts.reconnect_max_backoff)
            )
            logger.warning(
                "websocket source %s: connection to %s lost (%s); reconnecting in %.1fs",
                self.ctx.step_id,
                self.where,
                reason,
                delay,
            )
            await self.ctx.clock.sleep(delay)

    async def _reconnect(self) -> Any:
        """A new connection, retried with backoff ``max_reconnects`` times (for ever
        without a limit)."""
        opts = self.options

        def give_up(exc: BaseException, retries: int) -> ConnectorError:
            return ConnectorError(
                f"websocket source: {self.where} is gone: {retries} reconnect attempts "
                f"failed; last: {exc!r}"
            )

        limit = opts.max_reconnects
        return await retry(
            self.ctx,
            self._connect,
            what=f"reconnecting to {self.where}",
            retries=limit if limit is not None else sys.maxsize,
            first_delay=opts.reconnect_backoff * 2,
            max_delay=opts.reconnect_max_backoff,
            give_up=give_up,
            counter="reconnect_retries",
        )

    async def read_batch(self) -> list[Any] | None:
        try:
            first = await asyncio.wait_for(self.queue.get(), 0.2)
        except TimeoutError:
            if self.error is not None:
                raise self.error from None
            if self.idle.expired():
                return None
            return []
        taken = [first]
        limit = self.ctx.batch_size
        while len(taken) < limit and not self.queue.empty():
            taken.append(self.queue.get_nowait())
        self.idle.busy()
        records: list[Any] = []
        decode = self.codec.decode
        for raw in taken:
            if raw is _END:
                assert self.error is not None
                raise self.error
            try:
                records.append(decode(raw))
            except ValueError as exc:
                self.ctx.reject(raw, ValueError(f"websocket message from {self.where}: {exc}"))
        return records

    async def health(self) -> tuple[bool, str] | None:
        if self.ws is None or self.ws.closed:
            return False, f"not connected to {self.where} (reconnecting)"
        return True, f"connected to {self.where}"

    async def close(self) -> None:
        await cancel_and_wait(self.pump)
        if self.ws is not None:
            await self.ws.close()
        if self.session is not None:
            await self.session.close()


def _reader(options: WebSocketSourceOptions, ctx: ConnectorContext) -> SourceReader:
    return _WebSocketReader(options, ctx)


class WebSocketConnector(OptionsConnector):
    type = "websocket"
    description = (
        "WebSocket (aiohttp): an unbounded source of pushed messages, reconnecting with "
        "exponential backoff; subscribe messages after each connect."
    )
    source_options = WebSocketSourceOptions

    def create_source(self, options: Mapping[str, Any]) -> Source:
        opts = self.parse(options, "source", WebSocketSourceOptions)
        return MessageSource(
            "websocket", opts, _reader, bounded=opts.stop_when_idle is not None, parallel=False
        )

    def create_sink(self, options: Mapping[str, Any]) -> Sink:
        self._model("sink")  # raises: the websocket connector has no sink
        raise AssertionError("unreachable")
