"""What the message-system connectors (kafka, rabbitmq, nats, redis) share:
payload formats, URLs with their credentials hidden, the idle clock of bounded
reads, and the source and sink specs."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec
import orjson
from pydantic import Field, field_validator, model_validator

from reflow.connectors.base import (
    Boundedness,
    ConnectorContext,
    Sink,
    SinkWriter,
    Source,
    SourceReader,
)
from reflow.connectors.options import ConnectorOptions
from reflow.connectors.retry import retry
from reflow.errors import ConnectorError
from reflow.masking import mask_credentials

__all__ = [
    "PUBLISH_ATTEMPTS",
    "Format",
    "IdleClock",
    "MessageSink",
    "MessageSource",
    "PayloadCodec",
    "PayloadOptions",
    "decode_payload",
    "encode_payload",
    "masked_url",
    "publish_with_retries",
]

# Attempts per batch on connection errors, with backoff from 0.2 s doubling.
PUBLISH_ATTEMPTS = 4

Format = Literal["json", "text", "raw", "csv", "avro"]
"""Message bodies: ``json`` (records are JSON values), ``text`` (str), ``raw`` (bytes),
``csv`` (one CSV row per message), ``avro`` (schemaless Avro binary of ``avro_schema``)."""


class PayloadOptions(ConnectorOptions):
    """The payload options every message connector takes."""

    format: Format = Field(
        "json",
        description="message body: json, text, raw (bytes), csv (one row) "
        "or avro (needs avro_schema)",
    )
    avro_schema: dict[str, Any] | str | None = Field(
        None, description="format avro: the record schema, inline or the path of an .avsc file"
    )
    csv_fields: list[str] | None = Field(
        None,
        description="format csv: column names; rows are read as objects with these keys and "
        "objects are written in this column order (without it rows are lists)",
    )
    csv_delimiter: str = Field(",", description="format csv: the field separator")

    @field_validator("csv_delimiter")
    @classmethod
    def _one_char(cls, value: str) -> str:
        if len(value) != 1:
            raise ValueError("csv_delimiter must be one character")
        return value

    @model_validator(mode="after")
    def _schema(self) -> PayloadOptions:
        if self.format == "avro":
            if self.avro_schema is None:
                raise ValueError(
                    "format avro needs avro_schema: the schema inline or the path of an .avsc file"
                )
            load_avro_schema(self.avro_schema)
        return self


def load_avro_schema(schema: Mapping[str, Any] | str) -> Any:
    """The parsed (fastavro) schema; ValueError naming the problem if it is not valid."""
    import fastavro

    if isinstance(schema, str):
        try:
            schema = dict(orjson.loads(Path(schema).read_bytes()))
        except OSError as exc:
            raise ValueError(f"avro_schema file {schema!r} cannot be read: {exc}") from None
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"avro_schema file {schema!r} is not JSON: {exc}") from None
    try:
        return fastavro.parse_schema(dict(schema))
    except Exception as exc:
        raise ValueError(f"avro_schema is not a valid Avro schema: {exc}") from None


class PayloadCodec:
    """Turns records into message bodies and back, per ``PayloadOptions``.

    ``encode`` raises TypeError/ValueError for a record the format cannot carry;
    ``decode`` raises ValueError for a malformed body. Both go to the job's error
    policy (skip, dead-letter or fail), never dropped silently.
    """

    def __init__(self, options: PayloadOptions) -> None:
        self.format = options.format
        self.fields = options.csv_fields
        self.delimiter = options.csv_delimiter
        self.schema: Any = (
            None if options.avro_schema is None else load_avro_schema(options.avro_schema)
        )
        self.encode: Callable[[Any], bytes]
        self.decode: Callable[[bytes], Any]
        fmt = options.format
        if fmt == "json":
            self.encode = _encode_json
            self.decode = _decode_json
        elif fmt in ("text", "raw"):
            self.encode = self._encode_simple
            self.decode = self._decode_simple
        elif fmt == "csv":
            self.encode = self._encode_csv
            self.decode = self._decode_csv
        else:
            self.encode = self._encode_avro
            self.decode = self._decode_avro

    def _encode_simple(self, value: Any) -> bytes:
        return encode_payload(value, self.format)

    def _decode_simple(self, raw: bytes) -> Any:
        return decode_payload(raw, self.format)

    def _encode_csv(self, value: Any) -> bytes:
        if isinstance(value, Mapping):
            if self.fields is None:
                raise TypeError("format csv writes objects only with csv_fields (the column order)")
            row = [value[name] for name in self.fields]
        elif isinstance(value, list | tuple):
            row = list(value)
        else:
            raise TypeError(f"format csv needs objects or lists, got {type(value).__name__}")
        out = io.StringIO()
        csv.writer(out, delimiter=self.delimiter, lineterminator="").writerow(row)
        return out.getvalue().encode()

    def _decode_csv(self, raw: bytes) -> Any:
        rows = list(csv.reader(io.StringIO(raw.decode()), delimiter=self.delimiter))
        if len(rows) != 1:
            raise ValueError(f"format csv expects one row per message, got {len(rows)}")
        row = rows[0]
        if self.fields is None:
            return row
        if len(row) != len(self.fields):
            raise ValueError(f"csv row has {len(row)} fields, csv_fields names {len(self.fields)}")
        return dict(zip(self.fields, row, strict=True))

    def _encode_avro(self, value: Any) -> bytes:
        import fastavro

        out = io.BytesIO()
        fastavro.schemaless_writer(out, self.schema, value)
        return out.getvalue()

    def _decode_avro(self, raw: bytes) -> Any:
        import fastavro

        buffer = io.BytesIO(raw)
        try:
            record = fastavro.schemaless_reader(buffer, self.schema, None)
        except Exception as exc:
            raise ValueError(f"not an Avro record of the schema: {exc!r}") from None
        if buffer.tell() != len(raw):
            raise ValueError(f"Avro body has {len(raw) - buffer.tell()} bytes after the record")
        return record


# Typed rows (msgspec Structs of a declared schema, from SQL) are encoded as they
# are, in one C-level call, never turned into dicts first; types JSON lacks become
# their text, as orjson's default=str does for dicts.
_ROW_JSON = msgspec.json.Encoder(enc_hook=str)


def _encode_json(value: Any) -> bytes:
    if isinstance(value, msgspec.Struct):
        return _ROW_JSON.encode(value)
    return orjson.dumps(value, default=str)


def _decode_json(raw: bytes) -> Any:
    return orjson.loads(raw)


def encode_payload(value: Any, fmt: Format) -> bytes:
    """A record as a message body; TypeError/ValueError for a record the format cannot carry."""
    if fmt == "json":
        return orjson.dumps(value, default=str)
    if fmt == "text":
        return str(value).encode()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"format raw needs bytes records, got {type(value).__name__}")


def decode_payload(raw: bytes, fmt: Format) -> Any:
    """A message body as a record; orjson.JSONDecodeError/UnicodeDecodeError if malformed."""
    if fmt == "json":
        return orjson.loads(raw)
    if fmt == "text":
        return raw.decode()
    return raw


def masked_url(url: str) -> str:
    """``scheme://user:password@host/...`` with the password replaced by ``***``."""
    return mask_credentials(url)


