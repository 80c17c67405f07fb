"""The ``sql`` connector (alias ``jdbc``): relational databases through SQLAlchemy (seed §3.9.4).

SQLite is the embedded default; PostgreSQL (psycopg) and MariaDB/MySQL
(PyMySQL) are tested against real servers. The seed's ``jdbc:`` URLs are
translated: ``jdbc:mysql://h/db`` becomes ``mysql+pymysql://h/db``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from reflow.connectors.base import ConnectorContext, Sink, SinkWriter, Source, SourceReader
from reflow.connectors.options import ConnectorOptions, Duration, OptionsConnector
from reflow.connectors.sql.engine import normalize_url, with_driver

__all__ = ["SqlConnector", "SqlSink", "SqlSinkOptions", "SqlSource", "SqlSourceOptions"]


class SqlPoolOptions(ConnectorOptions):
    """``pool:`` (seed §3.9.4): the connection pool of each subtask."""

    max_size: int | None = Field(None, gt=0, description="connections kept open")
    max_idle_time: Duration | None = Field(
        None, description="connections idle longer than this are replaced"
    )


class _SqlOptions(ConnectorOptions):
    secret_fields: ClassVar[frozenset[str]] = frozenset({"url", "password"})

    url: str = Field(
        description="SQLAlchemy or jdbc: URL, e.g. sqlite:///out.db, "
        "postgresql://user@host/db, jdbc:mysql://host:3306/db"
    )
    username: str | None = Field(None, description="user name, if not in the URL")
    password: str | None = Field(None, description="password, if not in the URL (use ${ENV})")
    pool_size: int = Field(5, gt=0, description="connections kept open per subtask")
    pool: SqlPoolOptions | None = Field(
        None, description="maxSize (sets pool_size) and maxIdleTime of the connection pool"
    )
    driver: str | None = Field(
        None,
        description="the Python DB-API driver (pymysql, psycopg, ...); a JDBC driver class "
        "(com.mysql.cj.jdbc.Driver, org.postgresql.Driver) names the matching one",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return normalize_url(value)

    @model_validator(mode="after")
    def _driver_and_pool(self) -> _SqlOptions:
        if self.driver is not None:
            object.__setattr__(self, "url", with_driver(self.url, self.driver))
        if self.pool is not None and self.pool.max_size is not None:
            object.__setattr__(self, "pool_size", self.pool.max_size)
        return self

    @property
    def pool_recycle(self) -> float | None:
        return None if self.pool is None else self.pool.max_idle_time


class SqlSourceOptions(_SqlOptions):
    table: str | None = Field(None, description="table to read (schema.table allowed)")
    query: str | None = Field(None, description="SELECT to read; :name or ? parameters")
    params: dict[str, Any] | list[Any] | None = Field(None, description="query parameters")
    fetch_size: int = Field(1000, gt=0, description="rows fetched per round trip")
    partition_column: str | None = Field(
        None, description="numeric column to split into ranges read in parallel"
    )
    num_partitions: int | None = Field(
        None, gt=0, description="ranges to split into (default: the source's parallelism)"
    )
    lower_bound: int | float | None = Field(
        None, description="where the ranges start (default: MIN); rows below are read too"
    )
    upper_bound: int | float | None = Field(
        None, description="where the ranges end (default: MAX); rows above are read too"
    )

    @model_validator(mode="after")
    def _one_of(self) -> SqlSourceOptions:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of 'table' or 'query'")
        return self


class SqlSinkOptions(_SqlOptions):
    table: str = Field(description="table to write (schema.table allowed)")
    batch_size: int = Field(100, gt=0, description="rows per INSERT round trip")
    flush_interval: Duration = Field(5.0, description="write a partial batch after this long")
    mode: Literal["insert", "upsert"] = Field("insert", description="plain insert or upsert")
    key: list[str] | None = Field(None, description="key columns of an upsert")
    create_table: bool = Field(
        False, description="create the table from the first records if it does not exist"
    )
    columns: list[str] | None = Field(
        None, description="column names for records that are tuples or lists"
    )
    max_retries: int = Field(3, ge=0, description="retries of a batch on connection errors")
    delivery: Literal["at-least-once", "exactly-once"] = Field(
        "at-least-once",
        description="exactly-once: the rows of each checkpoint are written in one transaction "
        "with a commit marker (table reflow_sink_commits) when the checkpoint completes",
    )

    @field_validator("key", mode="before")
    @classmethod
    def _key_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _upsert_key(self) -> SqlSinkOptions:
        if self.mode == "upsert" and not self.key:
            raise ValueError("mode 'upsert' needs 'key': the column(s) that identify a row")
        return self


class SqlSource(Source):
    connector_type: ClassVar[str] = "sql"

    def __init__(self, options: SqlSourceOptions) -> None:
        self.options = options
        self.name: str | None = None
        self.parallelism: int | None = None

    @property
    def is_parallel(self) -> bool:
        return self.options.partition_column is not None

    def create_reader(self, ctx: ConnectorContext) -> SourceReader:
        from reflow.connectors.sql.source import SqlReader

        return SqlReader(self.options, ctx)


class SqlSink(Sink):
    connector_type: ClassVar[str] = "sql"
    supports_transaction: ClassVar[bool] = True

    def __init__(self, options: SqlSinkOptions) -> None:
        self.options = options
        self.name: str | None = None
        self.parallelism: int | None = None

    def create_writer(self, ctx: ConnectorContext) -> SinkWriter:
        from reflow.connectors.sql.sink import SqlWriter

        return SqlWriter(self.options, ctx)


class SqlConnector(OptionsConnector):
    """SQL databases through SQLAlchemy."""

    type = "sql"
    description = (
        "Relational databases through SQLAlchemy: SQLite (embedded default), PostgreSQL, "
        "MariaDB/MySQL. Sources read a table or a query in chunks, optionally split into "
        "parallel ranges; sinks insert or upsert in batches, optionally creating the table."
    )
    source_options = SqlSourceOptions
    sink_options = SqlSinkOptions

    def create_source(self, options: Mapping[str, Any]) -> Source:
        return SqlSource(self.parse(options, "source", SqlSourceOptions))

    def create_sink(self, options: Mapping[str, Any]) -> Sink:
        return SqlSink(self.parse(options, "sink", SqlSinkOptions))
