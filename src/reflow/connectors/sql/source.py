"""Reading a table or query in chunks, optionally as parallel key ranges."""

from __future__ import annotations

import logging
import re
from typing import Any

from reflow.connectors.base import ConnectorContext, SourceReader
from reflow.connectors.sql.engine import connect_engine, split_table_name
from reflow.errors import ConnectorError

__all__ = ["SqlReader", "partition_ranges"]

logger = logging.getLogger(__name__)

_QMARK = re.compile(r"\?")


def partition_ranges(lower: int, upper: int, count: int) -> list[tuple[int, int, bool]]:
    """``count`` half-open ranges covering [lower, upper]; the last one is closed."""
    span = upper - lower + 1
    count = max(1, min(count, span))
    step = -(-span // count)
    ranges = []
    for i in range(count):
        lo = lower + i * step
        if lo > upper:
            break
        hi = min(lo + step, upper)
        ranges.append((lo, hi, hi == upper))
    return ranges


class SqlReader(SourceReader):
    def __init__(self, options: Any, ctx: ConnectorContext) -> None:
        self.options = options
        self.ctx = ctx
        self.engine: Any = None
        self.conn: Any = None
        self.result: Any = None
        self.queries: list[tuple[Any, dict[str, Any]]] = []
        self.query_cursor = -1
        self.rows_returned = 0
        self.resume: tuple[int, int] | None = None
        self.skip = 0

    def snapshot(self) -> Any:
        return (self.query_cursor, self.rows_returned)

    def restore(self, position: Any) -> None:
        self.resume = tuple(position)  # applied once the queries are planned in open()

    def _base(self) -> tuple[str, dict[str, Any]]:
        opts = self.options
        if opts.query is not None:
            params = opts.params or {}
            sql = opts.query.strip().rstrip(";")
            if isinstance(params, list):
                names = iter(range(len(params)))
                sql = _QMARK.sub(lambda _m: f":p{next(names)}", sql)
                params = {f"p{i}": v for i, v in enumerate(params)}
            return f"SELECT * FROM ({sql}) AS reflow_q", dict(params)
        preparer = self.engine.dialect.identifier_preparer
        schema, table = split_table_name(opts.table)
        name = preparer.quote(table)
        if schema:
            name = f"{preparer.quote_schema(schema)}.{name}"
        return f"SELECT * FROM {name}", {}

    def _order_by(self) -> str:
        from sqlalchemy import inspect

        opts = self.options
        preparer = self.engine.dialect.identifier_preparer
        if opts.partition_column:
            return f" ORDER BY {preparer.quote(opts.partition_column)}"
        if opts.table is not None:
            schema, table = split_table_name(opts.table)
            pk = inspect(self.engine).get_pk_constraint(table, schema=schema)
            columns = pk.get("constrained_columns") or []
            if columns:
                return " ORDER BY " + ", ".join(preparer.quote(c) for c in columns)
        return ""

    def _open_blocking(self) -> None:
        from sqlalchemy import text

        self.engine = connect_engine(self.options)
        opts = self.options
        base, params = self._base()
        ctx = self.ctx
        if opts.partition_column is None:
            if ctx.subtask_index == 0:
                self.queries = [(text(base + self._order_by()), params)]
            return
        column = self.engine.dialect.identifier_preparer.quote(opts.partition_column)
        lower, upper = opts.lower_bound, opts.upper_bound
        if lower is None or upper is None:
            with self.engine.connect() as conn:
                row = conn.execute(
                    text(f"SELECT MIN({column}), MAX({column}) FROM ({base}) AS reflow_b"), params
                ).one()
            lower = row[0] if lower is None else lower
            upper = row[1] if upper is None else upper
        if lower is None or upper is None:
            return  # empty input
        count = opts.num_partitions or ctx.parallelism
        mine = partition_ranges(int(lower), int(upper), count)[ctx.subtask_index :: ctx.parallelism]
        for lo, hi, closed in mine:
            op = "<=" if closed else "<"
            sql = (
                f"SELECT * FROM ({base}) AS reflow_p WHERE {column} >= :reflow_lo "
                f"AND {column} {op} :reflow_hi ORDER BY {column}"
            )
            self.queries.append((text(sql), {**params, "reflow_lo": lo, "reflow_hi": hi}))

    async def open(self) -> None:
        await self.ctx.run_blocking(self._open_blocking)
        if self.resume is not None and self.resume[0] >= 0:
            cursor, rows = self.resume
            self.queries = self.queries[cursor:]
            self.query_cursor = cursor - 1
            self.skip = rows

    def _fetch(self) -> list[Any] | None:
        while True:
            if self.result is None:
                if not self.queries:
                    return None
                statement, params = self.queries.pop(0)
                self.query_cursor += 1
                self.rows_returned = 0
                if self.conn is None:
                    self.conn = self.engine.connect().execution_options(
                        stream_results=True, yield_per=self.options.fetch_size
                    )
                try:
                    self.result = self.conn.execute(statement, params).mappings()
                except Exception as exc:
                    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
                    raise ConnectorError(
                        f"sql source: the query failed: {reason}. Check 'table'/'query' "
                        "and 'params'"
                    ) from exc
            rows = self.result.fetchmany(self.options.fetch_size)
            if rows and self.skip:
                dropped = rows[: self.skip]
                rows = rows[self.skip :]
                self.skip -= len(dropped)
                self.rows_returned += len(dropped)
                if not rows:
                    continue
            if rows:
                self.rows_returned += len(rows)
                return [dict(row) for row in rows]
            self.result.close()
            self.result = None

    async def read_batch(self) -> list[Any] | None:
        return await self.ctx.run_blocking(self._fetch)

    def _close_blocking(self) -> None:
        if self.result is not None:
            self.result.close()
        if self.conn is not None:
            self.conn.close()
        if self.engine is not None:
            self.engine.dispose()

    async def close(self) -> None:
        await self.ctx.run_blocking(self._close_blocking)