class IdleClock:
    """Ends a bounded read (``stop_when_idle``) after ``limit`` seconds without a message."""

    def __init__(self, limit: float | None) -> None:
        self.limit = limit
        self.since: float | None = None

    def busy(self) -> None:
        self.since = None

    def expired(self) -> bool:
        """Called when a read found nothing: True once the quiet period exceeds the limit."""
        if self.limit is None:
            return False
        now = time.monotonic()
        if self.since is None:
            self.since = now
        return now - self.since >= self.limit


class MessageSource(Source):
    """The spec of a message-system source: validated options and the reader class
    each subtask gets. Readers share the input (partitions, a queue, a group)."""

    def __init__(
        self,
        connector_type: str,
        options: Any,
        reader: Callable[[Any, ConnectorContext], SourceReader],
        *,
        bounded: bool,
        parallel: bool = True,
    ) -> None:
        self.connector_type = connector_type  # type: ignore[misc]
        self.options = options
        self.reader = reader
        self._bounded = bounded
        self._parallel = parallel
        self.name: str | None = None
        self.parallelism: int | None = None

    @property
    def boundedness(self) -> Boundedness:
        return Boundedness.BOUNDED if self._bounded else Boundedness.UNBOUNDED

    @property
    def is_parallel(self) -> bool:
        return self._parallel

    def create_reader(self, ctx: ConnectorContext) -> SourceReader:
        return self.reader(self.options, ctx)


class MessageSink(Sink):
    """The spec of a message-system sink: validated options and the writer class."""

    def __init__(
        self,
        connector_type: str,
        options: Any,
        writer: Callable[[Any, ConnectorContext], SinkWriter],
    ) -> None:
        self.connector_type = connector_type  # type: ignore[misc]
        self.options = options
        self.writer = writer
        self.name: str | None = None
        self.parallelism: int | None = None

    def create_writer(self, ctx: ConnectorContext) -> SinkWriter:
        return self.writer(self.options, ctx)


async def publish_with_retries(
    ctx: ConnectorContext,
    publish: Callable[[], Awaitable[None]],
    *,
    connector: str,
    where: str,
    messages: int,
    reconnect: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Publish one batch of a message sink; after a failure publish it again (at
    least once), reconnecting first when ``reconnect`` is given, ``PUBLISH_ATTEMPTS``
    times in all; then a ConnectorError naming the connector and ``where``."""

    async def again(_: BaseException) -> None:
        assert reconnect is not None
        await reconnect()

    def give_up(exc: BaseException, retries: int) -> ConnectorError:
        return ConnectorError(
            f"{connector} sink: publishing to {where} failed after {retries + 1} attempts: {exc!r}"
        )

    await retry(
        ctx,
        publish,
        what=f"publishing {messages} messages" + (" (then reconnecting)" if reconnect else ""),
        retries=PUBLISH_ATTEMPTS - 1,
        first_delay=0.2,
        before_retry=None if reconnect is None else again,
        give_up=give_up,
        counter="publish_retries",
    )
