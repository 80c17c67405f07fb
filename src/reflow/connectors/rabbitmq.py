"""The ``rabbitmq`` connector (AMQP 0-9-1, aio-pika): a queue source that
acknowledges after checkpoints, and a sink with publisher confirms.

Source: each subtask is a consumer of the queue with a prefetch window (``prefetch``
unacknowledged messages at most, which is the source's backpressure). With
checkpoints, messages are acknowledged when the checkpoint after them completes;
without, as soon as they are read. Messages of a run that fails are never
acknowledged, so the broker delivers them again: at-least-once. Note that the
prefetch window must hold a checkpoint interval's worth of messages, or reading
pauses until the next checkpoint completes.

Sink: a batch is published concurrently and each message waits for the broker's
confirm; a batch that fails is published again after reconnecting, with
exponential backoff, before the step fails with the broker's reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import Field, model_validator

from reflow.connectors.base import (
    ConnectorContext,
    Sink,
    SinkWriter,
    Source,
    SourceReader,
)
from reflow.connectors.messaging import (
    IdleClock,
    MessageSink,
    MessageSource,
    PayloadCodec,
    PayloadOptions,
    masked_url,
    publish_with_retries,
)
from reflow.connectors.options import Duration, OptionsConnector
from reflow.errors import ConnectorError

__all__ = ["RabbitMQConnector", "RabbitMQSinkOptions", "RabbitMQSourceOptions"]

logger = logging.getLogger(__name__)


class _RabbitOptions(PayloadOptions):
    secret_fields: ClassVar[frozenset[str]] = frozenset({"url"})

    url: str = Field(
        "amqp://guest:guest@127.0.0.1:5672/", description="amqp://user:password@host:port/vhost"
    )
    queue: str | None = Field(None, description="the queue to read, or to publish to")
    declare: bool = Field(True, description="declare the queue (durable) if it does not exist")


class RabbitMQSourceOptions(_RabbitOptions):
    queue: str = Field(description="the queue to read")
    prefetch: int = Field(2_000, gt=0, description="unacknowledged messages per consumer at most")
    max_records: int = Field(500, gt=0, description="records per read")
    poll_timeout: Duration = Field(0.5, description="how long one read waits for messages")
    stop_when_idle: Duration | None = Field(
        None, description="end the source after this long without a message (a bounded read)"
    )


class RabbitMQSinkOptions(_RabbitOptions):
    exchange: str = Field("", description="exchange to publish to ('' is the default exchange)")
    routing_key: str | None = Field(
        None, description="routing key; {field} placeholders take record fields (default: queue)"
    )
    persistent: bool = Field(True, description="messages survive a broker restart")

    @model_validator(mode="after")
    def _target(self) -> RabbitMQSinkOptions:
        if self.routing_key is None and self.queue is None:
            raise ValueError("a rabbitmq sink needs queue or routing_key")
        return self


async def _connect(options: _RabbitOptions, role: str) -> Any:
    import aio_pika

    try:
        return await aio_pika.connect(options.url, timeout=5)
    except Exception as exc:
        raise ConnectorError(
            f"rabbitmq {role}: cannot connect to {masked_url(options.url)}: {exc!r}. Check the URL "
            "and that the RabbitMQ server is running and reachable"
        ) from exc


class _RabbitReader(SourceReader):
    def __init__(self, options: RabbitMQSourceOptions, ctx: ConnectorContext) -> None:
        self.options = options
        self.ctx = ctx
        self.codec = PayloadCodec(options)
        self.connection: Any = None
        self.channel: Any = None
        self.messages: asyncio.Queue[Any] = asyncio.Queue()
        # The newest message returned and not acknowledged; acknowledging it with
        # multiple=True acknowledges every earlier one of this channel too.
        self.last: Any = None
        self.pending: dict[int, Any] = {}  # checkpoint id -> the last message it covers
        self.idle = IdleClock(options.stop_when_idle)
        self.ended = False
        self.lost: BaseException | None = None

    async def open(self) -> None:
        opts = self.options
        self.connection = await _connect(opts, "source")
        self.channel = await self.connection.channel()
        await self.channel.set_qos(prefetch_count=opts.prefetch)
        try:
            queue = await self.channel.declare_queue(
                opts.queue, durable=True, passive=not opts.declare
            )
        except Exception as exc:
            raise ConnectorError(
                f"rabbitmq source: queue {opts.queue!r} is not usable: {exc!r}. Create it, "
                "or set declare: true"
            ) from exc
        await queue.consume(self.messages.put, no_ack=False)
        self.connection.close_callbacks.add(self._on_close)
        self.channel.close_callbacks.add(self._on_close)

    def _on_close(self, sender: Any, exc: BaseException | None = None) -> None:
        if self.lost is None:
            self.lost = exc or ConnectionError("closed by the broker")

    def _check_connection(self) -> None:
        """A lost connection fails the step at once: its unacknowledged messages go back
        to the queue, and acknowledging what was read on it is no longer possible."""
        if self.lost is not None or self.connection.is_closed:
            raise ConnectorError(
                f"rabbitmq source: the connection to {masked_url(self.options.url)} was lost "
                f"({self.lost!r}); unacknowledged messages return to the queue"
            )

    async def read_batch(self) -> list[Any] | None:
        opts = self.options
        self._check_connection()
        try:
            first = await asyncio.wait_for(self.messages.get(), opts.poll_timeout)
        except TimeoutError:
            self._check_connection()
            if self.idle.expired():
                self.ended = True
                return None
            return []
        self.idle.busy()
        taken = [first]
        while len(taken) < opts.max_records and not self.messages.empty():
            taken.append(self.messages.get_nowait())
        records: list[Any] = []
        decode = self.codec.decode
        for message in taken:
            body = message.body
            try:
                records.append(decode(body))
            except ValueError as exc:
                self.ctx.reject(
                    body,
                    ValueError(f"queue {opts.queue!r} delivery {message.delivery_tag}: {exc}"),
                )
        if self.ctx.checkpointing:
            self.last = taken[-1]
        else:
            await taken[-1].ack(multiple=True)
        return records

    def on_checkpoint(self, checkpoint_id: int) -> None:
        if self.last is not None:
            self.pending[checkpoint_id] = self.last
            self.last = None

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        done = sorted(c for c in self.pending if c <= checkpoint_id)
        if done:
            newest = self.pending[done[-1]]
            for c in done:
                del self.pending[c]
            await newest.ack(multiple=True)

    async def health(self) -> tuple[bool, str] | None:
        if self.connection is None or self.connection.is_closed:
            return False, f"not connected to {masked_url(self.options.url)}"
        return True, f"connected to {masked_url(self.options.url)}"

    async def close(self) -> None:
        if self.connection is None:
            return
        # A bounded read that reached its end handed everything downstream.
        newest = self.last or (self.pending[max(self.pending)] if self.pending else None)
        if self.ended and newest is not None and not self.connection.is_closed:
            await newest.ack(multiple=True)
        await self.connection.close()


class _RabbitWriter(SinkWriter):
    def __init__(self, options: RabbitMQSinkOptions, ctx: ConnectorContext) -> None:
        self.options = options
        self.ctx = ctx
        self.codec = PayloadCodec(options)
        self.typed_rows = self.codec.format == "json"  # JSON messages encode rows
        self.connection: Any = None
        self.exchange: Any = None
        self.routing = options.routing_key or options.queue or ""

    async def _open_channel(self) -> None:
        opts = self.options
        self.connection = await _connect(opts, "sink")
        channel = await self.connection.channel(publisher_confirms=True)
        if opts.queue and opts.declare:
            await channel.declare_queue(opts.queue, durable=True)
        self.exchange = (
            await channel.get_exchange(opts.exchange) if opts.exchange else channel.default_exchange
        )

    async def open(self) -> None:
        await self._open_channel()

    async def write(self, batch: list[Any]) -> None:
        import aio_pika

        opts = self.options
        mode = aio_pika.DeliveryMode.PERSISTENT if opts.persistent else None
        routing = self.routing
        templated = "{" in routing
        messages: list[tuple[Any, str]] = []
        for record in batch:
            try:
                body = self.codec.encode(record)
                key = routing.format_map(record) if templated else routing
            except (KeyError, TypeError, ValueError) as exc:
                self.ctx.reject(record, exc)
                continue
            messages.append(
                (aio_pika.Message(body, delivery_mode=mode, content_type=_content(opts)), key)
            )

        async def publish() -> None:
            await asyncio.gather(*(self.exchange.publish(m, k) for m, k in messages))

        await publish_with_retries(
            self.ctx,
            publish,
            connector="rabbitmq",
            where=masked_url(opts.url),
            messages=len(messages),
            reconnect=self._reconnect,
        )

    async def _reconnect(self) -> None:
        if self.connection is not None and not self.connection.is_closed:
            await self.connection.close()
        try:
            await self._open_channel()
        except ConnectorError as exc:
            logger.warning("%s", exc)

    async def health(self) -> tuple[bool, str] | None:
        if self.connection is None or self.connection.is_closed:
            return False, f"not connected to {masked_url(self.options.url)}"
        return True, f"connected to {masked_url(self.options.url)}"

    async def close(self) -> None:
        if self.connection is not None and not self.connection.is_closed:
            await self.connection.close()


def _content(options: _RabbitOptions) -> str:
    return {
        "json": "application/json",
        "text": "text/plain",
        "csv": "text/csv",
        "avro": "application/avro",
    }.get(options.format, "application/octet-stream")


class RabbitMQConnector(OptionsConnector):
    type = "rabbitmq"
    description = (
        "RabbitMQ (AMQP 0-9-1): a queue source acknowledging after checkpoints, with a "
        "prefetch window as backpressure; a sink with publisher confirms and retries."
    )
    source_options = RabbitMQSourceOptions
    sink_options = RabbitMQSinkOptions

    def create_source(self, options: Mapping[str, Any]) -> Source:
        opts = self.parse(options, "source", RabbitMQSourceOptions)
        return MessageSource(
            "rabbitmq", opts, _RabbitReader, bounded=opts.stop_when_idle is not None
        )

    def create_sink(self, options: Mapping[str, Any]) -> Sink:
        return MessageSink(
            "rabbitmq", self.parse(options, "sink", RabbitMQSinkOptions), _RabbitWriter
        )
