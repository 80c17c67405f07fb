"""The ``nats`` connector (NATS JetStream, nats-py): a durable pull-consumer source
that acknowledges after checkpoints, and a sink that waits for JetStream's
publish acknowledgements.

Source: the subtasks share one durable consumer of ``stream`` (created if
missing) and fetch up to ``max_records`` at a time. JetStream holds at most
``max_ack_pending`` unacknowledged messages per consumer (the backpressure) and
delivers a message again when it is not acknowledged within ``ack_wait``: with
checkpoints, messages are acknowledged once the checkpoint after them completes,
so ``ack_wait`` must be longer than the checkpoint interval. Without checkpoints
they are acknowledged as soon as they are read. At-least-once.

Sink: a batch is published concurrently and each message waits for its
JetStream acknowledgement; failures are retried with backoff, then fail the step.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import Field

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

__all__ = ["NatsConnector", "NatsSinkOptions", "NatsSourceOptions"]

logger = logging.getLogger(__name__)


class _NatsOptions(PayloadOptions):
    secret_fields: ClassVar[frozenset[str]] = frozenset({"token", "password"})

    servers: str = Field("nats://127.0.0.1:4222", description="nats://host:port[,nats://...]")
    user: str | None = Field(None, description="user name")
    password: str | None = Field(None, description="password (use ${ENV})")
    token: str | None = Field(None, description="authentication token (use ${ENV})")
    stream: str = Field(description="the JetStream stream")
    subject: str | None = Field(
        None, description="subject to publish to or filter on (default: the stream's name)"
    )
    create_stream: bool = Field(True, description="create the stream if it does not exist")


class NatsSourceOptions(_NatsOptions):
    durable: str = Field("reflow", description="durable consumer name (shared by subtasks)")
    max_records: int = Field(500, gt=0, description="messages per fetch")
    poll_timeout: Duration = Field(0.5, description="how long one fetch waits for messages")
    ack_wait: Duration = Field(
        120.0,
        description="redeliver a message not acknowledged within this (> checkpoint interval)",
    )
    max_ack_pending: int = Field(20_000, gt=0, description="unacknowledged messages at most")
    stop_when_idle: Duration | None = Field(
        None, description="end the source after this long without a message (a bounded read)"
    )


class NatsSinkOptions(_NatsOptions):
    pass


def _subject(options: _NatsOptions) -> str:
    return options.subject or options.stream


async def _connect(options: _NatsOptions, role: str) -> tuple[Any, Any]:
    import nats

    try:
        client = await nats.connect(
            servers=[s.strip() for s in options.servers.split(",")],
            user=options.user,
            password=options.password,
            token=options.token,
            connect_timeout=3,
            max_reconnect_attempts=6,
            reconnect_time_wait=0.5,
            allow_reconnect=True,
        )
    except Exception as exc:
        raise ConnectorError(
            f"nats {role}: cannot connect to {masked_url(options.servers)}: {exc!r}. "
            "Check 'servers' and that the NATS server is running (with JetStream, -js)"
        ) from exc
    js = client.jetstream()
    try:
        await js.stream_info(options.stream)
    except Exception as exc:
        from nats.js.errors import NotFoundError

        if not isinstance(exc, NotFoundError) or not options.create_stream:
            await client.close()
            raise ConnectorError(
                f"nats {role}: stream {options.stream!r} is not usable on "
                f"{masked_url(options.servers)}: {exc!r}. Create it, or set create_stream: true"
            ) from exc
        await js.add_stream(name=options.stream, subjects=[_subject(options)])
    return client, js


class _NatsReader(SourceReader):
    def __init__(self, options: NatsSourceOptions, ctx: ConnectorContext) -> None:
        self.options = options
        self.ctx = ctx
        self.codec = PayloadCodec(options)
        self.client: Any = None
        self.subscription: Any = None
        self.returned: list[Any] = []
        self.pending: dict[int, list[Any]] = {}
        self.idle = IdleClock(options.stop_when_idle)
        self.ended = False

    async def open(self) -> None:
        from nats.js.api import ConsumerConfig

        opts = self.options
        self.client, js = await _connect(opts, "source")
        self.subscription = await js.pull_subscribe(
            _subject(opts),
            durable=opts.durable,
            stream=opts.stream,
            config=ConsumerConfig(ack_wait=opts.ack_wait, max_ack_pending=opts.max_ack_pending),
        )

    async def read_batch(self) -> list[Any] | None:
        from nats.errors import TimeoutError as NatsTimeout

        opts = self.options
        try:
            messages = await self.subscription.fetch(opts.max_records, timeout=opts.poll_timeout)
        except (NatsTimeout, TimeoutError):  # nats-py raises either when nothing came
            messages = []
        except Exception as exc:
            raise ConnectorError(
                f"nats source: fetching from stream {opts.stream!r} on {masked_url(opts.servers)} "
                f"failed: {exc!r}"
            ) from exc
        if not messages:
            if self.idle.expired():
                self.ended = True
                return None
            return []
        self.idle.busy()
        records: list[Any] = []
        for message in messages:
            data = message.data
            try:
                records.append(self.codec.decode(data))
            except ValueError as exc:
                self.ctx.reject(data, ValueError(f"stream {opts.stream!r}: {exc}"))
        if self.ctx.checkpointing:
            self.returned.extend(messages)
        else:
            await _ack(messages)
        return records

    def on_checkpoint(self, checkpoint_id: int) -> None:
        self.pending[checkpoint_id], self.returned = self.returned, []

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        for done in sorted(c for c in self.pending if c <= checkpoint_id):
            await _ack(self.pending.pop(done))

    async def health(self) -> tuple[bool, str] | None:
        if self.client is None or not self.client.is_connected:
            return False, f"not connected to {masked_url(self.options.servers)}"
        return True, f"connected to {masked_url(self.options.servers)}"

    async def close(self) -> None:
        if self.client is None:
            return
        if self.ended and self.client.is_connected:
            # A bounded read that reached its end handed everything downstream.
            for messages in [*self.pending.values(), self.returned]:
                await _ack(messages)
        await self.client.close()


async def _ack(messages: list[Any]) -> None:
    for message in messages:
        await message.ack()


class _NatsWriter(SinkWriter):
    def __init__(self, options: NatsSinkOptions, ctx: ConnectorContext) -> None:
        self.options = options
        self.ctx = ctx
        self.codec = PayloadCodec(options)
        self.typed_rows = self.codec.format == "json"  # JSON messages encode rows
        self.client: Any = None
        self.js: Any = None

    async def open(self) -> None:
        self.client, self.js = await _connect(self.options, "sink")

    async def write(self, batch: list[Any]) -> None:
        opts = self.options
        subject = _subject(opts)
        payloads: list[bytes] = []
        for record in batch:
            try:
                payloads.append(self.codec.encode(record))
            except (TypeError, ValueError) as exc:
                self.ctx.reject(record, exc)

        async def publish() -> None:
            await asyncio.gather(*(self.js.publish(subject, p) for p in payloads))

        await publish_with_retries(
            self.ctx,
            publish,
            connector="nats",
            where=f"{subject!r} on {masked_url(opts.servers)}",
            messages=len(payloads),
        )

    async def health(self) -> tuple[bool, str] | None:
        if self.client is None or not self.client.is_connected:
            return False, f"not connected to {masked_url(self.options.servers)}"
        return True, f"connected to {masked_url(self.options.servers)}"

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()


class NatsConnector(OptionsConnector):
    type = "nats"
    description = (
        "NATS JetStream: a durable pull-consumer source acknowledging after checkpoints; "
        "a sink waiting for JetStream's publish acknowledgements."
    )
    source_options = NatsSourceOptions
    sink_options = NatsSinkOptions

    def create_source(self, options: Mapping[str, Any]) -> Source:
        opts = self.parse(options, "source", NatsSourceOptions)
        return MessageSource("nats", opts, _NatsReader, bounded=opts.stop_when_idle is not None)

    def create_sink(self, options: Mapping[str, Any]) -> Sink:
        return MessageSink("nats", self.parse(options, "sink", NatsSinkOptions), _NatsWriter)
