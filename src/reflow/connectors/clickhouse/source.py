"""Reading a table or a query in chunks, split among subtasks by a hash of a column."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from reflow.connectors.base import ConnectorContext, SourceReader
from reflow.connectors.clickhouse.client import ClickHouseClient, connect, quote, reason
from reflow.errors import ConnectorError

__all__ = ["ClickHouseReader"]


class ClickHouseReader(SourceReader):
    """Subtask ``i`` reads the parts ``p`` with ``p % parallelism == i`` of
    ``cityHash64(partition_column) % parts``; without a partition column, subtask 0
    reads everything. The position is (part, rows returned); with ``order_by`` a
    restart skips the rows already returned."""

    def __init__(self, options: Any, ctx: ConnectorContext) -> None:
        self.options = options
        self.ctx = ctx
        self.client: ClickHouseClient | None = None
        self.parts: list[str] = []
        self.part = 0
        self.rows = 0
        self.skip = 0
        self.rows_iter: Iterator[list[dict[str, Any]]] | None = None

    def snapshot(self) -> Any:
        return (self.part, self.rows) if self.options.order_by else None

    def restore(self, position: Any) -> None:
        self.part, self.skip = position
        self.rows = self.skip

    def _statements(self) -> list[str]:
        opts = self.options
        base = (
            f"SELECT * FROM {quote(opts.table)}" if opts.table else f"SELECT * FROM ({opts.query})"
        )
        order = (
            f" ORDER BY {', '.join(quote(c.strip()) for c in opts.order_by.split(','))}"
            if opts.order_by
            else ""
        )
        ctx = self.ctx
        if opts.partition_column is None:
            return [f"{base}{order}"] if ctx.subtask_index == 0 else []
        column = quote(opts.partition_column)
        parts = opts.num_partitions or ctx.parallelism
        return [
            f"SELECT * FROM ({base}) WHERE cityHash64({column}) % {parts} = {p}{order}"
            for p in range(ctx.subtask_index, parts, ctx.parallelism)
        ]

    async def open(self) -> None:
        self.client = await self.ctx.run_blocking(connect, self.options, "source")
        self.parts = self._statements()

    def _next(self) -> list[Any] | None:
        assert self.client is not None
        while self.part < len(self.parts):
            if self.rows_iter is None:
                self.rows_iter = self.client.stream(
                    self.parts[self.part], self.options.params, self.options.chunk_size
                )
            try:
                batch = next(self.rows_iter, None)
            except Exception as exc:
                raise ConnectorError(
                    f"clickhouse source: the query failed: {reason(exc)}. Check 'table'/'query' "
                    "and 'params'"
                ) from exc
            if batch is None:
                self.rows_iter = None
                self.part += 1
                self.rows = self.skip = 0
                continue
            if self.skip:
                dropped = min(self.skip, len(batch))
                self.skip -= dropped
                batch = batch[dropped:]
                if not batch:
                    continue
            self.rows += len(batch)
            return batch
        return None

    async def read_batch(self) -> list[Any] | None:
        return await self.ctx.run_blocking(self._next)

    async def health(self) -> tuple[bool, str] | None:
        from reflow.connectors.clickhouse.sink import probe

        return await probe(self.client, self.ctx)

    async def close(self) -> None:
        if self.client is not None:
            self.rows_iter = None
            await self.ctx.run_blocking(self.client.close)
            self.client = None
