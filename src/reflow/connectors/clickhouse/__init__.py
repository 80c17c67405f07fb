"""The ``clickhouse`` connector: columnar batch inserts and chunked, parallel queries.

Two ways to reach ClickHouse, by the ``url``'s scheme:

* ``clickhouse://user:password@host:9000/db`` (``clickhouses://`` for TLS): a server,
  over the native protocol with clickhouse-driver; inserts go as columnar Native
  blocks.
* ``chdb:///path/to/folder`` (or ``chdb://`` in memory): the ClickHouse engine inside
  the process (chdb), for local analytics without a server; inserts go as Arrow.

Exactly-once sinks write each checkpoint's records when it completes, as blocks
carrying ``insert_deduplication_token`` ``job/step/subtask/checkpoint/block``: a
block written again after a crash is dropped by the server (ClickHouse 22.2 and
newer; a replicated table, or a MergeTree with ``non_replicated_deduplication_window``).
Older servers have no tokens: exactly-once then needs a ReplacingMergeTree (or
another collapsing engine) table, where a block written twice collapses on merge
and reads with FINAL see it once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from reflow.connectors.base import ConnectorContext, Sink, SinkWriter, Source, SourceReader
from reflow.connectors.options import ConnectorOptions, Duration, OptionsConnector

__all__ = [
    "ClickHouseConnector",
    "ClickHouseSink",
    "ClickHouseSinkOptions",
    "ClickHouseSource",
    "ClickHouseSourceOptions",
]

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _identifiers(value: str | None, option: str) -> str | None:
    """``a, b`` column lists: names only (they are quoted into the statements)."""
    if value is None:
        return None
    names = [part.strip() for part in value.split(",")]
    bad = [n for n in names if not _IDENTIFIER.match(n)]
    if bad:
        raise ValueError(f"{option} takes column names (letters, digits, _), got {bad}")
    return ", ".join(names)


class _ClickHouseOptions(ConnectorOptions):
    secret_fields: ClassVar[frozenset[str]] = frozenset({"url", "password"})

    url: str = Field(
        "clickhouse://default@127.0.0.1:9000",
        description="clickhouse://[user[:password]@]host[:port][/database] (native protocol; "
        "clickhouses:// for TLS), or chdb:///folder for the in-process engine",
    )
    password: str | None = Field(None, description="password, if not in the URL (use ${ENV})")
    database: str | None = Field(None, description="database (default: the URL's, or default)")
    connect_timeout: Duration = Field(5.0, gt=0, description="how long a connection may take")
    timeout: Duration = Field(60.0, gt=0, description="how long one query or insert may take")

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if not value.startswith(("clickhouse://", "clickhouses://", "chdb://")):
            raise ValueError("must start with clickhouse://, clickhouses:// or chdb://")
        return value


class ClickHouseSourceOptions(_ClickHouseOptions):
    table: str | None = Field(None, description="table to read")
    query: str | None = Field(
        None, description="SELECT to read; parameters as {name:Type} (ClickHouse's syntax)"
    )
    params: dict[str, Any] | None = Field(None, description="query parameters by name")
    chunk_size: int = Field(10_000, gt=0, description="rows per batch")
    order_by: str | None = Field(
        None,
        description="columns giving the rows a stable order: a restart then resumes after "
        "the last row read (without it, a restart reads the query again)",
    )
    partition_column: str | None = Field(
        None, description="column whose hash splits the rows among the source's subtasks"
    )
    num_partitions: int | None = Field(
        None, gt=0, description="parts to split into (default: the source's parallelism)"
    )

    @field_validator("order_by", "partition_column")
    @classmethod
    def _names(cls, value: str | None, info: Any) -> str | None:
        return _identifiers(value, repr(info.field_name))

    @model_validator(mode="after")
    def _one_of(self) -> ClickHouseSourceOptions:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of 'table' or 'query'")
        if self.params and self.query is None:
            raise ValueError("'params' go with 'query'")
        return self


class ClickHouseSinkOptions(_ClickHouseOptions):
    table: str = Field(description="table to insert into (it must exist)")
    batch_size: int = Field(10_000, gt=0, description="rows per insert (one block)")
    flush_interval: Duration = Field(1.0, description="insert a partial batch after this long")
    max_retries: int = Field(5, ge=0, description="retries of an insert on connection errors")
    retry_backoff: Duration = Field(0.5, gt=0, description="first wait before a retry; doubles")
    delivery: Literal["at-least-once", "exactly-once"] = Field(
        "at-least-once",
        description="exactly-once: each checkpoint's rows are inserted when it completes, "
        "deduplicated by insert_deduplication_token (ClickHouse 22.2+) or, on older servers, "
        "by a ReplacingMergeTree table",
    )


class ClickHouseSource(Source):
    connector_type: ClassVar[str] = "clickhouse"

    def __init__(self, options: ClickHouseSourceOptions) -> None:
        self.options = options
        self.name: str | None = None
        self.parallelism: int | None = None

    @property
    def is_parallel(self) -> bool:
        return self.options.partition_column is not None

    def create_reader(self, ctx: ConnectorContext) -> SourceReader:
        from reflow.connectors.clickhouse.source import ClickHouseReader

        return ClickHouseReader(self.options, ctx)


class ClickHouseSink(Sink):
    connector_type: ClassVar[str] = "clickhouse"
    supports_transaction: ClassVar[bool] = True

    def __init__(self, options: ClickHouseSinkOptions) -> None:
        self.options = options
        self.name: str | None = None
        self.parallelism: int | None = None

    def create_writer(self, ctx: ConnectorContext) -> SinkWriter:
        from reflow.connectors.clickhouse.sink import ClickHouseWriter

        return ClickHouseWriter(self.options, ctx)


class ClickHouseConnector(OptionsConnector):
    """ClickHouse over the native protocol, or in-process through chdb."""

    type = "clickhouse"
    description = (
        "ClickHouse over the native protocol (clickhouse-driver) or in-process (chdb): sinks "
        "insert columnar blocks, exactly-once by deduplication tokens or ReplacingMergeTree; "
        "sources read a table or a parameterised query in chunks, split by a hash among "
        "subtasks."
    )
    source_options = ClickHouseSourceOptions
    sink_options = ClickHouseSinkOptions

    def create_source(self, options: Mapping[str, Any]) -> Source:
        return ClickHouseSource(self.parse(options, "source", ClickHouseSourceOptions))

    def create_sink(self, options: Mapping[str, Any]) -> Sink:
        return ClickHouseSink(self.parse(options, "sink", ClickHouseSinkOptions))
