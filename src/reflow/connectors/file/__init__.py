"""The ``file`` connector: CSV, JSON lines, text and Parquet files (seed §3.6.2, §3.8.2, §9.2)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from reflow.connectors.base import ConnectorContext, Sink, SinkWriter, Source, SourceReader
from reflow.connectors.file.formats import FORMATS, infer_format
from reflow.connectors.file.reader import list_files, make_reader, plan_splits
from reflow.connectors.file.storage import Storage, storage_for
from reflow.connectors.file.writer import FileWriter
from reflow.connectors.options import ConnectorOptions, Duration, OptionsConnector
from reflow.connectors.typed import row_type
from reflow.errors import ConnectorConfigError

__all__ = ["FileConnector", "FileSink", "FileSinkOptions", "FileSource", "FileSourceOptions"]

FormatName = Literal["json", "csv", "text", "parquet"]
ColumnType = Literal["int", "float", "str", "bool"]


class _FileOptions(ConnectorOptions):
    secret_fields: ClassVar[frozenset[str]] = frozenset({"s3_secret_key"})

    path: str = Field(description="file path; sources also take a folder or a glob")
    format: FormatName | None = Field(
        None, description="json (JSON lines), csv, text or parquet; default: from the extension"
    )
    encoding: str = Field("utf-8", description="text encoding of csv, json and text files")
    csv_delimiter: str = Field(",", description="CSV field delimiter")
    csv_header: bool = Field(
        True, description="CSV files have (sources) / get (sinks) a header row"
    )
    columns: list[str] | None = Field(
        None, description="CSV column names (source without header; sink column order)"
    )
    s3_endpoint: str | None = Field(
        None,
        description="s3:// paths: an S3-compatible server, e.g. http://127.0.0.1:9000 "
        "(default: AWS_ENDPOINT_URL, else AWS)",
    )
    s3_region: str | None = Field(None, description="s3:// paths: the region (default: AWS_REGION)")
    s3_access_key: str | None = Field(
        None, description="s3:// paths: access key (default: the AWS credential chain)"
    )
    s3_secret_key: str | None = Field(None, description="s3:// paths: secret key (use ${ENV})")

    @model_validator(mode="after")
    def _format_known(self) -> _FileOptions:
        if self.format is None and infer_format(self.path) is None:
            raise ValueError(
                f"cannot tell the format of {self.path!r} from its extension; set format to one "
                f"of {', '.join(FORMATS)}"
            )
        return self

    @property
    def resolved_format(self) -> str:
        return self.format or infer_format(self.path) or "json"


class FileSourceOptions(_FileOptions):
    types: dict[str, ColumnType] | None = Field(
        None, description="CSV column types, e.g. {price: float, id: int}; others stay strings"
    )
    split_files: bool = Field(
        True, description="let several readers share one JSON-lines or text file by byte ranges"
    )
    schema_: dict[str, str] | None = Field(
        None,
        alias="schema",
        description="JSON lines: {column: BIGINT|DOUBLE|VARCHAR|BOOLEAN|TIMESTAMP|ANY} decodes "
        "each record straight into a typed row of these columns (others are skipped); a "
        "value of another type goes to the error policy",
    )

    @field_validator("schema_")
    @classmethod
    def _known_types(cls, schema: dict[str, str] | None) -> dict[str, str] | None:
        if schema is not None:
            row_type(schema)  # raises ValueError naming the column and the types
        return schema


class FileSinkOptions(_FileOptions):
    mode: Literal["overwrite", "append", "error"] = Field(
        "overwrite", description="what to do with an existing file"
    )
    rolling_max_records: int | None = Field(
        None, gt=0, description="start a new file after this many records"
    )
    rolling_max_bytes: int | None = Field(
        None, gt=0, description="start a new file after about this many bytes"
    )
    parquet_row_group_size: int = Field(65536, gt=0, description="rows per Parquet row group")
    flush_interval: Duration = Field(
        1.0, description="longest time written records wait in memory before reaching the file"
    )
    delivery: Literal["at-least-once", "exactly-once"] = Field(
        "at-least-once",
        description="exactly-once: files appear (renamed from hidden in-progress files) "
        "when the checkpoint after their records completes; needs checkpointing",
    )


class FileSource(Source):
    connector_type: ClassVar[str] = "file"

    def __init__(self, options: FileSourceOptions) -> None:
        self.options = options
        self.format = options.resolved_format
        self.name: str | None = None
        self.parallelism: int | None = None

    @property
    def is_parallel(self) -> bool:
        return True

    def create_reader(self, ctx: ConnectorContext) -> SourceReader:
        storage = storage_for(self.options.path, self.options)
        if storage.remote:  # listing is network I/O: done in open(), in the I/O pool
            return _PlannedReader(self, storage, ctx)
        return self._plan(storage, ctx)

    def _plan(self, storage: Storage, ctx: ConnectorContext) -> SourceReader:
        files = list_files(self.options.path, storage)
        splittable = self.format in ("json", "text") and self.options.split_files
        splits = plan_splits(files, ctx.parallelism, splittable, storage)
        mine = splits[ctx.subtask_index :: ctx.parallelism]
        return make_reader(self.format, mine, self.options, ctx, storage)


class _PlannedReader(SourceReader):
    """Lists the objects and plans the splits in ``open`` (off the event loop), then
    hands every call to the reader of the planned splits."""

    def __init__(self, source: FileSource, storage: Storage, ctx: ConnectorContext) -> None:
        self.source = source
        self.storage = storage
        self.ctx = ctx
        self.reader: SourceReader | None = None
        self.position: Any = None

    def restore(self, position: Any) -> None:
        self.position = position

    async def open(self) -> None:
        self.reader = await self.ctx.run_blocking(self.source._plan, self.storage, self.ctx)
        if self.position is not None:
            self.reader.restore(self.position)
        await self.reader.open()

    async def read_batch(self) -> list[Any] | None:
        assert self.reader is not None
        return await self.reader.read_batch()

    def snapshot(self) -> Any:
        return self.position if self.reader is None else self.reader.snapshot()

    async def close(self) -> None:
        if self.reader is not None:
            await self.reader.close()


class FileSink(Sink):
    connector_type: ClassVar[str] = "file"

    def __init__(self, options: FileSinkOptions) -> None:
        self.options = options
        self.format = options.resolved_format
        self.name: str | None = None
        self.parallelism: int | None = None

    def create_writer(self, ctx: ConnectorContext) -> SinkWriter:
        return FileWriter(self.options, self.format, ctx)

    def written_target(self) -> str | None:
        return written_path(self.options.path)


def written_path(path: str) -> str:
    """A sink's path as one name for one place: two sinks of one path (template)
    would write the same files."""
    return path if "://" in path else os.path.normpath(os.path.abspath(path))


class FileConnector(OptionsConnector):
    """Local files: a path, a folder or a glob; JSON lines, CSV, text or Parquet."""

    type = "file"
    description = (
        "Local files: CSV, JSON lines, text and Parquet. Sources read a path, a folder or a "
        "glob, in parallel; sinks write rolling files from a path template with {date}, "
        "{datetime}, {subtask} and {part}."
    )
    source_options = FileSourceOptions
    sink_options = FileSinkOptions

    def create_source(self, options: Mapping[str, Any]) -> Source:
        return FileSource(self.parse(options, "source", FileSourceOptions))

    def written_target(self, options: Mapping[str, Any]) -> str | None:
        path = options.get("path")
        return written_path(str(path)) if path else None

    def create_sink(self, options: Mapping[str, Any]) -> Sink:
        parsed = self.parse(options, "sink", FileSinkOptions)
        if parsed.resolved_format == "parquet" and parsed.mode == "append":
            raise ConnectorConfigError("file", "sink: Parquet files cannot be appended to")
        if parsed.path.startswith("s3://") and parsed.mode == "append":
            raise ConnectorConfigError(
                "file", "sink: S3 objects cannot be appended to; use mode: overwrite with rolling"
            )
        return FileSink(parsed)
