"""The ``mongodb`` connector: collection scans and change streams in, bulk writes out.

Built on pymongo (its synchronous client, run in the executor's I/O pool), for
MongoDB 4.2 and newer: change streams need a replica set or a sharded cluster,
transactions (the exactly-once sink's commit) too. The tests run against
SecantusDB, a MongoDB wire-protocol server reporting version 8.2 (docs/connectors.md).

* Source, ``mode: scan``: the collection (optionally filtered and projected) in
  ``_id`` order; the position is the last ``_id`` returned, so a restart goes on
  after it. At parallelism N the ``_id`` space is cut into N ranges, read by N
  subtasks; the cuts are agreed on through the database (``reflow_scan_splits``),
  so every subtask reads with the same ones.
* Source, ``mode: changes``: a change stream (``watch``) on the collection; each
  event becomes a record ``{operation, _id, document, updated_fields,
  removed_fields, cluster_time, namespace}``; the position is the stream's resume
  token; ``start_at`` starts at an operation time.
* Sink: ``insert``, ``upsert`` by key fields (``$set``) or ``replace`` by key
  fields, as bulk writes of ``batch_size`` (ordered or not), retried with backoff
  on connection errors. ``delivery: exactly-once`` writes each checkpoint's
  records when the checkpoint completes: in a transaction with a commit marker
  (collection ``reflow_sink_commits``) where the server has transactions,
  otherwise by idempotent upserts or replaces.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from reflow.connectors.base import (
    Boundedness,
    ConnectorContext,
    Sink,
    SinkWriter,
    Source,
    SourceReader,
)
from reflow.connectors.options import ConnectorOptions, Duration, OptionsConnector

__all__ = [
    "MongoConnector",
    "MongoSink",
    "MongoSinkOptions",
    "MongoSource",
    "MongoSourceOptions",
]

# Operators that run JavaScript on the server: a job file or an API submission must
# not be able to execute code there through a filter or a pipeline.
_SERVER_CODE = frozenset({"$where", "$function", "$accumulator"})


def refuse_server_code(value: Any, option: str) -> Any:
    """``value`` unchanged, or ValueError if it uses an operator that runs JavaScript."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key in _SERVER_CODE:
                raise ValueError(
                    f"{option} uses {key}, which runs JavaScript on the server; "
                    "express the condition with query operators instead"
                )
            refuse_server_code(item, option)
    elif isinstance(value, list | tuple):
        for item in value:
            refuse_server_code(item, option)
    return value


class _MongoOptions(ConnectorOptions):
    secret_fields: ClassVar[frozenset[str]] = frozenset({"url"})

    url: str = Field(
        "mongodb://127.0.0.1:27017",
        description="mongodb:// or mongodb+srv:// connection string (use ${ENV} for passwords)",
    )
    database: str = Field(description="database name")
    collection: str = Field(description="collection name")
    connect_timeout: Duration = Field(
        10.0, gt=0, description="how long to look for a reachable server before failing"
    )

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if not value.startswith(("mongodb://", "mongodb+srv://")):
            raise ValueError("must start with mongodb:// or mongodb+srv://")
        return value


class MongoSourceOptions(_MongoOptions):
    mode: Literal["scan", "changes"] = Field(
        "scan", description="scan: read the collection; changes: follow its change stream"
    )
    filter: dict[str, Any] | None = Field(None, description="scan: query filter document")
    projection: dict[str, Any] | None = Field(None, description="scan: fields to return")
    pipeline: list[dict[str, Any]] | None = Field(
        None, description="changes: aggregation stages applied to the events ($match, ...)"
    )
    batch_size: int = Field(1000, gt=0, description="documents or events per read")
    full_document: Literal["updateLookup", "whenAvailable", "required", "default"] = Field(
        "updateLookup",
        description="changes: updateLookup puts the current document in update events",
    )
    start_at: datetime | float | None = Field(
        None,
        description="changes: operation time to start at (ISO date-time or epoch seconds); "
        "default: now",
    )
    max_await: Duration = Field(
        0.5, gt=0, description="changes: how long one poll waits for new events"
    )
    stop_when_idle: Duration | None = Field(
        None, description="changes: end after this long without an event (a bounded read)"
    )

    @field_validator("filter", "pipeline")
    @classmethod
    def _no_server_code(cls, value: Any, info: ValidationInfo) -> Any:
        return refuse_server_code(value, repr(info.field_name))

    @model_validator(mode="after")
    def _per_mode(self) -> MongoSourceOptions:
        scan_only = [n for n in ("filter", "projection") if getattr(self, n) is not None]
        change_only = [
            n for n in ("pipeline", "start_at", "stop_when_idle") if getattr(self, n) is not None
        ]
        if self.mode == "changes" and scan_only:
            raise ValueError(f"{', '.join(scan_only)} apply to mode 'scan'; use 'pipeline'")
        if self.mode == "scan" and change_only:
            raise ValueError(f"{', '.join(change_only)} apply to mode 'changes'")
        return self


