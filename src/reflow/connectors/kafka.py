"""The ``kafka`` connector (seed §3.9.4) on aiokafka: a partitioned source whose
offsets live in checkpoints, and a batching sink with keys and headers.

Source: like Flink's KafkaSource, subtasks do not join a consumer group; each is
assigned the partitions ``p`` with ``p % parallelism == subtask`` and keeps its
next offset per partition. The offsets are the source's checkpoint position, so
a restore rewinds exactly; when a checkpoint completes they are also committed
to ``group_id`` (if set), which is what ``start: committed`` and lag monitors
read. ``stop_at_end`` reads up to the end offsets seen at start (a bounded job).

Sink: records are sent without waiting for each acknowledgement; past
``max_in_flight`` unacknowledged records the job waits for the oldest, so a slow
broker slows the job (backpressure) instead of filling memory. Every delivery is
awaited at each checkpoint barrier and at end of input, so a completed
checkpoint means its records are in Kafka. The producer retries transient
errors itself (``retry_backoff``); a delivery that still fails stops the step
with the broker's reason. Delivery is at-least-once.

With ``delivery: exactly-once`` the sink writes ahead: the records of each
checkpoint are kept (encoded) in the checkpoint, and when the checkpoint
completes they are written in one Kafka transaction that also commits a marker
-- the checkpoint id, as the offset of a consumer group named after the job,
step and subtask, through ``send_offsets_to_transaction``. After a failure the
restored checkpoint's records are written again only if the marker is behind,
so a ``read_committed`` consumer sees every record once. (Flink instead resumes
the pre-committed transaction of the failed producer; aiokafka cannot, and the
marker gives the same result.) The price is memory: a checkpoint interval's
records are held until it completes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from reflow.connectors.base import (
    END_OF_INPUT,
    ConnectorContext,
    Sink,
    SinkWriter,
    Source,
    SourceReader,
)
from reflow.connectors.messaging import (
    MessageSink,
    MessageSource,
    PayloadCodec,
    PayloadOptions,
)
from reflow.connectors.options import Duration, OptionsConnector
from reflow.errors import ConnectorError

__all__ = ["KafkaConnector", "KafkaSinkOptions", "KafkaSourceOptions"]

logger = logging.getLogger(__name__)


class _KafkaOptions(PayloadOptions):
    secret_fields: ClassVar[frozenset[str]] = frozenset({"sasl_password"})

    bootstrap_servers: str = Field(
        "127.0.0.1:9092", alias="bootstrap.servers", description="host:port[,host:port...]"
    )
    security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL"] = Field(
        "PLAINTEXT", description="how to talk to the brokers"
    )
    sasl_mechanism: str | None = Field(None, description="PLAIN, SCRAM-SHA-256, ...")
    sasl_username: str | None = Field(None, description="SASL user")
    sasl_password: str | None = Field(None, description="SASL password (use ${ENV})")
    request_timeout: Duration = Field(10.0, description="how long one broker request may take")
    properties: dict[str, Any] = Field(
        default_factory=dict,
        description="Kafka client properties by their Kafka names (seed §3.9.4), each "
        "translated to the option above it sets; see docs/connectors.md",
    )

    PROPERTIES: ClassVar[dict[str, str]] = {
        "bootstrap.servers": "bootstrap_servers",
        "security.protocol": "security_protocol",
        "sasl.mechanism": "sasl_mechanism",
        "sasl.username": "sasl_username",
        "sasl.password": "sasl_password",
        "request.timeout.ms": "request_timeout",
    }
    """Kafka property -> option (``.ms`` values are converted to seconds)."""

    @model_validator(mode="before")
    @classmethod
    def _properties(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not data.get("properties"):
            return data
        data = dict(data)
        known = cls.PROPERTIES
        for name, value in dict(data["properties"]).items():
            if name == "enable.auto.commit":
                if str(value).lower() not in ("false", "0"):
                    raise ValueError(
                        "properties: enable.auto.commit must be false: reflow commits offsets "
                        "to the group after each completed checkpoint"
                    )
                continue
            if name not in known:
                raise ValueError(
                    f"properties: {name!r} is not supported here; supported: "
                    f"enable.auto.commit (false), {', '.join(sorted(known))}"
                )
            option = known[name]
            if option in data and data[option] != value:
                raise ValueError(f"properties: {name!r} and option {option!r} disagree")
            data[option] = int(value) / 1000 if name.endswith(".ms") else value
        return data

    def client_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
            "request_timeout_ms": int(self.request_timeout * 1000),
        }
        if self.sasl_mechanism:
            kwargs.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password,
            )
        return kwargs


class KafkaSourceOptions(_KafkaOptions):
    PROPERTIES: ClassVar[dict[str, str]] = {
        **_KafkaOptions.PROPERTIES,
        "group.id": "group_id",
        "max.poll.records": "max_records",
        "auto.offset.reset": "start",
    }

    topic: str | None = Field(None, description="the topic to read (or give topics)")
    topics: list[str] | None = Field(
        None, description="several topics to read as one stream (seed §6.2 topics: [...])"
    )
    group_id: str | None = Field(
        None, alias="group.id", description="group to commit offsets to after checkpoints"
    )
    consumer_group: str | None = Field(None, description="the seed's name for group_id")
    start: Literal["earliest", "latest", "committed", "timestamp"] = Field(
        "earliest", description="where a job without a checkpoint starts"
    )
    start_timestamp: int | None = Field(
        None, description="start: timestamp -- the first record at or after this epoch ms"
    )
    max_records: int = Field(500, gt=0, description="records per read")
    poll_timeout: Duration = Field(0.5, description="how long one read waits for records")
    stop_at_end: bool = Field(
        False, description="end at the end offsets seen at start (a bounded read)"
    )
    metadata: bool = Field(
        False,
        description="emit {key, value, topic, partition, offset, timestamp, headers} "
        "instead of the value alone",
    )

    @field_validator("topics", mode="before")
    @classmethod
    def _one_or_more(cls, value: Any) -> Any:
        # Connectors.kafka().topics("events") (seed §9.3), or "a,b".
        return (
            [t.strip() for t in value.split(",") if t.strip()] if isinstance(value, str) else value
        )

    @property
    def topic_names(self) -> list[str]:
        return [self.topic] if self.topic else list(self.topics or ())

    @model_validator(mode="before")
    @classmethod
    def _consumer_group(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("consumer_group") is not None:
            data = dict(data)
            group = data.pop("consumer_group")
            if data.setdefault("group_id", group) != group:
                raise ValueError("consumer_group and group_id disagree; keep one")
        return data

    @model_validator(mode="after")
    def _start(self) -> KafkaSourceOptions:
        if (self.topic is None) == (not self.topics):
            raise ValueError("give the topic to read: topic: name, or topics: [a, b]")
        if self.topics and len(set(self.topics)) != len(self.topics):
            raise ValueError(f"topics lists a topic twice: {self.topics}")
        if self.start == "timestamp" and self.start_timestamp is None:
            raise ValueError("start: timestamp needs start_timestamp (epoch milliseconds)")
        if self.start == "committed" and not self.group_id:
            raise ValueError("start: committed needs group_id")
        return self


class KafkaSinkOptions(_KafkaOptions):
    PROPERTIES: ClassVar[dict[str, str]] = {
        **_KafkaOptions.PROPERTIES,
        "acks": "acks",
        "linger.ms": "linger",
        "compression.type": "compression",
        "batch.size": "max_batch_bytes",
        "transactional.id": "transactional_id_prefix",
    }

    topic: str = Field(description="the topic to write")

    @property
    def topic_names(self) -> list[str]:
        return [self.topic]

    key_field: str | None = Field(None, description="record field whose value is the message key")
    headers: dict[str, str] = Field(
        default_factory=dict, description="headers added to every message"
    )
    acks: Literal["all", "1", "0"] = Field("all", description="broker acknowledgements to wait for")
    linger: Duration = Field(0.005, description="how long the producer waits to fill a batch")
    compression: Literal["gzip", "snappy", "lz4", "zstd"] | None = Field(
        None, description="compression of message batches"
    )
    max_batch_bytes: int = Field(
        1 << 20, gt=0, description="bytes per producer batch and partition"
    )
    max_in_flight: int = Field(
        10_000, ge=0, description="records sent but not yet acknowledged before the job waits"
    )
    delivery: Literal["at-least-once", "exactly-once"] = Field(
        "at-least-once",
        description="exactly-once: each checkpoint's records in one transaction, written when "
        "the checkpoint completes (needs checkpoints; read with isolation read_committed)",
    )
    transactional_id_prefix: str | None = Field(
        None,
        description="exactly-once: prefix of the producers' transactional.id "
        "(default reflow-<job id>-<step id>; the subtask index is appended)",
    )


def _unreachable(
    role: str, options: KafkaSourceOptions | KafkaSinkOptions, exc: BaseException
) -> ConnectorError:
    return ConnectorError(
        f"kafka {role}: cannot reach the brokers at {options.bootstrap_servers} for "
        f"{_named(options.topic_names)}: {exc!r}. Check bootstrap.servers and that the "
        "brokers are running"
    )


def _named(topics: list[str]) -> str:
    return f"topic {topics[0]!r}" if len(topics) == 1 else f"topics {', '.join(topics)}"


Partition = tuple[str, int]
"""A topic's partition: (topic, partition)."""


