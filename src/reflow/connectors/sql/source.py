"""Reading a table or query in chunks, optionally as parallel key ranges."""

from __future__ import annotations

import decimal
import itertools
import logging
import re
from typing import Any

from reflow.connectors.base import ConnectorContext, SourceReader
from reflow.connectors.sql.engine import connect_engine, split_table_name
from reflow.errors import ConnectorError

__all__ = ["SqlReader", "partition_ranges"]

logger = logging.getLogger(__name__)

_QMARK = re.compile(r"\?")


Number = int | float
Bound = Number | None


def partition_ranges(lower: Number, upper: Number, count: int) -> list[tuple[Bound, Bound]]:
    """Up to ``count`` half-open ranges ``[lo, hi)`` that split the whole number line.

    ``lower`` and ``upper`` only place the boundaries (as Spark's JDBC bounds do):
    the first range has no lower end and the last no upper end (``None``), so every
    non-NULL value falls in exactly one range, inside the bounds or not. Integer
    bounds give integer boundaries; any float gives float ones.
    """
    if upper < lower:
        lower, upper = upper, lower
    if isinstance(lower, int) and isinstance(upper, int):
        span = upper - lower + 1
        step: Number = -(-span // max(1, min(count, span)))
    else:
        step = (upper - lower) / max(1, count)
    cuts: list[Number] = []
    for i in range(1, count):
        cut = lower + i * step
        if step == 0 or cut > upper:
            break
        cuts.append(cut)
    edges: list[Bound] = [None, *cuts, None]
    return list(itertools.pairwise(edges))


def _numeric(value: Any) -> Number | None:
    """``value`` as an int or float (Decimal included), or None if it is not a number."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return None


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
        opts = self.options
        preparer = self.engine.dialect.identifier_preparer
        if opts.partition_column:
            return f" ORDER BY {preparer.quote(opts.partition_column)}"
        return self._pk_order()

    def _pk_order(self) -> str:
        """ORDER BY the table's primary key (a stable order to resume by row count)."""
        from sqlalchemy import inspect

        opts = self.options
        preparer = self.engine.dialect.identifier_preparer
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
        lower, upper = _numeric(opts.lower_bound), _numeric(opts.upper_bound)
        if lower is None or upper is None:
            with self.engine.connect() as conn:
                row = conn.execute(
                    text(f"SELECT MIN({column}), MAX({column}) FROM ({base}) AS reflow_b"), params
                ).one()
            lower = _numeric(row[0]) if lower is None else lower
            upper = _numeric(row[1]) if upper is None else upper
            if (lower is None or upper is None) and row[0] is not None:
                logger.warning(
                    "sql source %s: partition_column %s holds %s values, not numbers: "
                    "one subtask reads every row",
                    ctx.step_id,
                    opts.partition_column,
                    type(row[0]).__name__,
                    extra={"job_id": ctx.job_id, "step_id": ctx.step_id},
                )
        count = opts.num_partitions or ctx.parallelism
        ranges = [] if lower is None or upper is None else partition_ranges(lower, upper, count)
        statements: list[tuple[str, dict[str, Any]]] = []
        for lo, hi in ranges:
            where = [f"{column} >= :reflow_lo"] if lo is not None else []
            where += [f"{column} < :reflow_hi"] if hi is not None else []
            condition = " AND ".join(where) or f"{column} IS NOT NULL"
            bounds = {"reflow_lo": lo, "reflow_hi": hi}
            statements.append(
                (
                    f"SELECT * FROM ({base}) AS reflow_p WHERE {condition} ORDER BY {column}",
                    {k: v for k, v in bounds.items() if v is not None},
                )
            )
        if ranges:  # NULL keys: a range of their own
            statements.append(
                (f"SELECT * FROM ({base}) AS reflow_p WHERE {column} IS NULL{self._pk_order()}", {})
            )
        else:  # an empty table, or keys that are not numbers: one subtask reads it all
            statements.append((base + self._pk_order(), {}))
        for sql, bounds in statements[ctx.subtask_index :: ctx.parallelism]:
            self.queries.append((text(sql), {**params, **bounds}))

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
