"""Queries planned onto reflow's own operators (so checkpoints, state, backpressure,
metrics, the UI and Ray work unchanged), the way Arroyo plans streaming SQL:

- a window table function in FROM (``TUMBLE``/``HOP``/``SESSION``) becomes the
  window spec, the rest of GROUP BY the key of a keyed exchange, and the
  aggregates one combined AggregateFunction: a window aggregate that emits when
  the watermark closes the window (late rows go to the ``late`` output);
- GROUP BY without a window becomes an updating keyed aggregate (final values at
  the end of a bounded input, every update on an unbounded one);
- WHERE and the projection before an aggregate, and HAVING and the projection
  after it, are each fused into one step.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal, TypeVar

import msgspec
from sqlglot import exp

from reflow.api.stream import Flow, Stream
from reflow.connectors.facade import Connectors
from reflow.connectors.file.formats import infer_format
from reflow.connectors.typed import SCHEMA_TYPES, row_type
from reflow.errors import ConfigError, ReflowError
from reflow.graph.durations import millis
from reflow.graph.job import ErrorPolicy, Job
from reflow.loading import resolve_callable
from reflow.operators.aggregations import Count
from reflow.operators.base import OperatorContext, OperatorLogic, OperatorSpec
from reflow.operators.facade import Operators
from reflow.operators.keyed import EarliestOp
from reflow.operators.over import OverAggregateOp
from reflow.operators.windows import Windows, WindowSpec
from reflow.state.functions import AggregateFunction
from reflow.table.expressions import (
    Compiled,
    SqlError,
    compile_expression,
    condition_of,
    conjuncts,
    fail,
    interval_ms,
    is_true,
)
from reflow.table.frames import SqlFrameAggregates
from reflow.table.functions import timestamp_ms
from reflow.table.kernels import Kernel, is_plain_identifier, select_kernel
from reflow.table.parser import Script, TableDef, parse_script

__all__ = ["SelectOp", "is_vectorized", "load_sql_file", "plan_script", "sql_job", "vectorized"]

WINDOW_COLUMNS = ("window_start", "window_end")

WINDOW_KINDS = {"TUMBLE", "HOP", "CUMULATE", "SESSION"}

F = TypeVar("F", bound=Callable[..., Any])


def vectorized(fn: F) -> F:
    """Mark a SQL function as vectorised: it is called once per batch with a
    ``pyarrow.Array`` per argument and returns an array (or list) of the results,
    one per row (as Flink's pandas UDFs)."""
    fn.__reflow_vectorized__ = True  # type: ignore[attr-defined]
    return fn


def is_vectorized(fn: Callable[..., Any]) -> bool:
    return getattr(fn, "__reflow_vectorized__", False) is True


ConnectorCheck = Callable[[str, dict[str, Any], str], None]
"""Checks a table's connector name, options and role (source/sink); raises ReflowError."""


@dataclass(frozen=True, slots=True)
class Relation:
    """What a FROM reads: a stream of rows (dicts) with known columns."""

    stream: Stream[Any]
    columns: tuple[str, ...]
    name: str
    """How errors name it: "table bids", "the subquery", ..."""
    watermark: tuple[str, int] | None
    """(time column, delay ms) declared for it, carried through projections."""
    types: dict[str, str]
    """Declared types of the columns that kept them (upper case)."""
    alias: str | None = None
    """The name FROM gives it (``bids b``: b; ``bids``: bids), for ``b.col``."""
    top1: str | None = None
    """The ROW_NUMBER() column of a deduplicating subquery: only its rows numbered 1
    are planned, so the query reading it must keep just those."""
    typed: bool = False
    """Rows are typed rows (attributes, decoded from a declared schema), not dicts."""


# -- the fused select step ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SelectOp(OperatorSpec):
    """WHERE and a projection as one step: rows whose condition is TRUE, projected."""

    condition: Compiled | None
    outputs: tuple[tuple[str, Compiled], ...] | None
    """(name, expression) of each output column; None passes rows unchanged."""
    exact: bool = False
    """The condition gives exactly True/False/None (a comparison or logic)."""
    vectors: tuple[tuple[str, Callable[..., Any], tuple[Compiled, ...]], ...] = ()
    """Vectorised function calls, computed per batch on Arrow arrays before the rows:
    (the column the row expressions read the result from, function, arguments)."""
    kernel: Kernel | None = None
    """The same step as one generated loop over the batch (used when given and
    there are no vectorised calls); ``condition``/``outputs`` describe it."""
    name: str | None = None
    parallelism: int | None = None

    operator_type: ClassVar[str] = "sql-select"

    def build(self, ctx: OperatorContext) -> OperatorLogic:
        return _SelectLogic(self, ctx)


class _SelectLogic(OperatorLogic):
    def __init__(self, spec: SelectOp, ctx: OperatorContext) -> None:
        self.condition = spec.condition
        self.outputs = spec.outputs
        self.exact = spec.exact
        self.vectors = spec.vectors
        self.reject = ctx.reject
        if spec.kernel is not None and not spec.vectors:
            self.process = spec.kernel.build(ctx.reject)  # type: ignore[method-assign,assignment]

    def process(self, batch: list[Any]) -> list[Any]:
        condition, outputs, exact = self.condition, self.outputs, self.exact
        rows: list[Any] = batch
        if self.vectors:
            try:
                rows = self._vectorised(batch)
            except Exception as exc:  # the function failed on the batch: every row is rejected
                for row in batch:
                    self.reject(row, exc)
                return []
        out = []
        for row, original in zip(rows, batch, strict=True):
            try:  # a row the expressions fail on (a division by zero) goes to the policy
                if condition is not None:
                    kept = condition(row)
                    if (kept is not True) if exact else not is_true(kept):
                        continue
                out.append(original if outputs is None else {n: f(row) for n, f in outputs})
            except Exception as exc:
                self.reject(original, exc)
        return out

    def _vectorised(self, batch: list[Any]) -> list[Any]:
        """Each row with the results of the batch's vectorised calls beside it."""
        import pyarrow as pa

        results: dict[str, list[Any]] = {}
        for name, fn, args in self.vectors:
            arrays = [pa.array([arg(row) for row in batch]) for arg in args]
            result = fn(*arrays)
            values = result.to_pylist() if hasattr(result, "to_pylist") else list(result)
            if len(values) != len(batch):
                raise ValueError(
                    f"a vectorised function returned {len(values)} values for {len(batch)} rows"
                )
            results[name] = values
        return [
            _Overlay(row, {name: values[i] for name, values in results.items()})
            for i, row in enumerate(batch)
        ]


class _Overlay:
    """A row read through ``get`` with extra columns (vectorised results) on top."""

    __slots__ = ("extra", "row")

    def __init__(self, row: Any, extra: dict[str, Any]) -> None:
        self.row = row
        self.extra = extra

    def get(self, name: str, default: Any = None) -> Any:
        if name in self.extra:
            return self.extra[name]
        return self.row.get(name, default)

    def __getattr__(self, name: str) -> Any:  # typed rows are read by attribute
        if name in self.extra:
            return self.extra[name]
        return getattr(self.row, name)


# -- aggregates ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Agg:
    kind: str  # count_star, count, count_distinct, sum, min, max, avg
    value: Compiled | None
    where: Compiled | None = None
    """``AGG(x) FILTER (WHERE condition)``: only rows the condition holds TRUE for count."""


class SqlAggregates(AggregateFunction[Any, list[Any], list[Any]]):
    """Every aggregate call of one query over one accumulator list, NULLs ignored as
    SQL does (SUM/MIN/MAX/AVG of no values is NULL, COUNT of none is 0)."""

    def __init__(self, aggs: list[_Agg]) -> None:
        self.aggs = aggs

    def create(self) -> list[Any]:
        out: list[Any] = []
        for agg in self.aggs:
            if agg.kind in {"count_star", "count"}:
                out.append(0)
            elif agg.kind == "count_distinct":
                out.append(set())
            elif agg.kind == "avg":
                out.append([0, 0])
            else:
                out.append(None)
        return out

    def add(self, acc: list[Any], row: Any) -> list[Any]:
        for i, agg in enumerate(self.aggs):
            kind = agg.kind
            if agg.where is not None and not is_true(agg.where(row)):
                continue
            if kind == "count_star":
                acc[i] += 1
                continue
            assert agg.value is not None
            v = agg.value(row)
            if v is None:
                continue
            if kind == "count":
                acc[i] += 1
            elif kind == "count_distinct":
                acc[i].add(v)
            elif kind == "sum":
                acc[i] = v if acc[i] is None else acc[i] + v
            elif kind == "min":
                acc[i] = v if acc[i] is None or v < acc[i] else acc[i]
            elif kind == "max":
                acc[i] = v if acc[i] is None or v > acc[i] else acc[i]
            else:  # avg
                acc[i][0] += v
                acc[i][1] += 1
        return acc

    def merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        out = []
        for agg, x, y in zip(self.aggs, a, b, strict=True):
            kind = agg.kind
            if kind in {"count_star", "count"}:
                out.append(x + y)
            elif kind == "count_distinct":
                out.append(x | y)
            elif kind == "avg":
                out.append([x[0] + y[0], x[1] + y[1]])
            elif x is None or y is None:
                out.append(y if x is None else x)
            elif kind == "sum":
                out.append(x + y)
            else:
                out.append(min(x, y) if kind == "min" else max(x, y))
        return out

    def result(self, acc: list[Any]) -> list[Any]:
        out: list[Any] = []
        for agg, value in zip(self.aggs, acc, strict=True):
            if agg.kind == "count_distinct":
                out.append(len(value))
            elif agg.kind == "avg":
                out.append(value[0] / value[1] if value[1] else None)
            else:
                out.append(value)
        return out

    def size(self, acc: list[Any]) -> int:
        return sum(
            len(v) for v, a in zip(acc, self.aggs, strict=True) if a.kind == "count_distinct"
        )


_AGGREGATES: dict[type[exp.Expr], str] = {
    exp.Sum: "sum",
    exp.Min: "min",
    exp.Max: "max",
    exp.Avg: "avg",
}


# -- planning ---------------------------------------------------------------------------


class _Planner:
    def __init__(
        self,
        script: Script,
        flow: Flow,
        functions: Mapping[str, Callable[..., Any]],
        check: ConnectorCheck | None = None,
    ) -> None:
        self.script = script
        self.flow = flow
        self.ids: dict[str, itertools.count[int]] = {}
        self.functions = {n: f for n, f in functions.items() if not is_vectorized(f)}
        self.vectorized = {n: f for n, f in functions.items() if is_vectorized(f)}
        self.check = check
        self.ctes: dict[str, Relation] = {}
        self.changelog: tuple[str, bool] | None = None
        """(column, retract) when updating aggregates emit a changelog."""
        self.late_table: str | None = None
        """The table window aggregates' late rows are written to (``SET 'late.table'``)."""
        self.late_streams: list[Stream[Any]] = []
        self.viewing: set[str] = set()
        """Views being planned (one that reads itself is refused)."""

    def compile(self, node: exp.Expr, columns: Callable[[exp.Column], str]) -> Compiled:
        """``node`` for rows of the relation ``columns`` resolves names in (typed rows
        are read by attribute)."""
        for call in node.find_all(exp.Anonymous):
            if str(call.this).upper() in self.vectorized:
                raise fail(
                    call,
                    f"the vectorised function {call.this} can be called in the SELECT list "
                    "and WHERE of a query without GROUP BY, not here",
                )
        typed = isinstance(columns, _Resolver) and columns.typed
        return compile_expression(node, columns, self.functions, attributes=typed)

    def vectorise(
        self, nodes: list[exp.Expr], columns: Callable[[exp.Column], str]
    ) -> tuple[list[exp.Expr], tuple[tuple[str, Callable[..., Any], tuple[Compiled, ...]], ...]]:
        """``nodes`` with each vectorised call replaced by a column of its per-batch
        result, and the calls to make."""
        calls: list[tuple[str, Callable[..., Any], tuple[Compiled, ...]]] = []

        def lift(node: exp.Expr) -> exp.Expr:
            if isinstance(node, exp.Anonymous) and str(node.this).upper() in self.vectorized:
                name = f"__vec{len(calls)}"
                args = tuple(self.compile(a, columns) for a in node.expressions)
                calls.append((name, self.vectorized[str(node.this).upper()], args))
                return exp.column(name)
            return node

        if not self.vectorized:
            return nodes, ()
        return [n.copy().transform(lift) for n in nodes], tuple(calls)

    def step(self, base: str) -> str:
        counter = self.ids.setdefault(base, itertools.count(1))
        n = next(counter)
        return base if n == 1 else f"{base}-{n}"

    def table(self, node: exp.Expr, name: str, role: str) -> TableDef:
        table = self.script.tables.get(name)
        if table is None:
            known = ", ".join(self.script.tables) or "none"
            raise fail(node, f"no table {name}: define it with CREATE TABLE (defined: {known})")
        if role == "source" and table.role == "sink":
            raise fail(node, f"table {name} is a SINK and cannot be read")
        if role == "sink" and table.role == "source":
            raise fail(node, f"table {name} is a SOURCE and cannot be written")
        return table

    def connector(self, table: TableDef, role: str, extra: dict[str, Any] | None = None) -> Any:
        """The connector spec of ``table`` in ``role``, its options checked for it (and,
        for jobs submitted through the API, against the submission policy)."""
        options = {**table.options, **(extra or {})}
        try:
            spec = Connectors.get(table.connector, **options)
            spec.validate(role)
            if self.check is not None:
                self.check(table.connector, dict(options), role)
        except ReflowError as exc:
            raise SqlError(f"table {table.name}: {exc}", line=table.line) from None
        return spec

    # -- relations --------------------------------------------------------------------

    def named(self, node: exp.Expr, name: str) -> Relation:
        """A table, view or common table expression by name, as a relation (a view or CTE
        read twice is planned once and fanned out)."""
        view = self.script.views.get(name)
        if view is not None and name not in self.ctes:
            if name in self.viewing:
                raise fail(node, f"view {name} reads itself")
            self.viewing.add(name)
            self.ctes[name] = self.query(view)
            self.viewing.discard(name)
        if name in self.ctes:
            return self.ctes[name]
        table = self.table(node, name, "source")
        schema = _typed_schema(table)
        extra = {"schema": schema} if schema is not None else None
        stream = self.flow.source(self.connector(table, "source", extra), id=self.step(table.name))
        return Relation(
            stream,
            tuple(c.name for c in table.columns),
            f"table {table.name}",
            table.watermark,
            {c.name: c.type.upper() for c in table.columns},
            typed=schema is not None,
        )

    def renamed(
        self, relation: Relation, table: TableDef, names: list[str], node: exp.Expr
    ) -> Relation:
        """``INSERT INTO table (names) SELECT ...``: the query's columns, by place, as
        ``names`` (columns of the table)."""
        declared = {c.name for c in table.columns}
        unknown = [n for n in names if n not in declared]
        if unknown or len(set(names)) != len(names):
            problem = f"no column {unknown[0]}" if unknown else "a column is named twice"
            raise fail(
                node,
                f"INSERT INTO {table.name} ({', '.join(names)}): {problem} "
                f"(columns: {', '.join(sorted(declared))})",
            )
        if len(names) != len(relation.columns):
            raise fail(
                node,
                f"INSERT INTO {table.name} names {len(names)} columns but the SELECT gives "
                f"{len(relation.columns)} ({', '.join(relation.columns)})",
            )
        pairs = zip(names, relation.columns, strict=True)
        outputs = tuple((new, _read(old, relation.typed)) for new, old in pairs)
        stream = relation.stream.transform(SelectOp(None, outputs), id=self.step("insert-columns"))
        return replace(relation, stream=stream, columns=tuple(names), typed=False)

    def untyped(self, relation: Relation) -> Relation:
        """``relation`` with dict rows (joins and unions combine rows as dicts)."""
        if not relation.typed:
            return relation
        outputs = tuple((c, operator.attrgetter(c)) for c in relation.columns)
        stream = relation.stream.transform(SelectOp(None, outputs), id=self.step("as-dicts"))
        return replace(relation, stream=stream, typed=False)

    def query(self, query: exp.Query) -> Relation:
        """Plan ``query`` (a SELECT, a UNION ALL, with its WITH clause) into a relation."""
        with_ = query.args.get("with_")
        if with_ is not None:
            for cte in with_.expressions:
                taken = (self.ctes, self.script.tables, self.script.views)
                if any(cte.alias in names for names in taken):
                    raise fail(cte, f"WITH {cte.alias}: the name is already a table or CTE")
                self.ctes[cte.alias] = self.query(cte.this)
        if isinstance(query, exp.Union):
            return self.union(query)
        if not isinstance(query, exp.Select):
            raise fail(query, f"{query.key.upper()} is not supported yet; write a SELECT")
        return self.select(query)

    def union(self, query: exp.Union) -> Relation:
        if query.args.get("distinct"):
            raise fail(query, "UNION (distinct) is not supported; UNION ALL is")
        left = self.untyped(self.query(query.this))
        right = self.untyped(self.query(query.expression))
        if len(left.columns) != len(right.columns):
            raise fail(
                query,
                f"UNION ALL of {len(left.columns)} and {len(right.columns)} columns: "
                "both sides need the same number of columns",
            )
        stream = right.stream
        if right.columns != left.columns:  # the left side names the columns, as in SQL
            renamed = tuple(
                (name, _getter(other))
                for name, other in zip(left.columns, right.columns, strict=True)
            )
            stream = stream.transform(SelectOp(None, renamed), id=self.step("union-rename"))
        watermark = left.watermark if left.watermark == right.watermark else None
        merged = left.stream.union(stream, id=self.step("union-all"))
        return Relation(merged, left.columns, "the UNION ALL", watermark, left.types)

    def distinct(self, query: exp.Select, distinct: exp.Expr) -> Relation:
        """``SELECT DISTINCT ...``: each row the first time its values come (as Flink on an
        append-only stream); every distinct row is kept in keyed state, for good."""
        if distinct.args.get("on") is not None:
            raise fail(distinct, "SELECT DISTINCT ON is not supported; SELECT DISTINCT is")
        if query.args.get("group") is not None or any(
            _aggregates_in(e) or e.find(exp.Window) for e in query.expressions
        ):
            raise fail(
                distinct,
                "SELECT DISTINCT with GROUP BY, aggregates or OVER is not supported: its "
                "rows are distinct already, or write the query without DISTINCT",
            )
        plain = query.copy()
        plain.set("distinct", None)
        relation = self.select(plain)
        key = _tuple_key([_read(c, relation.typed) for c in relation.columns])
        stream = relation.stream.key_by(key, id=self.step("distinct-key")).deduplicate(
            event_time=False, id=self.step("distinct")
        )
        return replace(relation, stream=stream)

    def from_clause(self, node: exp.Expr) -> tuple[Relation, WindowSpec | None, str | None]:
        """The relation FROM reads, and the window and time column of a window TVF."""
        if isinstance(node, exp.Subquery):
            return replace(self.query(node.this), alias=node.alias or None), None, None
        target = node.this if isinstance(node, exp.Table) else node
        if isinstance(target, exp.Anonymous) and str(target.this).upper() == "TABLE":
            target = target.expressions[0] if target.expressions else target
        if isinstance(node, exp.Table) and isinstance(target, exp.Identifier):
            return replace(self.named(node, node.name), alias=node.alias or node.name), None, None
        if isinstance(target, exp.Anonymous) and str(target.this).upper() in WINDOW_KINDS:
            name, spec, column = self.window_function(target)
            return self.named(target, name), spec, column
        raise fail(node, f"FROM {node.sql()}: joins are not supported yet")

    def select(self, query: exp.Select) -> Relation:
        distinct = query.args.get("distinct")
        if distinct is not None:
            return self.distinct(query, distinct)
        for unsupported in ("order", "limit"):
            if query.args.get(unsupported):
                word = unsupported.rstrip("_").upper()
                raise fail(query, f"{word} is not supported in reflow SQL v1 (docs/sql.md)")
        source = query.args.get("from_")
        if source is None:
            raise fail(query, "a query needs FROM <table>")
        relation, window, time_column = self.from_clause(source.this)
        joins = query.args.get("joins") or []
        if joins:
            if window is not None or len(joins) > 1:
                raise fail(joins[0], "one JOIN of two tables or subqueries is supported, no TVF")
            if isinstance(joins[0].this, exp.Table) and joins[0].this.args.get("version"):
                relation = self.lookup_join(relation, joins[0])
            else:
                relation = self.interval_join(relation, joins[0])
        columns = set(relation.columns)

        def resolve(node: exp.Column) -> str:
            name = node.name
            if node.table and node.table != relation.alias:
                name = f"{node.table}.{node.name}"
            if name not in columns:
                raise fail(
                    node,
                    f"no column {node.sql()} in {relation.name} "
                    f"(columns: {', '.join(relation.columns)})",
                )
            return name

        column = _Resolver(resolve, relation.typed)

        if relation.top1 is not None and not _keeps_first(query.args.get("where"), relation.top1):
            raise fail(
                source,
                f"ROW_NUMBER() is supported for deduplication: read the subquery with "
                f"WHERE {relation.top1} = 1",
            )
        stream = relation.stream
        if window is not None:
            assert time_column is not None
            if time_column not in columns:
                raise fail(source, f"no column {time_column} in {relation.name}")
            stream, _ = self.timestamped(relation, stream, time_column, source, "timestamps")
        where = query.args.get("where")
        aggregates = [a for e in query.expressions for a in _aggregates_in(e)]
        group = query.args.get("group")
        vectors: tuple[tuple[str, Callable[..., Any], tuple[Compiled, ...]], ...] = ()
        items = list(query.expressions)
        where_node = where.this if where is not None else None
        overs = [w for e in query.expressions for w in e.find_all(exp.Window)]
        if query.args.get("windows") and not overs:
            raise fail(query, "the WINDOW clause names a window no OVER uses")
        if group is None and not aggregates and not overs:
            lifted, vectors = self.vectorise(
                [*items, *([where_node] if where_node is not None else [])], column
            )
            items = lifted[: len(items)]
            where_node = lifted[len(items)] if where_node is not None else None
            if vectors:

                def with_vectors(node: exp.Column) -> str:
                    return node.name if node.name.startswith("__vec") else resolve(node)

                column = _Resolver(with_vectors, relation.typed)

        condition, exact = (None, False)
        if where_node is not None:
            condition, exact = condition_of(where_node, column, self.functions)
        if overs and not any(isinstance(w.this, exp.RowNumber) for w in overs):
            if window is not None or group is not None:
                raise fail(
                    overs[0],
                    "an OVER aggregate cannot be combined with GROUP BY or a window table "
                    "function: aggregate in a subquery, then read it with OVER",
                )
            return self.over(query, relation, stream, column, condition, exact)
        numbered = [e for e in query.expressions if e.find(exp.Window) is not None]
        if numbered:
            if window is not None or group is not None or aggregates:
                raise fail(numbered[0], "ROW_NUMBER() cannot be combined with GROUP BY or windows")
            return self.earliest(query, relation, stream, column, condition, exact, numbered)
        if group is None and not aggregates:
            if window is not None:
                raise fail(source, "a window table function needs GROUP BY window_start, ...")
            outputs = self.projection(items, column, relation)
            names = tuple(name for name, _ in outputs)
            typed = relation.typed and all(is_plain_identifier(n) for n in names)
            kernel = None
            if not vectors:
                # A table source's own rows with the same columns out: updated, not copied.
                in_place = (
                    typed and names == relation.columns and relation.name.startswith("table ")
                )
                kernel = self.kernel(
                    where_node,
                    self.projected(items, relation),
                    column,
                    names if typed else (),
                    in_place,
                )
            projected = stream.transform(
                SelectOp(condition, outputs, exact, vectors, kernel), id=self.step("select")
            )
            return Relation(
                projected,
                names,
                "the subquery",
                _carried_watermark(query.expressions, relation),
                _carried_types(query.expressions, relation),
                typed=typed,
            )
        if condition is not None:
            kernel = self.kernel(where_node, None, column, ())
            stream = stream.transform(
                SelectOp(condition, None, exact, kernel=kernel), id=self.step("where")
            )
        aggregated, names, typed = self.aggregate(query, stream, column, window, group)
        # A window's rows leave in the order of their end: window_time (its last
        # millisecond, Flink's time attribute of window results) is their event time,
        # ready for a window or join further on; window_end serves too when window_time
        # is not selected (one millisecond late: a window ending at 10:00 counts in the
        # 10:00-11:00 hour, as read from window_end).
        ends = None
        for time_column in ("window_time", "window_end"):
            ends = ends or _carried_watermark(
                query.expressions,
                Relation(stream, (time_column,), "", (time_column, 0), {time_column: "BIGINT"}),
            )
        if window is None or ends is None:
            return Relation(aggregated, names, "the aggregate", None, {}, typed=typed)
        return Relation(
            aggregated, names, "the window aggregate", ends, {ends[0]: "BIGINT"}, typed=typed
        )

    def interval_join(self, left: Relation, join: exp.Join) -> Relation:
        """``L JOIN R ON L.k = R.k AND R.t BETWEEN L.t - INTERVAL ... AND L.t + INTERVAL ...``
        as an interval join on event time: equal keys (a NULL key matches nothing),
        times within the bounds; other conditions in ON filter the joined rows."""
        side_word = (join.side or "").upper()
        if join.kind not in ("", "INNER", "OUTER") or side_word not in (
            "",
            "LEFT",
            "RIGHT",
            "FULL",
        ):
            raise fail(
                join,
                f"{side_word or join.kind} JOIN is not supported; JOIN, LEFT, RIGHT and FULL "
                "[OUTER] JOIN are",
            )
        outers: dict[str, Literal["inner", "left", "right", "full"]] = {
            "": "inner",
            "LEFT": "left",
            "RIGHT": "right",
            "FULL": "full",
        }
        outer = outers[side_word]
        right, window, _ = self.from_clause(join.this)
        if window is not None:
            raise fail(join, "a window table function cannot be joined")
        left, right = self.untyped(left), self.untyped(right)
        la, ra = left.alias or "left", right.alias or "right"
        if la == ra:
            raise fail(join, f"both sides of the JOIN are called {la}: give one an alias")
        on = join.args.get("on")
        if on is None:
            raise fail(join, "a JOIN needs ON with equal keys and a time bound")

        def side(node: exp.Expr) -> tuple[int, str] | None:
            """(0 left / 1 right, column) of a column reference."""
            if not isinstance(node, exp.Column):
                return None
            if node.table:
                if node.table == la and node.name in left.columns:
                    return 0, node.name
                if node.table == ra and node.name in right.columns:
                    return 1, node.name
                raise fail(node, f"no column {node.sql()} on either side of the JOIN")
            found = [i for i, r in enumerate((left, right)) if node.name in r.columns]
            if len(found) != 1:
                problem = "ambiguous: name its table" if found else "not on either side"
                raise fail(node, f"column {node.name} is {problem} of the JOIN")
            return found[0], node.name

        def moment(node: exp.Expr) -> tuple[int, str, int] | None:
            """(side, time column, offset ms) of ``t``, ``t + INTERVAL``, ``t - INTERVAL``."""
            offset = 0
            if isinstance(node, (exp.Add, exp.Sub)) and isinstance(node.expression, exp.Interval):
                offset = interval_ms(node.expression) * (1 if isinstance(node, exp.Add) else -1)
                node = node.this
            found = side(node)
            return None if found is None else (*found, offset)

        keys: list[tuple[str, str]] = []
        low: int | None = None
        high: int | None = None
        times: list[tuple[int, str]] = []
        residual: list[exp.Expr] = []
        for part in conjuncts(on):
            if isinstance(part, exp.EQ):
                a, b = side(part.this), side(part.expression)
                if a is not None and b is not None and a[0] != b[0]:
                    pair = (a[1], b[1]) if a[0] == 0 else (b[1], a[1])
                    keys.append(pair)
                    continue
            bounds = _time_bounds(part, moment)
            if bounds is not None:
                (lt, rt), lo, hi = bounds
                times += [(0, lt), (1, rt)]
                if lo is not None:
                    low = lo if low is None else max(low, lo)
                if hi is not None:
                    high = hi if high is None else min(high, hi)
                continue
            residual.append(part)
        if not keys:
            raise fail(on, "the JOIN needs an equality of a column of each side (its key)")
        if low is None or high is None:
            raise fail(
                on,
                "the JOIN needs a time bound on both sides' event times, e.g. "
                f"{ra}.ts BETWEEN {la}.ts - INTERVAL '1' MINUTE AND {la}.ts + INTERVAL '1' MINUTE",
            )
        time_of = {s: c for s, c in times}
        if len({c for s, c in times if s == 0}) > 1 or len({c for s, c in times if s == 1}) > 1:
            raise fail(on, "the time bounds must use one time column on each side")
        streams: list[Stream[Any]] = []
        readers: list[Callable[[Any], int]] = []
        for index, (relation, alias) in enumerate(((left, la), (right, ra))):
            names = [k[index] for k in keys]
            stream = relation.stream
            if outer == "inner":  # a NULL key never joins (an outer join pads its rows)
                stream = stream.transform(
                    SelectOp(_all_present(names), None, True), id=self.step(f"join-{alias}-keys")
                )
            stream, reader = self.timestamped(
                relation, stream, time_of[index], on, f"join-{alias}-timestamps"
            )
            streams.append(stream)
            readers.append(reader)
        left_names, right_names = [k[0] for k in keys], [k[1] for k in keys]
        columns = [f"{la}.{c}" for c in left.columns] + [f"{ra}.{c}" for c in right.columns]
        shared = set(left.columns) & set(right.columns)
        plain = [c for c in (*left.columns, *right.columns) if c not in shared]
        names_out = tuple(plain + columns)
        condition: Callable[[Any], bool] | None = None
        if residual:  # other ON conditions decide which pairs join (and which rows pad)
            resolve = set(names_out)

            def joined_column(node: exp.Column) -> str:
                name = f"{node.table}.{node.name}" if node.table else node.name
                if name not in resolve:
                    raise fail(node, f"no column {node.sql()} in the JOIN")
                return name

            compiled, _ = condition_of(exp.and_(*residual), joined_column, self.functions)
            condition = _holds(compiled)
        key_fn = _key_of if outer == "inner" else _nullable_key_of
        joined = streams[0].interval_join(
            streams[1],
            key_fn(left_names),
            key_fn(right_names),
            low,
            high,
            join=_combine(la, ra, shared, left.columns, right.columns),
            left_timestamp=readers[0],
            right_timestamp=readers[1],
            outer=outer,
            condition=condition,
            id=self.step("interval-join"),
        )
        return Relation(
            joined,
            names_out,
            "the JOIN",
            None,
            {f"{la}.{c}": t for c, t in left.types.items()}
            | {f"{ra}.{c}": t for c, t in right.types.items()},
        )

    def earliest(
        self,
        query: exp.Select,
        relation: Relation,
        stream: Stream[Any],
        column: Callable[[exp.Column], str],
        condition: Compiled | None,
        exact: bool,
        numbered: list[exp.Expr],
    ) -> Relation:
        """``SELECT ..., ROW_NUMBER() OVER (PARTITION BY k ORDER BY ts) AS rn FROM r``
        read with ``WHERE rn = 1``: the earliest row of each key by event time."""
        item = numbered[0]
        over = item.this if isinstance(item, exp.Alias) else item
        if (
            len(numbered) > 1
            or not isinstance(item, exp.Alias)
            or not isinstance(over, exp.Window)
            or not isinstance(over.this, exp.RowNumber)
        ):
            raise fail(item, "write ROW_NUMBER() OVER (PARTITION BY k ORDER BY ts) AS rn, once")
        ordered = _time_order(over)
        if ordered is None:
            raise fail(
                over,
                "ROW_NUMBER() keeps the earliest row: ORDER BY the event-time column, ascending "
                "(the latest row would need retractions, which v1 does not emit)",
            )
        key = self.partition_key(over, column)
        if condition is not None:
            stream = stream.transform(SelectOp(condition, None, exact), id=self.step("where"))
        stream, reader = self.timestamped(relation, stream, column(ordered), over, "timestamps")
        first = stream.key_by(key, id=self.step("partition-by")).transform(
            EarliestOp(key, reader), id=self.step("row-number")
        )
        rest = [e for e in query.expressions if e is not item]
        outputs = [*self.projection(rest, column, relation), (item.alias, lambda row: 1)]
        projected = first.transform(SelectOp(None, tuple(outputs)), id=self.step("select"))
        return Relation(
            projected,
            tuple(name for name, _ in outputs),
            "the subquery",
            _carried_watermark(rest, relation),
            _carried_types(rest, relation),
            top1=item.alias,
        )

    def over(
        self,
        query: exp.Select,
        relation: Relation,
        stream: Stream[Any],
        column: _Resolver,
        condition: Compiled | None,
        exact: bool,
    ) -> Relation:
        """``SELECT ..., AGG(x) OVER (PARTITION BY k ORDER BY ts <frame>) FROM r``: each
        row with the aggregates of its partition's frame ending at it, in event-time
        order (``OverAggregateOp``). Every OVER of the query uses one window, as in
        Flink; WHERE applies before it, as SQL orders them."""
        named: dict[str, exp.Window] = {}
        for definition in query.args.get("windows") or []:
            named[definition.alias_or_name] = definition
        calls: list[_Agg] = []
        slots: dict[str, str] = {}
        chosen: list[tuple[exp.Expr, exp.Window]] = []  # (first OVER, its window)

        def to_slot(node: exp.Expr) -> exp.Expr:
            if isinstance(node, exp.Window):
                window = _over_window(node, named)
                if not chosen:
                    chosen.append((node, window))
                elif _window_text(window) != _window_text(chosen[0][1]):
                    raise fail(
                        node,
                        "every OVER of a query must use the same window (PARTITION BY, "
                        f"ORDER BY and frame), as in Flink: {_window_text(chosen[0][1])} "
                        f"and {_window_text(window)} differ; plan the other in a second query",
                    )
                call = node.this
                if not _is_aggregate(call):
                    raise fail(
                        node,
                        f"{call.sql()} OVER is not supported: COUNT, SUM, MIN, MAX and AVG are "
                        "(and ROW_NUMBER() for deduplication)",
                    )
                sql = call.sql()
                if sql not in slots:
                    slots[sql] = f"__over{len(calls)}"
                    calls.append(_agg_of(call, lambda e: self.compile(e, column)))
                return exp.column(slots[sql])
            if _is_aggregate(node):
                raise fail(node, f"{node.sql()} needs OVER (...) here, or GROUP BY")
            return node

        rewritten = [item.copy().transform(to_slot) for item in query.expressions]
        first, window = chosen[0]
        ordered = _time_order(window)
        if ordered is None:
            raise fail(
                first,
                "OVER needs ORDER BY the event-time column, ascending (rows are aggregated "
                "in event-time order, as in Flink)",
            )
        kind, preceding = _over_frame(window, first)
        key = self.partition_key(window, column)
        if condition is not None:
            stream = stream.transform(SelectOp(condition, None, exact), id=self.step("where"))
        stream, _ = self.timestamped(relation, stream, column(ordered), ordered, "timestamps")
        # Each row's aggregate arguments are computed once, as it arrives; the frames
        # keep them (not the rows) and the aggregates read them by place.
        given = [c.value for c in calls if c.value is not None]
        places = iter(range(len(given)))
        kinds = [(c.kind, None if c.value is None else next(places)) for c in calls]
        names = set(relation.columns) | set(slots.values())

        def over_column(node: exp.Column) -> str:
            name = node.name if node.name.startswith("__over") else column(node)
            assert name in names
            return name

        outputs = self.projection(
            rewritten, _Resolver(over_column, False), replace(relation, typed=False)
        )
        # When the SELECT list is columns and aggregates only, the over step makes the
        # output rows itself; other expressions are computed by a select step after it.
        slot_of = {slot: i for i, slot in enumerate(slots.values())}
        made: list[tuple[str, str | int]] = []
        for index, item in enumerate(rewritten):
            node = item.this if isinstance(item, exp.Alias) else item
            if isinstance(item, exp.Star):
                made += [(c, c) for c in relation.columns]
            elif isinstance(node, exp.Column):
                source = over_column(node)
                made.append((_output_name(item, index), slot_of.get(source, source)))
            else:
                break
        picks = made if len(made) == len(outputs) else None
        make = _OverRow(
            relation.columns,
            tuple(slots.values()),
            relation.typed,
            None if picks is None else tuple(picks),
        )
        over = stream.key_by(key, id=self.step("partition-by")).transform(
            OverAggregateOp(
                key,
                SqlFrameAggregates(kinds),
                make,
                arguments=_tuple_key(given),
                frame=kind,
                preceding=preceding,
            ),
            id=self.step("over"),
        )
        if self.late_table is not None:  # SET 'late.table': late rows are written there
            late = over.late(id=self.step("late"))
            self.late_streams.append(late.map(_as_dict, id=self.step("late-rows")))
        projected = over
        if picks is None:
            projected = over.transform(SelectOp(None, outputs), id=self.step("select"))
        return Relation(
            projected,
            tuple(name for name, _ in outputs),
            "the subquery",
            _carried_watermark(list(query.expressions), relation),
            _carried_types(list(query.expressions), relation),
            typed=picks is not None and make.kind is not None,
        )

    def partition_key(
        self, window: exp.Window, column: Callable[[exp.Column], str]
    ) -> Callable[[Any], Any]:
        """The key of a window's PARTITION BY (one partition of every row without it)."""
        keys = [self.compile(p, column) for p in window.args.get("partition_by") or []]
        if not keys:
            return _no_partition
        return keys[0] if len(keys) == 1 else _tuple_key(keys)

    def timestamped(
        self, relation: Relation, stream: Stream[Any], time: str, node: exp.Expr, step: str
    ) -> tuple[Stream[Any], Callable[[Any], int]]:
        """``stream`` (of ``relation``'s rows) with event time from column ``time`` and
        watermarks behind it by the relation's declared delay, and the time reader."""
        if relation.watermark is None or relation.watermark[0] != time:
            raise fail(
                node,
                f"{relation.name} has no watermark for {time}: declare WATERMARK FOR {time} AS "
                f"{time} - INTERVAL '5' SECOND in its CREATE TABLE (the delay is how late rows "
                "may arrive)",
            )
        # Epoch ms read from C; other types may be ISO-8601 text.
        numeric = relation.types.get(time) in {"BIGINT", "INT", "INTEGER"}
        reader = _read(time, relation.typed) if numeric else _event_time(time, relation.typed)
        stamped = stream.assign_timestamps(
            reader, max_out_of_orderness_ms=relation.watermark[1], id=self.step(step)
        )
        return stamped, reader

    def lookup_join(self, left: Relation, join: exp.Join) -> Relation:
        """``L JOIN dim FOR SYSTEM_TIME AS OF L.t AS d ON L.k = d.k``: each row of L
        enriched from the table ``dim``, read whole into a cache refreshed every
        'lookup.cache.ttl' (1 min by default). An inner join drops rows without a
        match; a LEFT JOIN keeps them with NULLs."""
        node = join.this
        assert isinstance(node, exp.Table)
        left = self.untyped(left)
        if join.side not in ("", "LEFT") or join.kind not in ("", "INNER", "OUTER"):
            raise fail(join, f"{join.side or join.kind} lookup JOIN is not supported")
        table = self.table(node, node.name, "source")
        spec = self.connector(table, "source")
        la, ra = left.alias or "left", node.alias or node.name
        right_columns = tuple(c.name for c in table.columns)
        on = join.args.get("on")
        if on is None:
            raise fail(join, "a lookup JOIN needs ON with the lookup key: ON o.k = d.id")
        pairs: list[tuple[str, str]] = []
        for part in conjuncts(on):
            cols = (part.this, part.expression) if isinstance(part, exp.EQ) else ()
            if len(cols) == 2 and all(isinstance(c, exp.Column) for c in cols):
                mine = [
                    c
                    for c in cols
                    if c.table == ra
                    or (not c.table and c.name in right_columns and c.name not in left.columns)
                ]
                other = [c for c in cols if c not in mine]
                if len(mine) == 1 and other and other[0].name in left.columns:
                    if mine[0].name not in right_columns:
                        raise fail(mine[0], f"no column {mine[0].name} in table {table.name}")
                    pairs.append((other[0].name, mine[0].name))
                    continue
            raise fail(part, "a lookup JOIN's ON compares columns of each side with '=' only")
        cache = table.lookup.get("cache")
        ttl = cache.get("ttl", 60_000) if isinstance(cache, dict) else 60_000
        try:
            ttl_ms = millis(ttl, "lookup.cache.ttl")
        except ReflowError as exc:
            raise fail(node, f"table {table.name}: {exc}") from None
        shared = set(left.columns) & set(right_columns)
        nulls = dict.fromkeys(right_columns)
        combine = _combine(la, ra, shared)

        def enrich(row: Any, match: Any) -> dict[str, Any]:
            return combine(row, nulls if match is None else match)

        op = Operators.lookup(
            spec,
            _lookup_key([p[0] for p in pairs], missing=_NO_MATCH),
            _lookup_key([p[1] for p in pairs], missing=None),
            join=enrich,
            cache_ttl_ms=ttl_ms,
            on_missing="keep" if join.side == "LEFT" else "drop",
        )
        joined = left.stream.transform(op, id=self.step("lookup-join"))
        plain = [c for c in (*left.columns, *right_columns) if c not in shared]
        columns = plain + [f"{la}.{c}" for c in left.columns] + [f"{ra}.{c}" for c in right_columns]
        watermark = None
        if left.watermark is not None:
            column, delay = left.watermark
            watermark = (column if column not in shared else f"{la}.{column}", delay)
        return Relation(joined, tuple(columns), "the JOIN", watermark, dict(left.types))

    def window_function(self, target: exp.Anonymous) -> tuple[str, WindowSpec, str]:
        """``TUMBLE``/``HOP``/``CUMULATE``/``SESSION`` (table, time column, intervals)."""
        kind = str(target.this).upper()
        args = target.expressions
        arity = {"TUMBLE": 3, "HOP": 4, "CUMULATE": 4, "SESSION": 3}[kind]
        if len(args) != arity or not all(isinstance(a, exp.Column) for a in args[:2]):
            spelled = {
                "TUMBLE": "TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND)",
                "HOP": "HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '5' SECOND, INTERVAL '1' MINUTE)",
                "CUMULATE": "CUMULATE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' HOUR, "
                "INTERVAL '1' DAY)",
                "SESSION": "SESSION(TABLE t, DESCRIPTOR(ts), INTERVAL '30' SECOND)",
            }[kind]
            raise fail(
                target,
                f"write {spelled} (slide or step before size for HOP and CUMULATE, as Flink)",
            )
        table, column = args[0].name, args[1].name
        if kind == "TUMBLE":
            spec = Windows.tumbling(interval_ms(args[2]))
        elif kind == "HOP":
            slide, size = interval_ms(args[2]), interval_ms(args[3])
            if size % slide:
                raise fail(target, "HOP: the size must be a multiple of the slide")
            spec = Windows.sliding(size, slide)
        elif kind == "CUMULATE":
            step, size = interval_ms(args[2]), interval_ms(args[3])
            if size % step:
                raise fail(target, "CUMULATE: the size must be a multiple of the step")
            spec = Windows.cumulative(size, step)
        else:
            spec = Windows.session(interval_ms(args[2]))
        return table, spec, column

    def kernel(
        self,
        condition: exp.Expr | None,
        outputs: list[tuple[str, exp.Expr]] | None,
        column: _Resolver,
        typed_outputs: tuple[str, ...],
        in_place: bool = False,
    ) -> Kernel:
        """The generated loop of a WHERE and projection over ``column``'s rows; its
        output rows are typed rows of ``typed_outputs`` (column names) when given,
        the input rows updated with ``in_place`` (``select_kernel``)."""
        return select_kernel(
            condition,
            outputs,
            resolve=column.resolve,
            typed=column.typed,
            fallback=lambda node: self.compile(node, column),
            typed_outputs=bool(typed_outputs),
            in_place=in_place,
        )

    def projected(self, items: list[exp.Expr], relation: Relation) -> list[tuple[str, exp.Expr]]:
        """The SELECT list as (output name, expression), ``*`` expanded."""
        out: list[tuple[str, exp.Expr]] = []
        for index, item in enumerate(items):
            if isinstance(item, exp.Star):
                out += [(name, exp.column(name)) for name in relation.columns]
            else:
                out.append((_output_name(item, index), item))
        return out

    def projection(
        self, items: list[exp.Expr], column: Callable[[exp.Column], str], relation: Relation
    ) -> tuple[tuple[str, Compiled], ...]:
        outputs: list[tuple[str, Compiled]] = []
        for index, item in enumerate(items):
            if isinstance(item, exp.Star):
                outputs += [(name, _read(name, relation.typed)) for name in relation.columns]
                continue
            outputs.append((_output_name(item, index), self.compile(item, column)))
        _check_unique(outputs, items)
        return tuple(outputs)

    def aggregate(
        self,
        query: exp.Select,
        stream: Stream[Any],
        column: Callable[[exp.Column], str],
        window: WindowSpec | None,
        group: exp.Group | None,
    ) -> tuple[Stream[Any], tuple[str, ...], bool]:
        """The aggregated stream, its output columns and whether its rows are typed."""
        keys: list[exp.Expr] = []
        for expression in group.expressions if group is not None else []:
            if isinstance(expression, exp.Column) and expression.name in (
                *WINDOW_COLUMNS,
                "window_time",
            ):
                if window is None:
                    raise fail(expression, f"{expression.name} needs a window table function")
                continue
            keys.append(expression)
        key_fns = [self.compile(k, column) for k in keys]
        key_sql = {k.sql(): f"__key{i}" for i, k in enumerate(keys)}
        calls: list[_Agg] = []
        slots: dict[str, str] = {}

        def to_context(node: exp.Expr) -> exp.Expr:
            """Aggregate calls and group keys become columns of the aggregated row."""
            filtered = isinstance(node, exp.Filter) and _is_aggregate(node.this)
            if _is_aggregate(node) or filtered:
                sql = node.sql()
                if sql not in slots:
                    slots[sql] = f"__agg{len(calls)}"
                    calls.append(_agg_of(node, lambda e: self.compile(e, column)))
                return exp.column(slots[sql])
            if node.sql() in key_sql:
                return exp.column(key_sql[node.sql()])
            if isinstance(node, exp.Column) and node.name == "window_time" and window is not None:
                # Flink's window_time: the window's last millisecond, its rows' event time
                return exp.Sub(this=exp.column("window_end"), expression=exp.Literal.number(1))
            return node

        context = set(key_sql.values()) | (set(WINDOW_COLUMNS) if window is not None else set())

        def context_column(node: exp.Column) -> str:
            name = node.name
            if name in context or name.startswith("__agg"):
                return name
            raise fail(
                node,
                f"column {name} must be in GROUP BY or inside an aggregate (COUNT, SUM, MIN, "
                "MAX, AVG)",
            )

        outputs = []
        plain_outputs: list[exp.Expr] = []
        for index, item in enumerate(query.expressions):
            if isinstance(item, exp.Star):
                raise fail(item, "SELECT * cannot be aggregated; name the columns")
            rewritten = item.copy().transform(to_context)
            plain_outputs.append(rewritten.this if isinstance(rewritten, exp.Alias) else rewritten)
            outputs.append((_output_name(item, index), self.compile(rewritten, context_column)))
        _check_unique(outputs, query.expressions)
        having = query.args.get("having")
        condition, having_exact = None, False
        if having is not None:
            condition, having_exact = condition_of(
                having.this.copy().transform(to_context), context_column, self.functions
            )
        # COUNT(*) alone takes the window operator's counting fast path.
        only_count = [(c.kind, c.where) for c in calls] == [("count_star", None)]
        aggregate: AggregateFunction[Any, Any, Any] = (
            Count() if only_count else SqlAggregates(calls)
        )
        if len(key_fns) == 1:
            only = key_fns[0]
            key: Callable[[Any], Any] = only
        else:
            key = _tuple_key(key_fns)
        names = list(key_sql.values())
        single = len(names) == 1
        # Without HAVING, and when every output column is a name (no expression that
        # could fail on a row), the output row is made where the aggregate emits.
        changelog = self.changelog if window is None else None
        if changelog is not None:
            outputs.append((changelog[0], operator.methodcaller("get", changelog[0])))
            _check_unique(outputs, [*query.expressions, exp.column(changelog[0])])
        direct = condition is None and all(isinstance(e, exp.Column) for e in plain_outputs)
        names_out = tuple(name for name, _ in outputs)
        # The values an aggregate's result row is made of, in this order.
        layout = [*names, *(WINDOW_COLUMNS if window is not None else ())]
        layout += [f"__agg{i}" for i in range(len(calls))]
        picks = (
            [layout.index(e.name) for e in plain_outputs] if direct else list(range(len(layout)))
        )
        typed = direct and changelog is None and all(is_plain_identifier(n) for n in names_out)
        made = names_out[: len(picks)] if direct else tuple(layout)  # the kind is added after
        make = _RowMaker(tuple(picks), made, typed)

        keyed = stream.key_by(key, id=self.step("group-by"))
        if window is not None:
            aggregated = keyed.window(window).aggregate(
                aggregate,
                emit=_WindowRow(make, single, only_count),
                id=self.step("window-aggregate"),
            )
            if self.late_table is not None:  # SET 'late.table': late rows are written there
                late = aggregated.late(id=self.step("late"))
                self.late_streams.append(late.map(_as_dict, id=self.step("late-rows")))
        else:

            def output(k: Any, values: Any) -> Any:
                keys = (k,) if single else k
                return make((*keys, values) if only_count else (*keys, *values))

            if changelog is not None:
                # HAVING decides which keys are in the changelog: a key whose result
                # stops meeting it is deleted (-D), one that starts is inserted (+I).
                visible = None if condition is None else _visible(condition, output)
                aggregated = keyed.aggregate(
                    aggregate,
                    output=output,
                    emit="changelog",
                    changelog_column=changelog[0],
                    retract=changelog[1],
                    visible=visible,
                    id=self.step("aggregate"),
                )
                condition = None  # applied by the aggregate
            else:
                aggregated = keyed.aggregate(aggregate, output=output, id=self.step("aggregate"))
        if direct:
            return aggregated, names_out, typed
        selected = aggregated.transform(
            SelectOp(condition, tuple(outputs), having_exact), id=self.step("having-select")
        )
        return selected, names_out, False


Moment = Callable[[exp.Expr], "tuple[int, str, int] | None"]


def _time_bounds(
    node: exp.Expr, moment: Moment
) -> tuple[tuple[str, str], int | None, int | None] | None:
    """A bound between the two sides' times as ((left time, right time), low, high):
    right.t in [left.t + low, left.t + high]; None where a side is open; None if
    ``node`` is not such a bound."""
    if isinstance(node, exp.Between):
        x, lo, hi = moment(node.this), moment(node.args["low"]), moment(node.args["high"])
        if x is None or lo is None or hi is None or lo[0] != hi[0] or lo[1] != hi[1]:
            return None
        if x[0] == lo[0]:
            return None
        if x[0] == 1:  # right.t - xo BETWEEN left.t + a AND left.t + b
            return (lo[1], x[1]), lo[2] - x[2], hi[2] - x[2]
        return (x[1], lo[1]), x[2] - hi[2], x[2] - lo[2]  # left in [right+a, right+b]
    mirrored = {"GTE": "LTE", "GT": "LT", "LTE": "GTE", "LT": "GT"}
    op = type(node).__name__
    if op not in mirrored:
        return None
    a, b = moment(node.this), moment(node.expression)
    if a is None or b is None or a[0] == b[0]:
        return None
    if a[0] == 0:  # left.t op right.t  ->  right.t op' left.t
        a, b, op = b, a, mirrored[op]
    # right.t + a_off (op) left.t + b_off  ->  right.t (op) left.t + d
    d = b[2] - a[2]
    pair = (b[1], a[1])
    if op == "GTE":
        return pair, d, None
    if op == "GT":
        return pair, d + 1, None
    if op == "LTE":
        return pair, None, d
    return pair, None, d - 1


def _keeps_first(where: exp.Where | None, column: str) -> bool:
    """Whether WHERE keeps only the rows numbered 1 in ``column`` (rn = 1, rn <= 1, rn < 2)."""
    if where is None:
        return False
    for part in conjuncts(where.this):
        left, right = part.args.get("this"), part.args.get("expression")
        if not (isinstance(left, exp.Column) and left.name == column):
            continue
        value = _literal_int(right)
        if (isinstance(part, (exp.EQ, exp.LTE)) and value == 1) or (
            isinstance(part, exp.LT) and value == 2
        ):
            return True
    return False


def _literal_int(node: Any) -> int | None:
    if isinstance(node, exp.Literal) and not node.is_string and node.this.isdigit():
        return int(node.this)
    return None


_NO_MATCH: Any = object()
"""The lookup key of a row whose key has a NULL: found in no cache."""


def _lookup_key(names: list[str], missing: Any) -> Callable[[Any], Any]:
    """The (composite) key of ``names``; ``missing`` when any of them is NULL."""
    getters = [operator.methodcaller("get", n) for n in names]

    def key(row: Any) -> Any:
        values = tuple(g(row) for g in getters)
        if any(v is None for v in values):
            return missing
        return values[0] if len(values) == 1 else values

    return key


def _all_present(names: list[str]) -> Compiled:
    getters = [operator.methodcaller("get", n) for n in names]

    def present(row: Any) -> bool:
        return all(g(row) is not None for g in getters)

    return present


def _key_of(names: list[str]) -> Callable[[Any], Any]:
    if len(names) == 1:
        getter: Callable[[Any], Any] = operator.itemgetter(names[0])
        return getter
    return operator.itemgetter(*names)


def _visible(condition: Compiled, output: Callable[[Any, Any], Any]) -> Callable[[Any, Any], bool]:
    """HAVING as a predicate on a key's aggregate result (the row ``output`` makes)."""

    holds = _holds(condition)

    def visible(key: Any, values: Any) -> bool:
        return holds(output(key, values))

    return visible


def _holds(condition: Compiled) -> Callable[[Any], bool]:
    def holds(row: Any) -> bool:
        return is_true(condition(row))

    return holds


def _nullable_key_of(names: list[str]) -> Callable[[Any], Any]:
    """The key of an outer join's row: a missing column is NULL (and joins nothing)."""
    getters = [operator.methodcaller("get", n) for n in names]
    if len(getters) == 1:
        return getters[0]

    def key(row: Any) -> tuple[Any, ...]:
        return tuple(g(row) for g in getters)

    return key


def _combine(
    left: str,
    right: str,
    shared: set[str],
    left_columns: tuple[str, ...] = (),
    right_columns: tuple[str, ...] = (),
) -> Callable[[Any, Any], dict[str, Any]]:
    """A joined row: every column as ``alias.column``, and by its own name where only
    one side has it; the missing side of an outer join's row is all NULL."""

    def combine(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any]:
        if a is None:
            a = dict.fromkeys(left_columns)
        if b is None:
            b = dict.fromkeys(right_columns)
        row = {k: v for k, v in a.items() if k not in shared}
        row.update((k, v) for k, v in b.items() if k not in shared)
        row.update((f"{left}.{k}", v) for k, v in a.items())
        row.update((f"{right}.{k}", v) for k, v in b.items())
        return row

    return combine


def _source_column(item: exp.Expr) -> tuple[str, str] | None:
    """(output name, column read) of a SELECT item that is a bare column."""
    inner = item.this if isinstance(item, exp.Alias) else item
    if isinstance(inner, exp.Column):
        return (item.alias if isinstance(item, exp.Alias) else inner.name), inner.name
    return None


def _carried_watermark(items: list[exp.Expr], relation: Relation) -> tuple[str, int] | None:
    """The relation's watermark, renamed, when its time column is selected as it is."""
    if relation.watermark is None:
        return None
    column, delay = relation.watermark
    if any(isinstance(item, exp.Star) for item in items):
        return relation.watermark
    for item in items:
        pair = _source_column(item)
        if pair is not None and pair[1] == column:
            return pair[0], delay
    return None


def _carried_types(items: list[exp.Expr], relation: Relation) -> dict[str, str]:
    types: dict[str, str] = {}
    for item in items:
        if isinstance(item, exp.Star):
            types.update(relation.types)
            continue
        pair = _source_column(item)
        if pair is not None and pair[1] in relation.types:
            types[pair[0]] = relation.types[pair[1]]
    return types


def _as_dict(row: Any) -> Any:
    """A typed row as a dict (other rows as they are), for sinks that write dicts."""
    return msgspec.structs.asdict(row) if isinstance(row, msgspec.Struct) else row


class _RowMaker:
    """Makes an aggregate's output row of the values at ``picks`` of a tuple: a typed
    row of ``names`` (``typed``), or a dict. Pickles by its fields (Ray actors make
    the row class again from the names)."""

    def __init__(self, picks: tuple[int, ...], names: tuple[str, ...], typed: bool) -> None:
        self.picks, self.names, self.typed = picks, names, typed
        pick = operator.itemgetter(*picks)
        kind = row_type({n: "ANY" for n in names}) if typed else None
        self.kind = kind
        """The typed row class (None: dicts)."""
        self.make: Callable[[tuple[Any, ...]], Any]
        if kind is not None:
            self.make = (lambda v: kind(pick(v))) if len(picks) == 1 else (lambda v: kind(*pick(v)))
        elif len(picks) == 1:
            only = names[0]
            self.make = lambda v: {only: pick(v)}
        else:
            self.make = lambda v: dict(zip(names, pick(v), strict=True))

    def __call__(self, values: tuple[Any, ...]) -> Any:
        return self.make(values)

    def __reduce__(self) -> tuple[Any, ...]:
        return _RowMaker, (self.picks, self.names, self.typed)


class _WindowRow:
    """A window aggregate's output row of (key, window start, end, result), made by
    ``make``; ``many`` makes a whole window's rows in one loop."""

    def __init__(self, make: _RowMaker, single: bool, only_count: bool) -> None:
        self.make, self.single, self.only_count = make, single, only_count
        # COUNT(*) by one key into typed rows of (key, start, end, count) as they are
        self.direct = make.kind if single and only_count and make.picks == (0, 1, 2, 3) else None

    def __call__(self, k: Any, start: int, end: int, values: Any) -> Any:
        keys = (k,) if self.single else k
        return self.make(
            (*keys, start, end, values) if self.only_count else (*keys, start, end, *values)
        )

    def many(self, start: int, end: int, pairs: Iterable[tuple[Any, Any]]) -> list[Any]:
        kind = self.direct
        if kind is not None:
            return [kind(k, start, end, n) for k, n in pairs]
        return [self(k, start, end, values) for k, values in pairs]

    def __reduce__(self) -> tuple[Any, ...]:
        return _WindowRow, (self.make, self.single, self.only_count)


def _event_time(column: str, typed: bool = False) -> Callable[[Any], int]:
    read = _read(column, typed)

    def event_time(row: Any) -> int:
        try:
            return timestamp_ms(read(row))
        except ValueError as exc:
            raise ValueError(f"event time {column}: {exc}") from None

    return event_time


def _read(column: str, typed: bool) -> Compiled:
    """A column read, from C: by attribute from typed rows, ``row.get`` from dicts
    (a missing field is NULL)."""
    if typed:
        attribute: Compiled = operator.attrgetter(column)
        return attribute
    getter: Compiled = operator.methodcaller("get", column)
    return getter


class _Resolver:
    """Resolves a column reference to the name it reads, for rows typed or not."""

    __slots__ = ("resolve", "typed")

    def __init__(self, resolve: Callable[[exp.Column], str], typed: bool) -> None:
        self.resolve = resolve
        self.typed = typed

    def __call__(self, node: exp.Column) -> str:
        return self.resolve(node)


def _typed_schema(table: TableDef) -> dict[str, str] | None:
    """The schema to decode a JSON-lines file table into typed rows, when its columns
    all have types typed rows know (and the table gives no schema of its own)."""
    if table.connector != "file" or "schema" in table.options:
        return None
    path = str(table.options.get("path", ""))
    fmt = table.options.get("format") or infer_format(path) or "json"
    if fmt != "json":
        return None
    schema = {c.name: c.type.split("(")[0].strip().upper() for c in table.columns}
    if not schema or any(kind not in SCHEMA_TYPES for kind in schema.values()):
        return None
    return schema


def _tuple_key(fns: list[Compiled]) -> Callable[[Any], Any]:
    """The tuple of ``fns``' values of a row (written out for up to three: a generator
    per row costs more than the values)."""
    if len(fns) == 1:
        (f,) = fns
        return lambda row: (f(row),)
    if len(fns) == 2:
        f, g = fns
        return lambda row: (f(row), g(row))
    if len(fns) == 3:
        f, g, h = fns
        return lambda row: (f(row), g(row), h(row))

    def key(row: Any) -> tuple[Any, ...]:
        return tuple(f(row) for f in fns)

    return key


def _getter(name: str) -> Compiled:
    return lambda row: row.get(name)


def _output_name(item: exp.Expr, index: int) -> str:
    if isinstance(item, exp.Alias):
        return item.alias
    if isinstance(item, exp.Column):
        return item.name
    return f"EXPR${index}"


def _check_unique(outputs: list[tuple[str, Compiled]], items: list[exp.Expr]) -> None:
    seen: set[str] = set()
    for (name, _), item in zip(
        outputs, itertools.chain(items, itertools.repeat(None)), strict=False
    ):
        if name in seen:
            raise fail(item, f"output column {name} is named twice; give one an alias (AS ...)")
        seen.add(name)


def _time_order(window: exp.Window) -> exp.Column | None:
    """The column a window is ordered by, when that is one column, ascending."""
    order = window.args.get("order")
    ordered = order.expressions if order is not None else []
    if len(ordered) != 1 or ordered[0].args.get("desc"):
        return None
    column = ordered[0].this
    return column if isinstance(column, exp.Column) else None


def _over_window(node: exp.Window, named: dict[str, exp.Window]) -> exp.Window:
    """The window an OVER names or spells out."""
    reference = node.args.get("alias")
    if reference is None:
        return node
    name = reference.name if isinstance(reference, exp.Identifier) else str(reference)
    if name not in named:
        known = ", ".join(named) or "none"
        raise fail(node, f"OVER {name}: no window {name} in the WINDOW clause (named: {known})")
    return named[name]


def _window_text(window: exp.Window) -> str:
    parts = []
    partition = window.args.get("partition_by")
    if partition:
        parts.append("PARTITION BY " + ", ".join(p.sql() for p in partition))
    for key in ("order", "spec"):
        if window.args.get(key) is not None:
            parts.append(window.args[key].sql())
    return "(" + " ".join(parts) + ")"


def _over_frame(window: exp.Window, node: exp.Expr) -> tuple[Literal["rows", "range"], int | None]:
    """(frame kind, records or ms preceding; None: unbounded) of an OVER window."""
    spec = window.args.get("spec")
    if spec is None:  # SQL's default with ORDER BY: every row up to the current one's peers
        return "range", None
    kind = str(spec.args.get("kind", "")).upper()
    start, side = spec.args.get("start"), str(spec.args.get("start_side") or "").upper()
    end = spec.args.get("end")
    end_text = str(end).upper() if isinstance(end, str) else end.sql().upper() if end else ""
    spelled = (
        "ROWS BETWEEN 10 PRECEDING AND CURRENT ROW, RANGE BETWEEN INTERVAL '1' MINUTE "
        "PRECEDING AND CURRENT ROW, or UNBOUNDED PRECEDING"
    )
    if end_text not in ("", "CURRENT ROW") or side != "PRECEDING" or kind not in ("ROWS", "RANGE"):
        raise fail(
            node,
            f"the frame {spec.sql()} is not supported: frames end at the current row "
            f"(a row is emitted when the watermark passes it, so FOLLOWING rows would be "
            f"unknown): {spelled}",
        )
    if isinstance(start, str) and start.upper() == "UNBOUNDED":
        return ("rows" if kind == "ROWS" else "range"), None
    if kind == "ROWS":
        if not isinstance(start, exp.Literal) or start.is_string or not start.name.isdigit():
            raise fail(node, f"ROWS frames count rows: ROWS BETWEEN 10 PRECEDING, not {spec.sql()}")
        return "rows", int(start.name)
    if not isinstance(start, exp.Interval):
        raise fail(
            node,
            "RANGE frames are a time interval before the current row: RANGE BETWEEN "
            f"INTERVAL '10' SECOND PRECEDING AND CURRENT ROW, not {spec.sql()}",
        )
    return "range", interval_ms(start)


def _no_partition(row: Any) -> None:
    """The key of an OVER without PARTITION BY: one partition of every row."""
    return None


class _OverRow:
    """An over aggregate's output row: the input row's columns as a dict, and its
    aggregates as ``__over0``, ``__over1``, ...; or, with ``picks``, the query's
    output row itself: (output name, the input column it is or the place of the
    aggregate), in order — a typed row when the input rows are typed and the output
    names plain identifiers, all different (``kind``), a dict otherwise. Pickles by
    its fields, for Ray (actors make the row class again from the names)."""

    def __init__(
        self,
        columns: tuple[str, ...],
        slots: tuple[str, ...],
        typed: bool,
        picks: tuple[tuple[str, str | int], ...] | None = None,
    ) -> None:
        self.columns, self.slots, self.typed, self.picks = columns, slots, typed, picks
        self.reads: tuple[tuple[str, int, Callable[[Any], Any] | None], ...] | None = None
        self.kind: type | None = None
        """The typed output row class (None: dicts)."""
        self.order: Callable[[tuple[Any, ...]], Any] | None = None
        self.single = False
        self.get: Callable[[Any], tuple[Any, ...]] = lambda row: ()
        if picks is None:
            return
        self.reads = tuple(
            (name, source, None) if isinstance(source, int) else (name, -1, _read(source, typed))
            for name, source in picks
        )
        names = [name for name, _ in picks]
        if typed and len(set(names)) == len(names) and all(map(is_plain_identifier, names)):
            self.kind = row_type({n: "ANY" for n in names})
            # The row's columns read in one call (twice the one column: a tuple all
            # the same), then the aggregates: picked into output order.
            read = [s for _, s in picks if not isinstance(s, int)]
            if read:
                self.get = operator.attrgetter(*(read * 2 if len(read) == 1 else read))
            width = 2 if len(read) == 1 else len(read)
            self.single = len(picks) == 1  # itemgetter gives the value, not a tuple
            self.order = operator.itemgetter(
                *(width + s if isinstance(s, int) else read.index(s) for _, s in picks)
            )

    def __call__(self, row: Any, values: list[Any]) -> Any:
        kind = self.kind
        if kind is not None:
            picked = self.order((*self.get(row), *values))  # type: ignore[misc]
            return kind(picked) if self.single else kind(*picked)
        reads = self.reads
        if reads is not None:
            return {name: values[i] if get is None else get(row) for name, i, get in reads}
        out = {c: getattr(row, c) for c in self.columns} if self.typed else dict(row)
        out.update(zip(self.slots, values, strict=True))
        return out

    def __reduce__(self) -> tuple[Any, ...]:
        return _OverRow, (self.columns, self.slots, self.typed, self.picks)


def _is_aggregate(node: exp.Expr) -> bool:
    return isinstance(node, (exp.Count, *_AGGREGATES))


def _aggregates_in(node: exp.Expr) -> list[exp.Expr]:
    return [n for n in node.walk() if isinstance(n, exp.Expr) and _is_aggregate(n)]


def _agg_of(node: exp.Expr, compile: Callable[[exp.Expr], Compiled]) -> _Agg:
    if isinstance(node, exp.Filter):  # AGG(x) FILTER (WHERE condition)
        where = node.expression
        if any(_is_aggregate(n) for n in where.walk() if isinstance(n, exp.Expr)):
            raise fail(node, "an aggregate's FILTER (WHERE ...) cannot hold an aggregate")
        return replace(_agg_of(node.this, compile), where=compile(where.this))
    inner = node.this
    if isinstance(node, exp.Count):
        if isinstance(inner, exp.Star) or inner is None:
            return _Agg("count_star", None)
        if isinstance(inner, exp.Distinct):
            if len(inner.expressions) != 1:
                raise fail(node, "COUNT(DISTINCT ...) takes one expression")
            return _Agg("count_distinct", compile(inner.expressions[0]))
        return _Agg("count", compile(inner))
    if isinstance(inner, exp.Distinct):
        raise fail(node, f"{node.key.upper()}(DISTINCT ...) is not supported; COUNT(DISTINCT) is")
    if any(_is_aggregate(n) for n in inner.walk() if isinstance(n, exp.Expr)):
        raise fail(node, "aggregates cannot be nested")
    return _Agg(_AGGREGATES[type(node)], compile(inner))


SETTINGS = {
    "job.id": "the job's id (checkpoints are found by it: needed for --resume)",
    "job.name": "the job's name",
    "parallelism": "default parallelism of the steps",
    "batch.size": "records per micro-batch",
    "checkpoint.path": "folder of the checkpoints (turns checkpointing on)",
    "checkpoint.interval": "time between checkpoints, e.g. '10s' (default 1 min)",
    "changelog.mode": "how a GROUP BY without a window emits: 'retract' (+I, -U, +U rows) "
    "or 'upsert' (+I, +U); unset: the updated row (or final rows on a bounded input)",
    "changelog.column": "the column that carries a changelog row's kind (default 'op')",
    "late.table": "a table every window aggregate writes its late rows to (rows behind the "
    "watermark, as read); unset: they are counted on the step",
    "error.policy": "what happens to a row an expression, a function or a decoder rejects: "
    "'fail' (default: the job fails naming the row), 'skip' (counted and logged) or "
    "'dead-letter' (written to SET 'dead-letter.table')",
    "dead-letter.table": "the table rejected rows are written to, with the step and the error "
    "(needs SET 'error.policy' = 'dead-letter')",
}


def _settings(script: Script) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, (value, statement) in script.settings.items():
        if key not in SETTINGS:
            known = "; ".join(f"'{k}': {v}" for k, v in SETTINGS.items())
            raise fail(statement, f"SET {key!r} is not a setting reflow knows; known: {known}")
        if key in {"parallelism", "batch.size"}:
            try:
                number = int(value)
                if number < 1:
                    raise ValueError(value)
            except ValueError:
                raise fail(
                    statement, f"SET {key!r} needs a whole number >= 1, not {value!r}"
                ) from None
            values[key] = number
        elif key == "changelog.mode":
            if value not in ("retract", "upsert"):
                raise fail(
                    statement, f"SET 'changelog.mode' is 'retract' or 'upsert', not {value!r}"
                )
            values[key] = value
        elif key == "error.policy":
            if value not in ("fail", "skip", "dead-letter"):
                raise fail(
                    statement,
                    f"SET 'error.policy' is 'fail', 'skip' or 'dead-letter', not {value!r}",
                )
            values[key] = value
        elif key == "checkpoint.interval":
            try:
                values[key] = millis(value, "checkpoint.interval")
            except ReflowError as exc:
                raise fail(statement, f"SET 'checkpoint.interval': {exc}") from None
        else:
            values[key] = value
    if "changelog.column" in values and "changelog.mode" not in values:
        raise SqlError("SET 'changelog.column' needs SET 'changelog.mode' = 'retract' or 'upsert'")
    if (values.get("error.policy") == "dead-letter") != ("dead-letter.table" in values):
        raise SqlError(
            "SET 'error.policy' = 'dead-letter' and SET 'dead-letter.table' = '<table>' "
            "go together: the table is where rejected rows are written"
        )
    if "checkpoint.interval" in values and "checkpoint.path" not in values:
        raise SqlError("SET 'checkpoint.interval' needs SET 'checkpoint.path' = '<folder>' too")
    return values


def _functions(
    script: Script,
    given: Mapping[str, Callable[..., Any]],
    allowed_modules: tuple[str, ...] | None,
) -> dict[str, Any]:
    functions = {name.upper(): fn for name, fn in given.items()}
    for name, (path, statement) in script.functions.items():

        def where(message: str, statement: exp.Expr = statement, name: str = name) -> ConfigError:
            return fail(statement, f"CREATE FUNCTION {name}: {message}")

        functions[name] = resolve_callable(path, where, allowed_modules)
    return functions


def plan_script(
    script: Script,
    *,
    name: str = "sql",
    print_sink: Any = None,
    parallelism: int | None = None,
    job_id: str | None = None,
    functions: Mapping[str, Callable[..., Any]] | None = None,
    check_connector: ConnectorCheck | None = None,
    allowed_modules: tuple[str, ...] | None = None,
) -> Job:
    """One Job running every ``INSERT INTO`` of ``script`` (and its bare SELECTs into
    ``print_sink``, stdout by default); ``SET`` statements configure it and
    ``functions`` add user functions to those ``CREATE FUNCTION`` names.

    Jobs submitted through the API pass ``check_connector`` (each table's connector
    and options, checked against the submission policy) and ``allowed_modules``
    (where ``CREATE FUNCTION`` may import from)."""
    settings = _settings(script)
    flow = Flow(
        settings.get("job.name", name),
        parallelism=parallelism or settings.get("parallelism"),
        batch_size=settings.get("batch.size"),
    )
    if "checkpoint.path" in settings:
        flow.checkpointing(settings["checkpoint.path"], settings.get("checkpoint.interval", 60_000))
    planner = _Planner(
        script, flow, _functions(script, functions or {}, allowed_modules), check_connector
    )
    if "changelog.mode" in settings:
        column = settings.get("changelog.column", "op")
        planner.changelog = (column, settings["changelog.mode"] == "retract")
    planner.late_table = settings.get("late.table")
    if not script.inserts and not script.queries:
        raise SqlError("the SQL has no INSERT INTO ... SELECT or SELECT to run")
    # Every INSERT INTO one table goes to one sink: two sinks of one table would write
    # the same file (or topic, or rows) side by side, one over the other.
    into: dict[str, list[Stream[Any]]] = {}
    for index, (target, query) in enumerate(script.inserts):
        planner.table(query, target, "sink")
        # Typed rows go to the sink as they are: the runtime gives a sink that does
        # not encode them itself (SinkWriter.typed_rows) the dict of each row.
        relation = planner.query(query)
        if index in script.insert_columns:
            names, node = script.insert_columns[index]
            relation = planner.renamed(relation, script.tables[target], names, node)
        into.setdefault(target, []).append(relation.stream)
    for key in ("late.table", "dead-letter.table"):
        if key == "late.table" and not planner.late_streams:
            continue  # refused below: no window has late rows
        if settings.get(key) in into:
            raise fail(
                script.settings[key][1],
                f"SET {key!r} = {settings[key]!r}: that table is also written by INSERT INTO; "
                "give these rows a table of their own",
            )
    if settings.get("late.table") is not None and settings.get("late.table") == settings.get(
        "dead-letter.table"
    ):
        raise fail(
            script.settings["late.table"][1],
            "SET 'late.table' and SET 'dead-letter.table' name one table: give each its own",
        )
    for target, streams in into.items():
        first, *others = streams
        stream = first.union(*others, id=planner.step(f"{target}-inserts")) if others else first
        stream.sink(planner.connector(script.tables[target], "sink"), id=planner.step(target))
    for query in script.queries:
        sink = print_sink if print_sink is not None else Connectors.get("stdout")
        planner.query(query).stream.sink(sink, id=planner.step("print"))
    if "error.policy" in settings:
        dead_letter = None
        if "dead-letter.table" in settings:
            statement = script.settings["dead-letter.table"][1]
            table = planner.table(statement, settings["dead-letter.table"], "sink")
            dead_letter = planner.connector(table, "sink")
        flow.error_policy(ErrorPolicy(settings["error.policy"], dead_letter=dead_letter))
    if planner.late_table is not None:
        statement = script.settings["late.table"][1]
        if not planner.late_streams:
            raise fail(
                statement, "SET 'late.table': no window or OVER aggregate has late rows to write"
            )
        table = planner.table(statement, planner.late_table, "sink")
        first, *others = planner.late_streams
        late = first.union(*others, id=planner.step("late-union")) if others else first
        late.sink(planner.connector(table, "sink"), id=planner.step(f"{table.name}-late"))
    return flow.to_job(job_id=job_id or settings.get("job.id"))


def sql_job(
    text: str,
    *,
    name: str = "sql",
    file: str | None = None,
    print_sink: Any = None,
    parallelism: int | None = None,
    job_id: str | None = None,
    functions: Mapping[str, Callable[..., Any]] | None = None,
    check_connector: ConnectorCheck | None = None,
    allowed_modules: tuple[str, ...] | None = None,
) -> Job:
    """The Job a SQL script describes (``reflow.sql``); SqlError names line:column.
    ``functions`` are Python functions callable from the SQL by name; the other
    options as ``plan_script``."""
    try:
        return plan_script(
            parse_script(text, file),
            name=name,
            print_sink=print_sink,
            parallelism=parallelism,
            job_id=job_id,
            functions=functions,
            check_connector=check_connector,
            allowed_modules=allowed_modules,
        )
    except SqlError as exc:
        raise exc.located(file) if file is not None and exc.file is None else exc from None


def load_sql_file(path: str, *, parallelism: int | None = None) -> Job:
    """The Job of the SQL script at ``path``, named after the file."""
    from pathlib import Path

    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise SqlError(f"cannot read {path}: {exc.strerror or exc}") from None
    return sql_job(text, name=file.stem, file=str(path), parallelism=parallelism)