class _KafkaReader(SourceReader):
    def __init__(self, options: KafkaSourceOptions, ctx: ConnectorContext) -> None:
        self.options = options
        self.ctx = ctx
        self.consumer: Any = None
        self.offsets: dict[Partition, int] = {}  # next offset to read
        self.restored: dict[Partition, int] | None = None
        self.ends: dict[Partition, int] | None = None
        self.pending: dict[int, dict[Partition, int]] = {}
        self.codec = PayloadCodec(options)

    def snapshot(self) -> Any:
        return {
            f"{topic}/{partition}": offset for (topic, partition), offset in self.offsets.items()
        }

    def restore(self, position: Any) -> None:
        restored: dict[Partition, int] = {}
        for key, offset in position.items():
            topic, slash, partition = str(key).rpartition("/")
            if not slash:  # a checkpoint of a single-topic reader, keyed by partition
                topic = self.options.topic_names[0]
            restored[(topic, int(partition))] = int(offset)
        self.restored = restored

    async def open(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        opts = self.options
        self.consumer = AIOKafkaConsumer(
            **opts.client_kwargs(),
            group_id=opts.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if opts.start != "latest" else "latest",
            max_poll_records=opts.max_records,
        )
        try:
            await self.consumer.start()
            partitions = await self._partitions()
        except ConnectorError:
            await self.consumer.stop()
            raise
        except Exception as exc:
            await self.consumer.stop()
            raise _unreachable("source", opts, exc) from exc
        mine = [
            p
            for i, p in enumerate(partitions)
            if i % self.ctx.parallelism == self.ctx.subtask_index
        ]
        tps = [TopicPartition(topic, p) for topic, p in mine]
        self.consumer.assign(tps)
        if not tps:
            self.ends = {}
            return
        if self.restored is not None:
            for tp in tps:
                if (tp.topic, tp.partition) in self.restored:
                    self.consumer.seek(tp, self.restored[(tp.topic, tp.partition)])
                else:
                    await self.consumer.seek_to_beginning(tp)
        elif opts.start in ("earliest", "latest"):
            # Explicit offsets rather than seek_to_beginning/end, which reset lazily:
            # under load a bounded read once found nothing to read.
            if opts.start == "earliest":
                edges = await self.consumer.beginning_offsets(tps)
            else:
                edges = await self.consumer.end_offsets(tps)
            for tp, offset in edges.items():
                self.consumer.seek(tp, offset)
        elif opts.start == "committed":
            await self.consumer.seek_to_committed(*tps)
        else:
            found = await self.consumer.offsets_for_times({tp: opts.start_timestamp for tp in tps})
            ends = await self.consumer.end_offsets(tps)
            for tp in tps:
                hit = found.get(tp)
                self.consumer.seek(tp, hit.offset if hit is not None else ends[tp])
        for tp in tps:
            self.offsets[(tp.topic, tp.partition)] = await self.consumer.position(tp)
        if opts.stop_at_end:
            ends = await self.consumer.end_offsets(tps)
            self.ends = {(tp.topic, tp.partition): offset for tp, offset in ends.items()}

    async def _partitions(self) -> list[Partition]:
        """Every partition of every topic, in one order on every subtask."""
        found: list[Partition] = []
        for topic in self.options.topic_names:
            deadline = asyncio.get_running_loop().time() + self.options.request_timeout
            while True:
                partitions = self.consumer.partitions_for_topic(topic)
                if partitions:
                    found.extend((topic, p) for p in sorted(partitions))
                    break
                if asyncio.get_running_loop().time() > deadline:
                    raise ConnectorError(
                        f"kafka source: topic {topic!r} does not exist on "
                        f"{self.options.bootstrap_servers}; create it or fix the topic name"
                    )
                await self.consumer.topics()  # refreshes the metadata
                await asyncio.sleep(0.1)
        return found

    def _finished(self) -> bool:
        ends = self.ends
        return ends is not None and all(self.offsets.get(p, 0) >= e for p, e in ends.items())

    async def read_batch(self) -> list[Any] | None:
        if self._finished():
            return None
        opts = self.options
        try:
            fetched = await self.consumer.getmany(
                timeout_ms=int(opts.poll_timeout * 1000), max_records=opts.max_records
            )
        except Exception as exc:
            raise ConnectorError(
                f"kafka source: reading {_named(opts.topic_names)} from {opts.bootstrap_servers} "
                f"failed: {exc!r}"
            ) from exc
        records: list[Any] = []
        decode = self.codec.decode
        for tp, messages in fetched.items():
            for message in messages:
                try:
                    value = None if message.value is None else decode(message.value)
                except ValueError as exc:
                    self.ctx.reject(
                        message.value,
                        ValueError(
                            f"topic {tp.topic!r} partition {tp.partition} offset "
                            f"{message.offset}: {exc}"
                        ),
                    )
                    continue
                if opts.metadata:
                    value = {
                        "key": message.key,
                        "value": value,
                        "topic": tp.topic,
                        "partition": tp.partition,
                        "offset": message.offset,
                        "timestamp": message.timestamp,
                        "headers": {k: v for k, v in message.headers or ()},
                    }
                records.append(value)
            if messages:
                self.offsets[(tp.topic, tp.partition)] = messages[-1].offset + 1
        return records

    def on_checkpoint(self, checkpoint_id: int) -> None:
        if self.options.group_id:
            self.pending[checkpoint_id] = dict(self.offsets)

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        done = [c for c in self.pending if c <= checkpoint_id]
        if not done:
            return
        offsets = self.pending[max(done)]
        for c in done:
            del self.pending[c]
        from aiokafka import TopicPartition

        self.ctx.count("offset_commits")
        try:
            await self.consumer.commit(
                {TopicPartition(topic, p): o for (topic, p), o in offsets.items()}
            )
        except Exception as exc:  # the checkpoint holds the offsets; this is for monitors
            logger.warning(
                "kafka source: committing offsets of checkpoint %s to group %r failed: %r",
                checkpoint_id,
                self.options.group_id,
                exc,
            )

    async def health(self) -> tuple[bool, str] | None:
        return await _health(self.consumer, self.options)

    async def close(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()


async def _health(client: Any, options: _KafkaOptions) -> tuple[bool, str]:
    """A metadata round trip through the client's own connection (AIOKafkaClient
    is ``producer.client`` and ``consumer._client`` in aiokafka)."""
    if client is None:
        return False, "not started"
    kafka_client = getattr(client, "client", None) or client._client
    try:
        await asyncio.wait_for(kafka_client.fetch_all_metadata(), 3)
    except Exception as exc:
        return False, f"cannot reach {options.bootstrap_servers}: {exc!r}"
    return True, f"connected to {options.bootstrap_servers}"


class _KafkaWriter(SinkWriter):
    def __init__(self, options: KafkaSinkOptions, ctx: ConnectorContext) -> None:
        self.options = options
        self.ctx = ctx
        self.producer: Any = None
        self.headers = [(k, v.encode()) for k, v in options.headers.items()] or None
        self.inflight: deque[asyncio.Future[Any]] = deque()
        self.codec = PayloadCodec(options)
        self.typed_rows = self.codec.format == "json"  # JSON messages encode rows

    async def open(self) -> None:
        from aiokafka import AIOKafkaProducer

        opts = self.options
        acks: int | str = "all" if opts.acks == "all" else int(opts.acks)
        self.producer = AIOKafkaProducer(
            **opts.client_kwargs(),
            acks=acks,
            linger_ms=int(opts.linger * 1000),
            compression_type=opts.compression,
            max_batch_size=opts.max_batch_bytes,
        )
        try:
            await self.producer.start()
        except Exception as exc:
            await self.producer.stop()
            raise _unreachable("sink", opts, exc) from exc

    async def write(self, batch: list[Any]) -> None:
        opts = self.options
        send = self.producer.send
        topic, key_field, headers = opts.topic, opts.key_field, self.headers
        encode = self.codec.encode
        inflight = self.inflight
        try:
            for record in batch:
                try:
                    value = encode(record)
                    key = None if key_field is None else str(record[key_field]).encode()
                except (KeyError, TypeError, ValueError) as exc:
                    self.ctx.reject(record, exc)
                    continue
                inflight.append(await send(topic, value, key=key, headers=headers))
            # At most max_in_flight unacknowledged records: beyond, wait for the oldest.
            while len(inflight) > opts.max_in_flight:
                await inflight.popleft()
        except Exception as exc:
            raise self._failed(exc) from exc

    def _failed(self, exc: BaseException) -> ConnectorError:
        opts = self.options
        return ConnectorError(
            f"kafka sink: writing to {opts.topic!r} on {opts.bootstrap_servers} failed: {exc!r}"
        )

    async def flush(self) -> None:
        """Wait for every delivery: at end of input and at each checkpoint barrier
        (``pre_commit``), so a completed checkpoint means its records are in Kafka."""
        inflight = self.inflight
        try:
            while inflight:
                await inflight.popleft()
        except Exception as exc:
            raise self._failed(exc) from exc

    async def health(self) -> tuple[bool, str] | None:
        return await _health(self.producer, self.options)

    async def close(self) -> None:
        if self.producer is not None:
            await self.producer.stop()


# The marker of a final commit at end of input (greater than any checkpoint id).
FINAL_COMMIT = END_OF_INPUT


class _KafkaTransactionalWriter(_KafkaWriter):
    """``delivery: exactly-once``: a Kafka transaction per completed checkpoint."""

    def __init__(self, options: KafkaSinkOptions, ctx: ConnectorContext) -> None:
        super().__init__(options, ctx)
        self.prefix = options.transactional_id_prefix or f"reflow-{ctx.job_id}-{ctx.step_id}"
        self.current: list[tuple[bytes | None, bytes]] = []
        self.staged: dict[int, list[tuple[bytes | None, bytes]]] = {}
        self.committed: dict[int, int] = {}  # subtask -> newest checkpoint id written

    async def open(self) -> None:
        from aiokafka import AIOKafkaProducer

        opts = self.options
        self.producer = AIOKafkaProducer(
            **opts.client_kwargs(),
            acks="all",
            linger_ms=int(opts.linger * 1000),
            compression_type=opts.compression,
            max_batch_size=opts.max_batch_bytes,
            enable_idempotence=True,
            transactional_id=f"{self.prefix}-{self.ctx.subtask_index}",
        )
        try:
            await self.producer.start()  # init_transactions: fences an earlier producer
        except Exception as exc:
            await self.producer.stop()
            raise _unreachable("sink", opts, exc) from exc

    async def write(self, batch: list[Any]) -> None:
        key_field = self.options.key_field
        encode = self.codec.encode
        current = self.current
        for record in batch:
            try:
                value = encode(record)
                key = None if key_field is None else str(record[key_field]).encode()
            except (KeyError, TypeError, ValueError) as exc:
                self.ctx.reject(record, exc)
                continue
            current.append((key, value))

    def _marker_group(self, subtask: int) -> str:
        return f"reflow-eos.{self.ctx.job_id}.{self.ctx.step_id}.{subtask}"

    async def _written_upto(self, subtask: int) -> int:
        """The newest checkpoint id whose records are in Kafka (-1: none), from the marker."""
        if subtask in self.committed:
            return self.committed[subtask]
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(
            **self.options.client_kwargs(),
            group_id=self._marker_group(subtask),
            enable_auto_commit=False,
        )
        try:
            await consumer.start()
            offset = await consumer.committed(TopicPartition(self.options.topic, 0))
        except Exception as exc:
            raise self._failed(exc) from exc
        finally:
            await consumer.stop()
        self.committed[subtask] = -1 if offset is None else int(offset)
        return self.committed[subtask]

    async def _commit(
        self, subtask: int, checkpoint_id: int, records: list[tuple[bytes | None, bytes]]
    ) -> None:
        """Write ``records`` and the marker in one transaction, unless already written."""
        if await self._written_upto(subtask) >= checkpoint_id:
            return
        from aiokafka import TopicPartition

        topic, headers, producer = self.options.topic, self.headers, self.producer
        try:
            async with producer.transaction():
                for key, value in records:
                    await producer.send(topic, value, key=key, headers=headers)
                await producer.send_offsets_to_transaction(
                    {TopicPartition(topic, 0): checkpoint_id}, self._marker_group(subtask)
                )
        except Exception as exc:
            raise self._failed(exc) from exc
        self.committed[subtask] = checkpoint_id
        self.ctx.count("transactions")

    async def pre_commit(self, checkpoint_id: int) -> Any:
        records, self.current = self.current, []
        self.staged[checkpoint_id] = records
        return (self.ctx.subtask_index, checkpoint_id, records)

    async def commit(self, checkpoint_id: int) -> None:
        for staged in sorted(c for c in self.staged if c <= checkpoint_id):
            await self._commit(self.ctx.subtask_index, staged, self.staged[staged])
            del self.staged[staged]  # only once committed: a failed commit is redone

    async def restore(self, states: list[Any]) -> None:
        for subtask, checkpoint_id, records in states:
            await self._commit(subtask, checkpoint_id, records)

    async def flush(self) -> None:
        # End of input: what is staged, then the rest as the final commit.
        await self.commit(FINAL_COMMIT)
        records, self.current = self.current, []
        await self._commit(self.ctx.subtask_index, FINAL_COMMIT, records)


def _kafka_writer(options: KafkaSinkOptions, ctx: ConnectorContext) -> SinkWriter:
    if options.delivery == "exactly-once":
        return _KafkaTransactionalWriter(options, ctx)
    return _KafkaWriter(options, ctx)


class KafkaConnector(OptionsConnector):
    type = "kafka"
    description = (
        "Apache Kafka (aiokafka): a source reading each partition with offsets in "
        "checkpoints, committed to a group after them; a batching sink with keys and headers."
    )
    source_options = KafkaSourceOptions
    sink_options = KafkaSinkOptions

    def create_source(self, options: Mapping[str, Any]) -> Source:
        opts = self.parse(options, "source", KafkaSourceOptions)
        return MessageSource("kafka", opts, _KafkaReader, bounded=opts.stop_at_end)

    def create_sink(self, options: Mapping[str, Any]) -> Sink:
        return MessageSink("kafka", self.parse(options, "sink", KafkaSinkOptions), _kafka_writer)