class MongoSinkOptions(_MongoOptions):
    mode: Literal["insert", "upsert", "replace"] = Field(
        "insert",
        description="insert; upsert: $set the record's fields on the document with its key; "
        "replace: replace that document (both insert it if missing)",
    )
    key: list[str] = Field(
        default_factory=lambda: ["_id"], description="upsert/replace: fields naming a document"
    )
    ordered: bool = Field(
        True, description="ordered bulk writes (stop at the first error) or unordered"
    )
    batch_size: int = Field(1000, gt=0, description="operations per bulk write")
    flush_interval: Duration = Field(5.0, description="write a partial batch after this long")
    max_retries: int = Field(5, ge=0, description="retries of a batch on connection errors")
    retry_backoff: Duration = Field(0.5, gt=0, description="first wait before a retry; doubles")
    delivery: Literal["at-least-once", "exactly-once"] = Field(
        "at-least-once",
        description="exactly-once: each checkpoint's records are written when it completes, "
        "in a transaction with a commit marker (needs a replica set), or else by idempotent "
        "upsert/replace",
    )
    transactions: Literal["auto", "on", "off"] = Field(
        "auto",
        description="exactly-once: commit in transactions (auto: when the server has them)",
    )

    @field_validator("key", mode="before")
    @classmethod
    def _key_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _key(self) -> MongoSinkOptions:
        if not self.key:
            raise ValueError("'key' needs at least one field")
        return self


class MongoSource(Source):
    connector_type: ClassVar[str] = "mongodb"

    def __init__(self, options: MongoSourceOptions) -> None:
        self.options = options
        self.name: str | None = None
        self.parallelism: int | None = None

    @property
    def boundedness(self) -> Boundedness:
        if self.options.mode == "changes" and self.options.stop_when_idle is None:
            return Boundedness.UNBOUNDED
        return Boundedness.BOUNDED

    @property
    def is_parallel(self) -> bool:
        return self.options.mode == "scan"

    def create_reader(self, ctx: ConnectorContext) -> SourceReader:
        from reflow.connectors.mongodb.source import ChangeStreamReader, ScanReader

        if self.options.mode == "changes":
            return ChangeStreamReader(self.options, ctx)
        return ScanReader(self.options, ctx)


class MongoSink(Sink):
    connector_type: ClassVar[str] = "mongodb"
    supports_transaction: ClassVar[bool] = True

    def __init__(self, options: MongoSinkOptions) -> None:
        self.options = options
        self.name: str | None = None
        self.parallelism: int | None = None

    def create_writer(self, ctx: ConnectorContext) -> SinkWriter:
        from reflow.connectors.mongodb.sink import MongoWriter

        return MongoWriter(self.options, ctx)


class MongoConnector(OptionsConnector):
    """MongoDB through pymongo."""

    type = "mongodb"
    description = (
        "MongoDB through pymongo: sources scan a collection (parallel by _id ranges, "
        "resumable) or follow its change stream (resume token as the position); sinks "
        "insert, upsert or replace in bulk writes, exactly-once by transactions or "
        "idempotent upserts."
    )
    source_options = MongoSourceOptions
    sink_options = MongoSinkOptions

    def create_source(self, options: Mapping[str, Any]) -> Source:
        return MongoSource(self.parse(options, "source", MongoSourceOptions))

    def create_sink(self, options: Mapping[str, Any]) -> Sink:
        return MongoSink(self.parse(options, "sink", MongoSinkOptions))
