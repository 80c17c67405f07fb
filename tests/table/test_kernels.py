"""The generated select loop (kernel) against the per-node closures it replaces:
the same rows in, the same rows, NULLs and rejected rows out, on dict rows and
typed rows."""

from __future__ import annotations

import random
from typing import Any

import pytest
import sqlglot
from sqlglot import exp

from reflow.connectors.typed import row_type
from reflow.table.expressions import compile_expression, condition_of, is_true
from reflow.table.kernels import select_kernel

COLUMNS = ("a", "b", "x", "s", "flag")
SCHEMA = {"a": "BIGINT", "b": "BIGINT", "x": "DOUBLE", "s": "VARCHAR", "flag": "BOOLEAN"}

EXPRESSIONS = [
    "a + b",
    "a - 3",
    "10 - a",
    "a * x",
    "a / b",
    "a / 4",
    "x / 2",
    "a % 7",
    "a % b",
    "-a",
    "-(a + 1)",
    "a = b",
    "a <> 3",
    "a > b",
    "x >= 0.5",
    "a < 4",
    "b <= a",
    "a > 0 AND b > 0",
    "a > 0 OR b > 0",
    "NOT a > 0",
    "NOT flag",
    "a IS NULL",
    "s IS NOT NULL",
    "a BETWEEN b AND 10",
    "a BETWEEN -5 AND 5",
    "a IN (1, 2, b)",
    "s LIKE 'a%'",
    "CASE WHEN a > 0 THEN 'pos' WHEN a < 0 THEN 'neg' ELSE s END",
    "CAST(x AS BIGINT)",
    "COALESCE(a, b, 0)",
    "UPPER(s)",
    "s || '-' || a",
    "(a + b) * 2 > x OR flag",
    "(a > 0 AND (b IS NULL OR b % 2 = 0)) OR NOT (x < 0.25)",
    "a + NULL",
    "TRUE AND flag",
]

CONDITIONS = [
    "a > 0",
    "a % 10 < 4",
    "a > 0 AND b > 0 AND x > 0.1",
    "flag",
    "a / b > 1",
    "a > 0 OR s LIKE 'b%'",
    "NOT (a IS NULL) AND a BETWEEN b AND 9",
    "COALESCE(a, 0) > 2",
]


def random_rows(count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)

    def maybe(value: Any) -> Any:
        return None if rng.random() < 0.2 else value

    return [
        {
            "a": maybe(rng.randint(-10, 10)),
            "b": maybe(rng.randint(-3, 3)),  # zero divides: the row is rejected
            "x": maybe(rng.uniform(-1, 1)),
            "s": maybe(rng.choice(["apple", "banana", "", "avocado"])),
            "flag": maybe(rng.random() < 0.5),
        }
        for _ in range(count)
    ]


def parse(text: str) -> exp.Expr:
    node: exp.Expr = sqlglot.parse_one(f"SELECT {text}").expressions[0]
    return node


def by_closures(
    condition: exp.Expr | None, outputs: list[tuple[str, exp.Expr]], rows: list[Any], typed: bool
) -> tuple[list[Any], list[Any]]:
    cond = condition_of(condition)[0] if condition is not None else None
    if typed and condition is not None:
        cond = compile_expression(condition, attributes=True)
    fns = [(n, compile_expression(e, attributes=typed)) for n, e in outputs]
    kept, rejected = [], []
    for row in rows:
        try:
            if cond is not None and not is_true(cond(row)):
                continue
            kept.append({n: f(row) for n, f in fns})
        except Exception:
            rejected.append(row)
    return kept, rejected


def by_kernel(
    condition: exp.Expr | None, outputs: list[tuple[str, exp.Expr]], rows: list[Any], typed: bool
) -> tuple[list[Any], list[Any]]:
    kernel = select_kernel(
        condition,
        outputs,
        resolve=lambda column: column.name,
        typed=typed,
        fallback=lambda node: compile_expression(node, attributes=typed),
    )
    rejected: list[Any] = []
    kept = kernel.build(lambda row, exc: rejected.append(row))(rows)
    return kept, rejected


@pytest.mark.parametrize("typed", [False, True], ids=["dicts", "typed"])
@pytest.mark.parametrize("text", EXPRESSIONS)
def test_each_expression_gives_what_the_closures_give(text: str, typed: bool) -> None:
    rows: list[Any] = random_rows(400, seed=len(text))
    if typed:
        kind = row_type(SCHEMA)
        rows = [kind(**r) for r in rows]
    outputs = [("v", parse(text))]
    expected = by_closures(None, outputs, rows, typed)
    got = by_kernel(None, outputs, rows, typed)
    assert got == expected
    assert len(got[0]) + len(got[1]) == len(rows)  # every row kept or rejected


