"""What the message-system connectors (kafka, rabbitmq, nats, redis) share:
payload formats, URLs with their credentials hidden, the idle clock of bounded
reads, and the source and sink specs."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any, Literal

import orjson

from reflow.connectors.base import (
    Boundedness,
    ConnectorContext,
    Sink,
    SinkWriter,
    Source,
    SourceReader,
)

__all__ = [
    "Format",
    "IdleClock",
    "MessageSink",
    "MessageSource",
    "decode_payload",
    "encode_payload",
    "masked_url",
]

Format = Literal["json", "text", "raw"]
"""Message bodies: ``json`` (records are JSON values), ``text`` (str), ``raw`` (bytes)."""


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
    """``scheme://user:password@host/...`` with the credentials replaced by ``***``."""
    return re.sub(r"^([a-z][a-z0-9+.-]*://)[^@/]*@", r"\1***@", url, flags=re.IGNORECASE)


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
    ) -> None:
        self.connector_type = connector_type  # type: ignore[misc]
        self.options = options
        self.reader = reader
        self._bounded = bounded
        self.name: str | None = None
        self.parallelism: int | None = None

    @property
    def boundedness(self) -> Boundedness:
        return Boundedness.BOUNDED if self._bounded else Boundedness.UNBOUNDED

    @property
    def is_parallel(self) -> bool:
        return True

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
