"""gzip-compressed JSON lines: a sample third-party reflow connector."""

from __future__ import annotations

import gzip
from collections.abc import Mapping
from typing import IO, Any

import orjson
from pydantic import Field

from reflow.connectors.base import ConnectorContext, Sink, SinkWriter, Source, SourceReader
from reflow.connectors.options import ConnectorOptions, OptionsConnector

__all__ = ["GzipJsonLinesConnector"]


class GzipOptions(ConnectorOptions):
    path: str = Field(description="the .jsonl.gz file to read or write")
    records_per_read: int = Field(500, gt=0, description="records per batch the source returns")
    level: int = Field(6, ge=1, le=9, description="sink: gzip compression level")


class _Reader(SourceReader):
    def __init__(self, options: GzipOptions, ctx: ConnectorContext) -> None:
        self.options = options
        self.ctx = ctx
        self.file: IO[bytes] | None = None
        self.line = 0  # lines consumed: the checkpoint position
        self.skip = 0

    def snapshot(self) -> Any:
        return self.line

    def restore(self, position: Any) -> None:
        self.skip = int(position)

    async def open(self) -> None:
        self.file = await self.ctx.run_blocking(gzip.open, self.options.path, "rb")

    def _read(self) -> list[bytes]:
        assert self.file is not None
        while self.skip:
            self.file.readline()
            self.skip -= 1
            self.line += 1
        lines = []
        for _ in range(self.options.records_per_read):
            line = self.file.readline()
            if not line:
                break
            lines.append(line)
        return lines

    async def read_batch(self) -> list[Any] | None:
        lines = await self.ctx.run_blocking(self._read)
        if not lines:
            return None
        records = []
        for line in lines:
            self.line += 1
            try:
                records.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                self.ctx.reject(line, ValueError(f"{self.options.path}:{self.line}: {exc}"))
        return records

    async def close(self) -> None:
        if self.file is not None:
            await self.ctx.run_blocking(self.file.close)


class _Writer(SinkWriter):
    def __init__(self, options: GzipOptions, ctx: ConnectorContext) -> None:
        self.options = options
        self.ctx = ctx
        self.file: IO[bytes] | None = None

    async def open(self) -> None:
        self.file = await self.ctx.run_blocking(
            gzip.open, self.options.path, "wb", self.options.level
        )

    async def write(self, batch: list[Any]) -> None:
        assert self.file is not None
        data = b"".join(orjson.dumps(r, default=str) + b"\n" for r in batch)
        await self.ctx.run_blocking(self.file.write, data)

    async def flush(self) -> None:
        if self.file is not None:
            await self.ctx.run_blocking(self.file.flush)

    async def close(self) -> None:
        if self.file is not None:
            await self.ctx.run_blocking(self.file.close)


class _Source(Source):
    connector_type = "gzjsonl"

    def __init__(self, options: GzipOptions) -> None:
        self.options = options

    def create_reader(self, ctx: ConnectorContext) -> SourceReader:
        return _Reader(self.options, ctx)


class _Sink(Sink):
    connector_type = "gzjsonl"

    def __init__(self, options: GzipOptions) -> None:
        self.options = options
        self.parallelism = 1  # one file, one writer

    def create_writer(self, ctx: ConnectorContext) -> SinkWriter:
        return _Writer(self.options, ctx)


class GzipJsonLinesConnector(OptionsConnector):
    type = "gzjsonl"
    description = "gzip-compressed JSON lines (a sample third-party connector)."
    source_options = GzipOptions
    sink_options = GzipOptions

    def create_source(self, options: Mapping[str, Any]) -> Source:
        return _Source(self.parse(options, "source", GzipOptions))

    def create_sink(self, options: Mapping[str, Any]) -> Sink:
        return _Sink(self.parse(options, "sink", GzipOptions))
