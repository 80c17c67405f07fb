"""The ``mqtt`` connector (aiomqtt on paho-mqtt): a topic source and a sink.

Source: subscribes to ``topic`` (wildcards allowed) at ``qos`` and acknowledges
QoS 1/2 messages itself: with ``ack: read`` (the default) once their records are
in the job, with ``ack: checkpoint`` once the checkpoint after them completes.
Unacknowledged messages stop the broker from sending more (its in-flight window),
which is the source's backpressure; a broker redelivers them after a reconnect
or a restart when the session is persistent -- give a ``client_id`` for that
(``clean_session`` off). Without a ``client_id`` the session is clean and what
is published while the source is away is not kept for it. ``shared_group`` reads
through an MQTT shared subscription (``$share/group/topic``), so several
subtasks split the messages; without it the source has one subtask.

Broker limits matter: Mosquitto sends at most ``max_inflight_messages`` (20 by
default) unacknowledged messages to a client and queues ``max_queued_messages``
(1000) more, dropping QoS 1/2 messages beyond that for a subscriber that falls
behind. For high-volume topics raise both in the broker (``0`` is unlimited);
``ack: checkpoint`` needs an in-flight window that holds a checkpoint interval.

Sink: publishes each record at ``qos``; QoS 1/2 publishes of a batch are in
flight together and awaited before the batch counts as written (and at each
checkpoint barrier). ``topic`` may take ``{field}`` placeholders. A batch whose
publishing fails is published again after reconnecting, with backoff, before
the step fails with the broker's reason (at-least-once).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, model_validator

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
    publish_with_retries,
)
from reflow.connectors.options import Duration, OptionsConnector
from reflow.connectors.retry import retry
from reflow.errors import ConnectorError

__all__ = ["MqttConnector", "MqttSinkOptions", "MqttSourceOptions"]

logger = logging.getLogger(__name__)


def _qos_number(value: Any) -> Any:
    """A QoS given as text (SQL's WITH options are text): '1' is 1."""
    return int(value) if isinstance(value, str) and value.strip() in ("0", "1", "2") else value


class _MqttOptions(PayloadOptions):
    secret_fields: ClassVar[frozenset[str]] = frozenset({"password"})

    host: str = Field("127.0.0.1", description="broker host")
    port: int = Field(1883, ge=1, le=65535, description="broker port")
    username: str | None = Field(None, description="user name")
    password: str | None = Field(None, description="password (use ${ENV})")
    topic: str = Field(description="topic to subscribe to (wildcards + and #) or publish to")
    qos: Annotated[Literal[0, 1, 2], BeforeValidator(_qos_number)] = Field(
        1, description="quality of service"
    )
    client_id: str | None = Field(
        None, description="client identifier; with it, a persistent session (clean_session off)"
    )
    keepalive: int = Field(30, gt=0, description="seconds between keep-alive pings")
    timeout: Duration = Field(
        30.0, description="how long connecting, subscribing or a publish may take"
    )
    max_inflight: int = Field(
        1_000, gt=0, description="QoS 1/2 messages published and not yet acknowledged"
    )

    @property
    def address(self) -> str:
        return f"mqtt://{self.host}:{self.port}"


class MqttSourceOptions(_MqttOptions):
    ack: Literal["read", "checkpoint"] = Field(
        "read",
        description="acknowledge QoS 1/2 messages once read by the job, or once the "
        "checkpoint after them completes",
    )
    shared_group: str | None = Field(
        None, description="read through the shared subscription $share/<group>/<topic>"
    )
    metadata: bool = Field(
        False, description="emit {topic, payload, qos, retain} instead of the payload alone"
    )
    max_records: int = Field(1_000, gt=0, description="messages per read at most")
    poll_timeout: Duration = Field(0.5, description="how long one read waits for messages")
    reconnect_backoff: Duration = Field(0.5, description="first delay before reconnecting")
    max_reconnects: int = Field(
        10, ge=0, description="failed reconnect attempts in a row before the step fails"
    )
    stop_when_idle: Duration | None = Field(
        None, description="end the source after this long without a message (a bounded read)"
    )


class MqttSinkOptions(_MqttOptions):
    retain: bool = Field(False, description="ask the broker to retain the last message")
    publish_timeout: Duration = Field(
        30.0, description="how long a batch may wait for the broker's acknowledgements"
    )

    @model_validator(mode="after")
    def _no_wildcards(self) -> MqttSinkOptions:
        if "+" in self.topic or "#" in self.topic:
            raise ValueError("a sink topic cannot contain the wildcards + or #")
        return self


def _client(options: _MqttOptions, ctx: ConnectorContext, role: str) -> Any:
    import aiomqtt

    identifier = options.client_id
    if identifier is not None and ctx.parallelism > 1:
        identifier = f"{identifier}-{ctx.subtask_index}"
    client = aiomqtt.Client(
        options.host,
        options.port,
        username=options.username,
        password=options.password,
        identifier=identifier or f"reflow-{role}-{uuid.uuid4().hex[:12]}",
        clean_session=identifier is None,
        keepalive=options.keepalive,
        max_inflight_messages=options.max_inflight,
        timeout=options.timeout,
    )
    client.pending_calls_threshold = options.max_inflight + 10
    return client


def _unreachable(role: str, options: _MqttOptions, exc: BaseException) -> ConnectorError:
    return ConnectorError(
        f"mqtt {role}: cannot connect to {options.address}: {exc!r}. Check host and port and "
        "that the MQTT broker is running"
    )


async def _disconnect(client: Any, role: str, *, flush: bool) -> None:
    """Leave the broker; with ``flush``, first let queued packets (acks) go out."""
    lost = client._disconnected
    if flush:
        paho = client._client
        for _ in range(100):
            if not paho._out_packet or lost.done():
                break
            await asyncio.sleep(0.01)
    if lost.done() and not lost.cancelled():
        lost.exception()  # seen: the reason was logged where it happened
    try:
        await client.__aexit__(None, None, None)
    except Exception as exc:  # already gone
        logger.debug("mqtt %s: disconnect failed: %r", role, exc)


class _MqttReader(SourceReader):
    """Reads its own queue of paho messages (with their DUP flag and packet id).

    With ``ack: checkpoint`` the packet ids of returned, unacknowledged messages
    are the source's checkpoint position: a broker resends an unacknowledged
    QoS 1/2 message of a persistent session with the same packet id and the DUP
    flag, so after a restore (or a reconnect) a resent message whose id is among
    those already returned is acknowledged and not read twice. That closes the
    window between a checkpoint being stored and its acknowledgements leaving.
    """

    def __init__(self, options: MqttSourceOptions, ctx: ConnectorContext) -> None:
        self.options = options
        self.ctx = ctx
        self.codec = PayloadCodec(options)
        self.client: Any = None
        self.connected = False
        self.idle = IdleClock(options.stop_when_idle)
        self.manual_ack = options.qos > 0
        self.ack_on_checkpoint = options.ack == "checkpoint" and ctx.checkpointing
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        # Packet ids returned and not acknowledged, per batch ("chunks"), by checkpoint.
        self.returned: list[tuple[int, ...]] = []
        self.pending: dict[int, list[tuple[int, ...]]] = {}
        self.outstanding: set[int] = set()
        self.restored: set[int] = set()  # ids a restored checkpoint holds: skip their resends
        self.subscription = (
            f"$share/{options.shared_group}/{options.topic}"
            if options.shared_group
            else options.topic
        )

    def snapshot(self) -> Any:
        if not self.ack_on_checkpoint:
            return None
        chunks = [c for cs in self.pending.values() for c in cs]
        return tuple(chunks + self.returned)

    def restore(self, position: Any) -> None:
        self.restored = {mid for chunk in position or () for mid in chunk}

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        self.queue.put_nowait(message)

    async def _connect(self) -> None:
        self.client = _client(self.options, self.ctx, "source")
        paho = self.client._client
        if self.manual_ack:
            paho.manual_ack_set(True)  # acknowledged once read or checkpointed
        paho.on_message = self._on_message
        await self.client.__aenter__()
        self.connected = True
        await self.client.subscribe(self.subscription, qos=self.options.qos)
        self.ctx.count("connects")

    async def open(self) -> None:
        try:
            await self._connect()
        except Exception as exc:
            await self._drop()
            raise _unreachable("source", self.options, exc) from exc

    async def _drop(self) -> None:
        if self.client is not None and self.connected:
            self.connected = False
            # Let acknowledgements already given reach the broker before leaving,
            # or it delivers those messages again.
            await _disconnect(self.client, "source", flush=True)

    async def _reconnect(self, reason: BaseException) -> None:
        opts = self.options
        self.connected = False
        logger.warning(
            "mqtt source %s: connection to %s lost (%r); reconnecting in %.1fs",
            self.ctx.step_id,
            opts.address,
            reason,
            opts.reconnect_backoff,
        )
        await self.ctx.clock.sleep(opts.reconnect_backoff)

        async def connect() -> None:
            self.ctx.count("reconnects")
            await self._connect()

        def give_up(exc: BaseException, retries: int) -> ConnectorError:
            return ConnectorError(
                f"mqtt source: {opts.address} is gone: {retries + 1} reconnect attempts "
                f"failed; last: {exc!r}"
            )

        await retry(
            self.ctx,
            connect,
            what=f"reconnecting to {opts.address}",
            retries=opts.max_reconnects - 1,
            first_delay=opts.reconnect_backoff * 2,
            give_up=give_up,
            counter="reconnect_retries",
        )

    async def read_batch(self) -> list[Any] | None:
        import aiomqtt

        opts = self.options
        queue = self.queue
        try:
            first = await asyncio.wait_for(queue.get(), opts.poll_timeout)
        except TimeoutError:
            disconnected = self.client._disconnected
            if disconnected.done():
                exc = disconnected.exception() or aiomqtt.MqttError("disconnected")
                await self._reconnect(exc)
                return []
            if self.idle.expired():
                return None
            return []
        self.idle.busy()
        taken = [first]
        while len(taken) < opts.max_records and not queue.empty():
            taken.append(queue.get_nowait())
        records: list[Any] = []
        decode = self.codec.decode
        metadata = opts.metadata
        ids: list[int] = []
        now: list[Any] = []
        outstanding, restored = self.outstanding, self.restored
        for message in taken:
            if message.qos > 0 and self.manual_ack:
                mid = message.mid
                if message.dup and (mid in outstanding or mid in restored):
                    # Sent again after a reconnect or restart, but already read.
                    self.ctx.count("redelivered_skipped")
                    if mid in restored:
                        restored.discard(mid)
                        now.append(message)
                    continue
                if self.ack_on_checkpoint:
                    ids.append(mid)
                    outstanding.add(mid)
                else:
                    now.append(message)
            payload = message.payload
            try:
                value = decode(payload)
            except ValueError as exc:
                self.ctx.reject(payload, ValueError(f"topic {message.topic!r}: {exc}"))
                continue
            if metadata:
                value = {
                    "topic": message.topic,
                    "payload": value,
                    "qos": message.qos,
                    "retain": bool(message.retain),
                }
            records.append(value)
        if ids:
            self.returned.append(tuple(ids))
        if now:
            self._ack([(m.mid, m.qos) for m in now])
        return records

    def _ack(self, messages: list[tuple[int, int]]) -> None:
        paho = self.client._client
        for mid, qos in messages:
            paho.ack(mid, qos)
        self.ctx.count("acks", len(messages))

    def on_checkpoint(self, checkpoint_id: int) -> None:
        if self.ack_on_checkpoint:
            self.pending[checkpoint_id], self.returned = self.returned, []

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        qos = self.options.qos
        for done in sorted(c for c in self.pending if c <= checkpoint_id):
            mids = [mid for chunk in self.pending.pop(done) for mid in chunk]
            self.outstanding.difference_update(mids)
            self._ack([(mid, qos) for mid in mids])

    async def health(self) -> tuple[bool, str] | None:
        if not self.connected or self.client._disconnected.done():
            return False, f"not connected to {self.options.address}"
        return True, f"connected to {self.options.address}"

    async def close(self) -> None:
        await self._drop()


class _MqttWriter(SinkWriter):
    def __init__(self, options: MqttSinkOptions, ctx: ConnectorContext) -> None:
        self.options = options
        self.ctx = ctx
        self.codec = PayloadCodec(options)
        self.typed_rows = self.codec.format == "json"  # JSON messages encode rows
        self.client: Any = None
        self.connected = False
        self.templated = "{" in options.topic
        self.outstanding: set[int] = set()
        self.acknowledged = asyncio.Event()

    async def _connect(self) -> None:
        self.client = _client(self.options, self.ctx, "sink")
        await self.client.__aenter__()
        self.connected = True
        self.ctx.count("connects")
        # Await a batch's acknowledgements together: one event for the batch rather
        # than aiomqtt's event per message (whose bookkeeping grows with the number
        # in flight); aiomqtt's own callback still runs.
        paho = self.client._client
        chained = paho.on_publish

        def on_publish(client: Any, userdata: Any, mid: int, *rest: Any) -> None:
            outstanding = self.outstanding
            if mid in outstanding:
                outstanding.discard(mid)
                if not outstanding:
                    self.acknowledged.set()
            chained(client, userdata, mid, *rest)

        paho.on_publish = on_publish

    async def open(self) -> None:
        try:
            await self._connect()
        except Exception as exc:
            await self._drop()
            raise _unreachable("sink", self.options, exc) from exc

    async def _drop(self) -> None:
        if self.client is not None and self.connected:
            self.connected = False
            await _disconnect(self.client, "sink", flush=False)

    async def write(self, batch: list[Any]) -> None:
        opts = self.options
        messages: list[tuple[str, bytes]] = []
        encode = self.codec.encode
        for record in batch:
            try:
                topic = opts.topic.format_map(record) if self.templated else opts.topic
                messages.append((topic, encode(record)))
            except (KeyError, TypeError, ValueError) as exc:
                self.ctx.reject(record, exc)

        async def reconnect() -> None:
            await self._drop()
            try:
                await self._connect()
            except Exception as again:  # the next attempt fails and is retried
                logger.warning("mqtt sink %s: reconnect failed: %r", self.ctx.step_id, again)

        await publish_with_retries(
            self.ctx,
            lambda: self._publish(messages),
            connector="mqtt",
            where=f"{opts.topic!r} on {opts.address}",
            messages=len(messages),
            reconnect=reconnect,
        )

    async def _publish(self, messages: list[tuple[str, bytes]]) -> None:
        """Publish ``messages`` and wait until the broker has acknowledged each one."""
        import aiomqtt
        import paho.mqtt.client as paho_mqtt

        opts = self.options
        client = self.client
        publish = client._client.publish
        outstanding = self.outstanding
        outstanding.clear()
        self.acknowledged.clear()
        for topic, payload in messages:
            info = publish(topic, payload, opts.qos, opts.retain)
            if info.rc != paho_mqtt.MQTT_ERR_SUCCESS:
                raise aiomqtt.MqttCodeError(info.rc, "could not publish")
            if not info.is_published():
                outstanding.add(info.mid)
        if not outstanding:
            return
        done = asyncio.ensure_future(self.acknowledged.wait())
        lost = asyncio.ensure_future(asyncio.shield(client._disconnected))
        try:
            await asyncio.wait(
                (done, lost), timeout=opts.publish_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            done.cancel()
            lost.cancel()
        if outstanding:
            if client._disconnected.done():
                raise aiomqtt.MqttError(f"disconnected with {len(outstanding)} unacknowledged")
            raise TimeoutError(
                f"{len(outstanding)} publishes unacknowledged after {opts.publish_timeout}s"
            )

    async def health(self) -> tuple[bool, str] | None:
        if not self.connected or self.client._disconnected.done():
            return False, f"not connected to {self.options.address}"
        return True, f"connected to {self.options.address}"

    async def close(self) -> None:
        await self._drop()


def _reader(options: MqttSourceOptions, ctx: ConnectorContext) -> SourceReader:
    return _MqttReader(options, ctx)


def _writer(options: MqttSinkOptions, ctx: ConnectorContext) -> SinkWriter:
    return _MqttWriter(options, ctx)


class MqttConnector(OptionsConnector):
    type = "mqtt"
    description = (
        "MQTT brokers (aiomqtt): a topic source acknowledging QoS 1/2 messages after they are "
        "read or checkpointed, shared subscriptions for parallel readers; a QoS 0/1/2 sink."
    )
    source_options = MqttSourceOptions
    sink_options = MqttSinkOptions

    def create_source(self, options: Mapping[str, Any]) -> Source:
        opts = self.parse(options, "source", MqttSourceOptions)
        return MessageSource(
            "mqtt",
            opts,
            _reader,
            bounded=opts.stop_when_idle is not None,
            parallel=opts.shared_group is not None,
        )

    def create_sink(self, options: Mapping[str, Any]) -> Sink:
        return MessageSink("mqtt", self.parse(options, "sink", MqttSinkOptions), _writer)
