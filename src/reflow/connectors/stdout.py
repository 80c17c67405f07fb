"""The ``stdout`` connector: print records, one per line (JSON for dicts and lists)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import orjson
from pydantic import Field

from reflow.connectors.base import ConnectorContext, Sink, SinkWriter, Source
from reflow.connectors.options import ConnectorOptions, OptionsConnector

__all__ = ["StdoutConnector", "StdoutOptions", "StdoutSink"]


class StdoutOptions(ConnectorOptions):
    format: Literal["json", "text"] = Field(
        "json", description="json prints JSON, text prints str(record)"
    )
    prefix: str = Field("", description="text put before every line")


def _line(record: Any, fmt: str) -> str:
    if fmt == "json":
        try:
            return orjson.dumps(record, default=str).decode()
        except TypeError:
            return str(record)
    return str(record)


class _StdoutWriter(SinkWriter):
    def __init__(self, options: StdoutOptions, ctx: ConnectorContext) -> None:
        self.options = options
        self.ctx = ctx

    def _print(self, text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    async def write(self, batch: list[Any]) -> None:
        prefix, fmt = self.options.prefix, self.options.format
        text = "".join(f"{prefix}{_line(r, fmt)}\n" for r in batch)
        await self.ctx.run_blocking(self._print, text)


class StdoutSink(Sink):
    connector_type: ClassVar[str] = "stdout"

    def __init__(self, options: StdoutOptions) -> None:
        self.options = options
        self.name: str | None = None
        self.parallelism: int | None = None

    def create_writer(self, ctx: ConnectorContext) -> SinkWriter:
        return _StdoutWriter(self.options, ctx)


class StdoutConnector(OptionsConnector):
    type = "stdout"
    description = "Standard output: one line per record."
    sink_options = StdoutOptions

    def create_source(self, options: Mapping[str, Any]) -> Source:
        self._model("source")  # raises: stdout has no source
        raise AssertionError("unreachable")

    def create_sink(self, options: Mapping[str, Any]) -> Sink:
        return StdoutSink(self.parse(options, "sink", StdoutOptions))