@pytest.mark.parametrize("typed", [False, True], ids=["dicts", "typed"])
@pytest.mark.parametrize("condition", CONDITIONS)
def test_each_where_keeps_and_rejects_the_rows_the_closures_do(condition: str, typed: bool) -> None:
    rows: list[Any] = random_rows(400, seed=len(condition))
    if typed:
        kind = row_type(SCHEMA)
        rows = [kind(**r) for r in rows]
    outputs = [(c, exp.column(c)) for c in COLUMNS] + [("sum", parse("a + b"))]
    expected = by_closures(parse(condition), outputs, rows, typed)
    kept, rejected = by_kernel(parse(condition), outputs, rows, typed)
    assert kept == expected[0]
    if " AND " not in condition:  # a conjunction stops at its first part not TRUE
        assert rejected == expected[1]
    assert kept  # the condition keeps some rows and drops others
    assert len(kept) < len(rows)


def test_the_kernel_source_holds_no_text_of_the_query() -> None:
    """Constants, odd column names and functions are bound values, not source."""
    hostile = "x'); import os; os.system('echo pwned'); ('"
    quoted = hostile.replace("'", "''")
    condition = parse(f'"{hostile}" = \'{quoted}\' AND "a b" > 1')
    kernel = select_kernel(
        condition,
        [("out", parse(f"'{quoted}'"))],
        resolve=lambda column: column.name,
        typed=True,
        fallback=lambda node: compile_expression(node, attributes=True),
    )
    assert "pwned" not in kernel.source
    assert "os" not in kernel.source.split()
    assert "a b" not in kernel.source
    assert hostile in kernel.values.values()


@pytest.mark.parametrize(
    "projection",
    [
        "a, b * 2 AS b, x, s, flag",  # one column computed anew
        "b AS a, a AS b, x + a AS x, s, NOT flag AS flag",  # each reads the row as it came
        "a / b AS a, b, x, s, flag",  # a zero divisor rejects the row, unchanged
    ],
)
def test_a_projection_in_place_gives_what_new_rows_give(projection: str) -> None:
    """A table source's typed rows with the same columns out are updated, not copied."""
    kind = row_type(SCHEMA)
    condition = parse("a IS NULL OR a > -8")
    items = sqlglot.parse_one(f"SELECT {projection}").expressions
    outputs = [(item.alias_or_name, item) for item in items]
    assert [name for name, _ in outputs] == list(COLUMNS)

    def run(in_place: bool) -> tuple[list[Any], list[Any]]:
        rows = [kind(**r) for r in random_rows(400, 11)]
        kernel = select_kernel(
            condition,
            outputs,
            resolve=lambda column: column.name,
            typed=True,
            fallback=lambda node: compile_expression(node, attributes=True),
            typed_outputs=True,
            in_place=in_place,
        )
        assert ("_Row(" in kernel.source) is not in_place
        rejected: list[Any] = []
        kept = kernel.build(lambda row, exc: rejected.append(row))(rows)
        as_tuples = [tuple(getattr(r, c) for c in COLUMNS) for r in kept]
        return as_tuples, [tuple(getattr(r, c) for c in COLUMNS) for r in rejected]

    copied, in_place = run(False), run(True)
    assert in_place == copied
    assert copied[0] and (copied[1] or "/" not in projection)


def test_only_a_table_sources_own_rows_are_updated_in_place(tmp_path: Any) -> None:
    from reflow.table.planner import SelectOp, sql_job

    text = f"""
CREATE TABLE t (a BIGINT, b BIGINT) WITH ('connector' = 'file', 'path' = '{tmp_path}/t.jsonl');
CREATE SINK o1 (a BIGINT) WITH ('connector' = 'file', 'path' = '{tmp_path}/o1.jsonl');
CREATE SINK o2 (a BIGINT) WITH ('connector' = 'file', 'path' = '{tmp_path}/o2.jsonl');
INSERT INTO o1 SELECT a, b * 2 AS b FROM t WHERE a > 0;
INSERT INTO o2
WITH c AS (SELECT a + 1 AS a, b FROM t)
SELECT a, b * 3 AS b FROM c UNION ALL SELECT a, b * 4 AS b FROM c;
"""
    job = sql_job(text)
    sources = [
        n.payload.kernel.source
        for n in job.stream_graph.nodes
        if isinstance(n.payload, SelectOp) and n.payload.kernel is not None
    ]
    in_place = [s for s in sources if "row.b = " in s or "row.a = " in s]
    # o1's select and the CTE's select read their own source's rows; the two
    # selects of c share the CTE's rows, so they make new ones.
    assert len(in_place) == 2 and len(sources) == 4
