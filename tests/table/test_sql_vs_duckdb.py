"""Streaming SQL against a reference: for random inputs (NULLs included), reflow's
results equal DuckDB's on the same rows read in batch. Window results are
compared as sets of rows; DuckDB computes the windows with arithmetic on the
event time (it has no window table functions)."""

from __future__ import annotations

import calendar
import math
import random
import tempfile
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from reflow import JobStatus
from reflow.table import sql_job
from reflow.testing import memory_store, run_job
from tests.table.duck import load

duckdb = pytest.importorskip("duckdb", reason="duckdb (the reference engine) is a dev dependency")

COLUMNS = "a BIGINT, b DOUBLE, s VARCHAR, k BIGINT, ts BIGINT"
WORDS = ["apple", "banana", "cherry", "date", "fig", "grape", None]


def _rows(seed: int, n: int = 400) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    ts = 1_700_000_000_000
    for _ in range(n):
        ts += rng.randint(0, 900)
        rows.append(
            {
                "a": rng.choice([None, *range(-20, 40)]),
                "b": rng.choice([None, round(rng.uniform(-50, 50), 3)]),
                "s": rng.choice(WORDS),
                "k": rng.choice([None, 1, 2, 3, 4, 5]),
                # out of order by up to 400 ms, within the 500 ms watermark delay
                "ts": ts - rng.randint(0, 400),
            }
        )
    return rows


def _reflow(
    select: str,
    rows: list[dict[str, Any]],
    parallelism: int = 1,
    typed: bool = False,
    settings: dict[str, str] | None = None,
) -> list[tuple[Any, ...]]:
    """The query's rows from reflow: the table read from memory (dict rows) or, with
    ``typed``, from a JSON-lines file decoded into typed rows by the DDL's schema."""
    name = uuid.uuid4().hex[:8]
    memory_store[f"in-{name}"] = list(rows)
    memory_store[f"out-{name}"] = []
    source = f"'connector' = 'memory', 'collection' = 'in-{name}'"
    if typed:
        path = Path(tempfile.mkdtemp()) / "t.jsonl"
        path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
        source = f"'connector' = 'file', 'path' = '{path}', 'format' = 'json'"
    sets = "".join(f"SET '{k}' = '{v}';\n" for k, v in (settings or {}).items())
    text = f"""{sets}
        CREATE TABLE t ({COLUMNS}, WATERMARK FOR ts AS ts - INTERVAL '500' MILLISECOND)
        WITH ({source});
        CREATE TABLE out_t (x BIGINT) WITH ('connector' = 'memory', 'collection' = 'out-{name}');
        INSERT INTO out_t {select};
    """
    result = run_job(sql_job(text, parallelism=parallelism))
    assert result.status is JobStatus.COMPLETED, result.error
    assert sum(s.rejected + s.late for s in result.metrics.steps) == 0  # no row lost
    return [tuple(r.values()) for r in memory_store.pop(f"out-{name}")]


def _reflow_many(
    selects: list[str], rows: list[dict[str, Any]], parallelism: int = 1, typed: bool = False
) -> list[list[tuple[Any, ...]]]:
    """The rows of each query, from one job: one script reading the table once and
    inserting each query into a sink of its own (a job's start costs more than these
    queries' rows)."""
    name = uuid.uuid4().hex[:8]
    memory_store[f"in-{name}"] = list(rows)
    source = f"'connector' = 'memory', 'collection' = 'in-{name}'"
    if typed:
        path = Path(tempfile.mkdtemp()) / "t.jsonl"
        path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
        source = f"'connector' = 'file', 'path' = '{path}', 'format' = 'json'"
    text = f"""
        CREATE TABLE t ({COLUMNS}, WATERMARK FOR ts AS ts - INTERVAL '500' MILLISECOND)
        WITH ({source});
    """
    for index, select in enumerate(selects):
        memory_store[f"out-{name}-{index}"] = []
        text += f"""
        CREATE TABLE out{index} (x BIGINT)
        WITH ('connector' = 'memory', 'collection' = 'out-{name}-{index}');
        INSERT INTO out{index} {select};
        """
    result = run_job(sql_job(text, parallelism=parallelism))
    assert result.status is JobStatus.COMPLETED, result.error
    assert sum(s.rejected + s.late for s in result.metrics.steps) == 0  # no row lost
    return [
        [tuple(r.values()) for r in memory_store.pop(f"out-{name}-{i}")]
        for i in range(len(selects))
    ]


def _duckdb(select: str, rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    con = duckdb.connect()
    load(con, "t", COLUMNS, rows)
    return [tuple(row) for row in con.execute(select).fetchall()]


def _same(ours: list[tuple[Any, ...]], reference: list[tuple[Any, ...]], query: str = "") -> None:
    def canonical(row: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(round(v, 6) if isinstance(v, float) and math.isfinite(v) else v for v in row)

    assert Counter(map(canonical, ours)) == Counter(map(canonical, reference)), query
    assert ours, f"the query produced no rows: the comparison proves nothing ({query})"


def _queries_equal_duckdb(
    queries: Sequence[tuple[str, str | None]],
    rows: list[dict[str, Any]],
    typed: bool,
    parallelism: int = 1,
    may_be_empty: bool = False,
) -> None:
    """Each (reflow SQL, DuckDB SQL or None for the same) pair, run in one reflow job,
    gives DuckDB's rows. With ``may_be_empty`` (random queries) a query may keep no
    row in either engine; three in four must keep some, so that the comparisons
    prove something."""
    results = _reflow_many([ours for ours, _ in queries], rows, parallelism, typed)
    answered = 0
    for (ours, reference), got in zip(queries, results, strict=True):
        expected = _duckdb(reference or ours, rows)
        if got or expected or not may_be_empty:
            _same(got, expected, ours)
            answered += 1
    assert answered >= len(queries) * 3 // 4


# (reflow SQL, DuckDB SQL): the DuckDB form is the same query where the engines'
# spellings differ (integer division, event-time windows).
PROJECTIONS = [
    ("SELECT a, b, s FROM t", None),
    ("SELECT a + 1 AS x, b * 2 AS y, a * b AS z, -a AS n FROM t", None),
    ("SELECT a FROM t WHERE a > 10 AND b < 0", None),
    ("SELECT a, s FROM t WHERE a > 30 OR s = 'fig'", None),
    ("SELECT a FROM t WHERE NOT (a > 0)", None),
    ("SELECT a, b FROM t WHERE a IS NULL OR b IS NOT NULL", None),
    ("SELECT a FROM t WHERE a IN (1, 2, 3, NULL)", None),
    ("SELECT a FROM t WHERE a NOT IN (1, 2, 3)", None),
    ("SELECT a FROM t WHERE a BETWEEN -5 AND 5", None),
    ("SELECT s FROM t WHERE s LIKE '%an%' OR s LIKE 'f_g'", None),
    (
        "SELECT CASE WHEN a > 10 THEN 'big' WHEN a > 0 THEN 'small' ELSE 'other' END AS c FROM t",
        None,
    ),
    ("SELECT CASE k WHEN 1 THEN 'one' WHEN 2 THEN 'two' END AS c FROM t", None),
    ("SELECT COALESCE(a, k, 0) AS c FROM t", None),
    ("SELECT CAST(a AS DOUBLE) AS d, CAST(k AS VARCHAR) AS v FROM t", None),
    ("SELECT UPPER(s) AS u, LOWER(s) AS l, LENGTH(s) AS n, s || '!' AS e FROM t", None),
    ("SELECT ABS(a) AS x, a % 7 AS m FROM t", None),
    ("SELECT a / 3 AS q FROM t", "SELECT CAST(trunc(a / 3) AS BIGINT) AS q FROM t"),
    ("SELECT a FROM t WHERE a / 4 = 2", "SELECT a FROM t WHERE CAST(trunc(a / 4) AS BIGINT) = 2"),
    ("SELECT b FROM t WHERE b >= 10.5 AND b <> 20", None),
    ("SELECT * FROM t WHERE k = 3", None),
]


@pytest.mark.parametrize("typed", [False, True], ids=["dict-rows", "typed-rows"])
@pytest.mark.parametrize("seed", [1, 2])
def test_projections_and_filters_equal_duckdb(seed: int, typed: bool) -> None:
    _queries_equal_duckdb(PROJECTIONS, _rows(seed), typed)


# String and number functions, and NOT LIKE (read as LIKE until sqlglot 30's
# ``negate`` flag was honoured: every row it should have dropped was kept).
FUNCTION_QUERIES = [
    ("SELECT s FROM t WHERE s NOT LIKE '%an%'", None),
    ("SELECT s NOT ILIKE 'A%' AS x, s NOT LIKE 'f_g' AS y FROM t", None),
    ("SELECT TRIM(LEADING 'a' FROM s) AS x, TRIM(TRAILING 'e' FROM s) AS y FROM t", None),
    ("SELECT TRIM(BOTH 'ae' FROM s) AS x FROM t", None),
    ("SELECT SUBSTRING(s, -2, 3) AS x, SUBSTRING(s, 0, 3) AS y, SUBSTR(s, 3) AS z FROM t", None),
    ("SELECT NULLIF(a, 3) AS x, NULLIF(s, 'fig') AS y FROM t", None),
    ("SELECT REPLACE(s, 'a', 'oo') AS x, REVERSE(s) AS y, REPEAT(s, 2) AS z FROM t", None),
    (
        "SELECT POSITION('an' IN s) AS x, LOCATE('a', s) AS y, LOCATE('a', s, 3) AS z FROM t",
        "SELECT POSITION('an' IN s) AS x, POSITION('a' IN s) AS y, "
        "CASE WHEN POSITION('a' IN SUBSTRING(s, 3)) = 0 THEN 0 "
        "ELSE POSITION('a' IN SUBSTRING(s, 3)) + 2 END AS z FROM t",
    ),
    ("SELECT LEFT(s, 2) AS x, RIGHT(s, 3) AS y FROM t", None),
    ("SELECT LPAD(s, 7, '*-') AS x, RPAD(s, 4, '.') AS y FROM t", None),
    (
        "SELECT CONCAT_WS('-', s, a, k) AS x FROM t",
        "SELECT CONCAT_WS('-', s, CAST(a AS VARCHAR), CAST(k AS VARCHAR)) AS x FROM t",
    ),
    ("SELECT a, a IS NOT DISTINCT FROM k AS x, a IS DISTINCT FROM k AS y FROM t", None),
    ("SELECT SIGN(a) AS x, SIGN(b) AS y, EXP(b / 10) AS z FROM t", None),
    ("SELECT LN(ABS(b) + 1) AS x, LOG10(ABS(b) + 1) AS y, LOG2(ABS(b) + 1) AS z FROM t", None),
    ("SELECT TRUNCATE(b, 1) AS x FROM t", "SELECT TRUNC(b * 10) / 10 AS x FROM t"),
    (
        "SELECT GREATEST(a, k) AS x, LEAST(a, k) AS y FROM t",
        "SELECT CASE WHEN a IS NULL OR k IS NULL THEN NULL ELSE GREATEST(a, k) END AS x, "
        "CASE WHEN a IS NULL OR k IS NULL THEN NULL ELSE LEAST(a, k) END AS y FROM t",
    ),
    ("SELECT TRY_CAST(s AS BIGINT) AS x, CAST('9007199254740993' AS BIGINT) AS y FROM t", None),
    (
        "SELECT a > 3 IS TRUE AS x, a > 3 IS NOT TRUE AS y, a > 3 IS FALSE AS z, "
        "a > 3 IS NOT FALSE AS w FROM t",
        None,
    ),
    ("SELECT a FROM t WHERE (a > 3 OR b > 0) IS NOT FALSE", None),
    (
        "SELECT REGEXP(s, 'an+') AS x, s REGEXP '^[a-c]' AS y FROM t",
        "SELECT regexp_matches(s, 'an+') AS x, regexp_matches(s, '^[a-c]') AS y FROM t",
    ),
    (
        "SELECT REGEXP_REPLACE(s, '([aeiou])(.)', '<$2$1>') AS x FROM t",
        "SELECT regexp_replace(s, '([aeiou])(.)', '<\\2\\1>', 'g') AS x FROM t",
    ),
    (
        "SELECT REGEXP_EXTRACT(s, '([a-z])(an)', 2) AS x, REGEXP_EXTRACT(s, 'e.') AS y FROM t",
        "SELECT NULLIF(regexp_extract(s, '([a-z])(an)', 2), '') AS x, "
        "NULLIF(regexp_extract(s, 'e.'), '') AS y FROM t",
    ),
]


@pytest.mark.parametrize("typed", [False, True], ids=["dict-rows", "typed-rows"])
def test_string_and_number_functions_equal_duckdb(typed: bool) -> None:
    _queries_equal_duckdb(FUNCTION_QUERIES, _rows(5), typed)


class _Expressions:
    """Random SQL expressions over ``t``'s columns: arithmetic, ``%``, CASE, COALESCE,
    NULLIF, CAST, comparisons, AND/OR/NOT, IS [NOT] TRUE/FALSE/NULL, IN with NULLs,
    BETWEEN and LIKE, nested a few deep: where NULLs meet three-valued logic, as no
    hand-picked query list covers."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def number(self, depth: int) -> str:
        rng = self.rng
        if depth <= 0 or rng.random() < 0.3:
            return rng.choice(["a", "k", "b", "a", "k", "NULL", "2.5", str(rng.randint(-9, 9))])
        inner = depth - 1
        kind = rng.choice(["+", "-", "*", "%", "neg", "abs", "case", "coalesce", "nullif", "cast"])
        if kind == "%":  # non-zero divisors: DuckDB gives NULL for x % 0, Flink fails
            return f"({self.number(inner)} % {rng.choice(['3', '-4', '7'])})"
        if kind == "neg":
            return f"(- {self.number(inner)})"
        if kind == "abs":
            return f"ABS({self.number(inner)})"
        if kind == "case":
            return (
                f"(CASE WHEN {self.condition(inner)} THEN {self.number(inner)} "
                f"ELSE {self.number(inner)} END)"
            )
        if kind in ("coalesce", "nullif"):
            return f"{kind.upper()}({self.number(inner)}, {self.number(inner)})"
        if kind == "cast":
            return f"CAST({self.number(inner)} AS DOUBLE)"
        return f"({self.number(inner)} {kind} {self.number(inner)})"

    def condition(self, depth: int) -> str:
        rng = self.rng
        inner = depth - 1
        leaves = ["compare", "null", "in", "between", "like"]
        kind = rng.choice(leaves if depth <= 0 else [*leaves, "and", "or", "not", "is"])
        if kind in ("and", "or"):
            return f"({self.condition(inner)} {kind.upper()} {self.condition(inner)})"
        if kind == "not":
            return f"(NOT {self.condition(inner)})"
        if kind == "is":
            truth = rng.choice(["TRUE", "NOT TRUE", "FALSE", "NOT FALSE", "NULL", "NOT NULL"])
            return f"(({self.condition(inner)}) IS {truth})"
        if kind == "compare":
            operator = rng.choice(["=", "<>", "!=", "<", "<=", ">", ">="])
            return f"({self.number(inner)} {operator} {self.number(inner)})"
        if kind == "null":
            return f"({self.number(inner)} IS {rng.choice(['', 'NOT '])}NULL)"
        if kind == "in":
            items = ", ".join(rng.choice(["1", "2", "-3", "NULL", "k", "a"]) for _ in range(3))
            return f"({self.number(inner)} {rng.choice(['', 'NOT '])}IN ({items}))"
        if kind == "between":
            low, high = self.number(0), self.number(0)
            return f"({self.number(inner)} {rng.choice(['', 'NOT '])}BETWEEN {low} AND {high})"
        pattern = rng.choice(["%a%", "a%", "_i_", "%e", "f%g"])
        return f"(s {rng.choice(['', 'NOT '])}LIKE '{pattern}')"

    def query(self) -> str:
        if self.rng.random() < 0.5:
            return f"SELECT a, b, {self.number(3)} AS x, {self.condition(3)} AS y FROM t"
        return f"SELECT a, b, k, s FROM t WHERE {self.condition(3)}"


@pytest.mark.parametrize("typed", [False, True], ids=["dict-rows", "typed-rows"])
def test_random_expressions_equal_duckdb(typed: bool) -> None:
    """40 random queries (projections of expressions, and filters) a run."""
    generate = _Expressions(seed=11 if typed else 12)
    queries = [(generate.query(), None) for _ in range(40)]
    _queries_equal_duckdb(queries, _rows(21, 150), typed, may_be_empty=True)


def _random_window_query(rng: random.Random, generate: _Expressions) -> tuple[str, str]:
    """A tumbling-window aggregate of random aggregates (of random expressions, some
    with FILTER), keys, WHERE and HAVING; and DuckDB's form of it."""
    size = rng.choice([1000, 2000, 5000, 7000])
    keys = rng.choice([["k"], ["s"], ["k", "s"], []])
    kinds = ["COUNT(*)", "COUNT({})", "SUM({})", "MIN({})", "MAX({})", "AVG({})"]
    kinds += ["COUNT(DISTINCT {})", "SUM({}) FILTER (WHERE {})", "MIN(s)", "COUNT(DISTINCT s)"]
    aggregates = ", ".join(
        f"{rng.choice(kinds).format(generate.number(1), generate.condition(1))} AS g{i}"
        for i in range(rng.randint(1, 4))
    )
    where = f" WHERE {generate.condition(2)}" if rng.random() < 0.5 else ""
    having = f" HAVING COUNT(*) > {rng.randint(0, 3)}" if rng.random() < 0.3 else ""
    selected = "".join(f"{k}, " for k in keys)
    grouped = "".join(f", {k}" for k in keys)
    ours = (
        f"SELECT window_start, {selected}{aggregates} FROM TABLE(TUMBLE(TABLE t, "
        f"DESCRIPTOR(ts), INTERVAL '{size}' MILLISECOND)){where} "
        f"GROUP BY window_start, window_end{grouped}{having}"
    )
    reference = (
        f"SELECT ts - ts % {size} AS ws, {selected}{aggregates} FROM t{where} "
        f"GROUP BY ws{grouped}{having}"
    )
    return ours, reference


@pytest.mark.parametrize("typed", [False, True], ids=["dict-rows", "typed-rows"])
def test_random_window_aggregates_equal_duckdb(typed: bool) -> None:
    """20 random tumbling-window aggregates a run, at parallelism 2."""
    rng = random.Random(31 if typed else 32)
    generate = _Expressions(seed=33 if typed else 34)
    queries = [_random_window_query(rng, generate) for _ in range(20)]
    _queries_equal_duckdb(queries, _rows(22, 600), typed, 2, may_be_empty=True)


def _time_rows(seed: int, n: int = 400) -> list[dict[str, Any]]:
    """Rows whose ``ts`` spreads over 1971-2060 (month ends, leap days and
    whole hours included) and ``a`` over ±40 (a count of units to add)."""
    rng = random.Random(seed)
    day = 86_400_000
    rows = []
    for _ in range(n):
        ts = rng.randrange(365 * day, 90 * 365 * day)
        shape = rng.random()
        if shape < 0.3:  # the last days of a month
            moment = datetime.fromtimestamp(ts / 1000, UTC)
            last = calendar.monthrange(moment.year, moment.month)[1]
            moment = moment.replace(day=rng.randint(last - 2, last))
            ts = int(moment.timestamp()) * 1000 + ts % 1000
        elif shape < 0.4:  # a whole hour
            ts -= ts % 3_600_000
        rows.append(
            {
                "a": rng.choice([None, *range(-40, 41)]),
                "b": None,
                "s": None,
                "k": rng.choice([None, 1, 2, 3]),
                "ts": rng.choice([None, ts, ts, ts, ts]),
            }
        )
    return rows


def _epoch(sql: str) -> str:
    return f"CAST(epoch_ms({sql}) AS BIGINT)"


TS = "epoch_ms(ts)"


def _trunc(unit: str) -> str:
    return f"date_trunc('{unit}', {TS})"


TIME_QUERIES = [
    (
        "SELECT DATE_FORMAT(ts, 'yyyy-MM-dd HH:mm:ss') AS x FROM t",
        f"SELECT strftime({TS}, '%Y-%m-%d %H:%M:%S') AS x FROM t",
    ),
    (
        "SELECT DATE_FORMAT(ts, 'yy/M/d H:m:s.SSS EEE MMM ''at'' D') AS x FROM t",
        f"SELECT strftime({TS}, '%y/%-m/%-d %-H:%-M:%-S.%g %a %b at %-j') AS x FROM t",
    ),
    (
        "SELECT EXTRACT(YEAR FROM ts) AS y, EXTRACT(QUARTER FROM ts) AS q, "
        "EXTRACT(MONTH FROM ts) AS m, EXTRACT(WEEK FROM ts) AS w, EXTRACT(DAY FROM ts) AS d, "
        "EXTRACT(DOY FROM ts) AS dy, EXTRACT(DOW FROM ts) AS dw FROM t",
        f"SELECT year({TS}), quarter({TS}), month({TS}), week({TS}), day({TS}), "
        f"dayofyear({TS}), dayofweek({TS}) + 1 FROM t",
    ),
    (
        "SELECT HOUR(ts) AS h, MINUTE(ts) AS m, SECOND(ts) AS s, "
        "EXTRACT(MILLISECOND FROM ts) AS ms, YEAR(ts) AS y, DAYOFMONTH(ts) AS d FROM t",
        f"SELECT hour({TS}), minute({TS}), second({TS}), millisecond({TS}), year({TS}), "
        f"day({TS}) FROM t",
    ),
    (
        "SELECT FLOOR(ts TO HOUR) AS h, FLOOR(ts TO DAY) AS d, FLOOR(ts TO MONTH) AS m, "
        "FLOOR(ts TO QUARTER) AS q, FLOOR(ts TO YEAR) AS y FROM t",
        "SELECT "
        + ", ".join(_epoch(_trunc(u)) for u in ("hour", "day", "month", "quarter", "year"))
        + " FROM t",
    ),
    (
        "SELECT CEIL(ts TO HOUR) AS h, CEIL(ts TO MONTH) AS m FROM t",
        f"SELECT CASE WHEN {_trunc('hour')} = {TS} THEN ts "
        f"ELSE {_epoch(_trunc('hour') + ' + INTERVAL 1 HOUR')} END, "
        f"CASE WHEN {_trunc('month')} = {TS} THEN ts "
        f"ELSE {_epoch(_trunc('month') + ' + INTERVAL 1 MONTH')} END FROM t",
    ),
    (
        "SELECT TIMESTAMPADD(MONTH, a, ts) AS m, TIMESTAMPADD(YEAR, k, ts) AS y, "
        "TIMESTAMPADD(HOUR, a, ts) AS h, TIMESTAMPADD(QUARTER, k, ts) AS q FROM t",
        f"SELECT {_epoch(f'{TS} + to_months(a)')}, {_epoch(f'{TS} + to_years(k)')}, "
        f"{_epoch(f'{TS} + to_hours(a)')}, {_epoch(f'{TS} + to_months(k * 3)')} FROM t",
    ),
    (
        "SELECT ts + INTERVAL '1' MONTH AS m, ts - INTERVAL '2' YEAR AS y, "
        "ts - INTERVAL '90' MINUTE AS n, INTERVAL '1' DAY + ts AS d FROM t",
        f"SELECT {_epoch(f'{TS} + INTERVAL 1 MONTH')}, {_epoch(f'{TS} - INTERVAL 2 YEAR')}, "
        f"ts - 90 * 60000, ts + 86400000 FROM t",
    ),
    (
        "SELECT TIMESTAMPDIFF(HOUR, ts, TIMESTAMPADD(MINUTE, a * 97, ts)) AS h, "
        "TIMESTAMPDIFF(DAY, 0, ts) AS d, TIMESTAMPDIFF(SECOND, ts, 0) AS s FROM t",
        "SELECT CAST(trunc(a * 97 / 60) AS BIGINT) + ts * 0, ts // 86400000, -(ts // 1000) FROM t",
    ),
    (
        "SELECT TO_TIMESTAMP(DATE_FORMAT(ts, 'yyyy-MM-dd HH:mm:ss')) AS x, "
        "TO_TIMESTAMP(DATE_FORMAT(ts, 'dd/MM/yyyy HH'), 'dd/MM/yyyy HH') AS y, "
        "UNIX_TIMESTAMP(DATE_FORMAT(ts, 'yyyy-MM-dd HH:mm:ss')) AS z FROM t",
        f"SELECT ts // 1000 * 1000, {_epoch(_trunc('hour'))}, ts // 1000 FROM t",
    ),
    (
        "SELECT FROM_UNIXTIME(ts / 1000) AS x, FROM_UNIXTIME(ts / 1000, 'yyyyMMdd') AS y, "
        "TO_TIMESTAMP_LTZ(ts, 3) AS z, TO_TIMESTAMP_LTZ(ts / 1000, 0) AS w FROM t",
        f"SELECT strftime({TS}, '%Y-%m-%d %H:%M:%S'), strftime({TS}, '%Y%m%d'), ts, "
        "ts // 1000 * 1000 FROM t",
    ),
]


@pytest.mark.parametrize("typed", [False, True], ids=["dict-rows", "typed-rows"])
def test_time_functions_equal_duckdb(typed: bool) -> None:
    _queries_equal_duckdb(TIME_QUERIES, _time_rows(7), typed)


AGGREGATES = (
    "COUNT(*) AS n, COUNT(a) AS na, SUM(a) AS sa, MIN(b) AS mb, MAX(s) AS xs, "
    "AVG(a) AS aa, COUNT(DISTINCT s) AS ds"
)


@pytest.mark.parametrize("typed", [False, True], ids=["dict-rows", "typed-rows"])
@pytest.mark.parametrize("parallelism", [1, 3])
def test_a_tumbling_window_equals_duckdb(parallelism: int, typed: bool) -> None:
    ours = (
        f"SELECT window_start, window_end, k, {AGGREGATES} "
        "FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND)) "
        "GROUP BY window_start, window_end, k"
    )
    reference = (
        "SELECT ts - ts % 10000 AS ws, ts - ts % 10000 + 10000 AS we, k, "
        f"{AGGREGATES} FROM t GROUP BY ws, we, k"
    )
    rows = _rows(3, 2_000)
    _same(_reflow(ours, rows, parallelism, typed), _duckdb(reference, rows))


@pytest.mark.parametrize("typed", [False, True], ids=["dict-rows", "typed-rows"])
@pytest.mark.parametrize(
    "columns",
    # the key, the window's bounds and COUNT(*) in this order is the shape whose rows
    # a window makes in one loop; the others go through the general row maker
    ["k, window_start, window_end, COUNT(*) AS n", "window_end, COUNT(*) AS n, k"],
)
def test_counts_per_tumbling_window_equal_duckdb(columns: str, typed: bool) -> None:
    ours = (
        f"SELECT {columns} FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '3' SECOND)) "
        "GROUP BY window_start, window_end, k"
    )
    reference = (
        f"SELECT {columns.replace('window_start', 'ws').replace('window_end', 'ws + 3000')} "
        "FROM (SELECT *, ts - ts % 3000 AS ws FROM t) GROUP BY ws, k"
    )
    rows = _rows(6, 2_000)
    _same(_reflow(ours, rows, 2, typed), _duckdb(reference, rows))


def test_the_function_form_of_tumble_and_having_equal_duckdb() -> None:
    ours = (
        "SELECT window_end, s, COUNT(*) AS n, SUM(b) AS total "
        "FROM TUMBLE(t, ts, INTERVAL '5' SECOND) "
        "WHERE a IS NOT NULL "
        "GROUP BY window_start, window_end, s HAVING COUNT(*) > 2"
    )
    reference = (
        "SELECT ts - ts % 5000 + 5000 AS we, s, COUNT(*) AS n, SUM(b) AS total FROM t "
        "WHERE a IS NOT NULL GROUP BY we, s HAVING COUNT(*) > 2"
    )
    rows = _rows(4, 2_000)
    _same(_reflow(ours, rows), _duckdb(reference, rows))


def test_a_hopping_window_equals_duckdb() -> None:
    ours = (
        "SELECT window_start, window_end, k, COUNT(*) AS n, MAX(a) AS m "
        "FROM TABLE(HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '2' SECOND, INTERVAL '6' SECOND)) "
        "GROUP BY window_start, window_end, k"
    )
    reference = """
        WITH w AS (
            SELECT range AS ws FROM range(
                (SELECT MIN(ts) - MIN(ts) % 2000 - 4000 FROM t),
                (SELECT MAX(ts) + 2000 FROM t),
                2000)
        )
        SELECT ws, ws + 6000 AS we, k, COUNT(*) AS n, MAX(a) AS m
        FROM t JOIN w ON t.ts >= w.ws AND t.ts < w.ws + 6000
        GROUP BY ws, we, k
    """
    rows = _rows(5, 1_500)
    _same(_reflow(ours, rows), _duckdb(reference, rows))


@pytest.mark.parametrize("typed", [False, True], ids=["dict-rows", "typed-rows"])
@pytest.mark.parametrize("parallelism", [1, 2])
def test_select_distinct_equals_duckdb(parallelism: int, typed: bool) -> None:
    selects = [
        "SELECT DISTINCT s, k FROM t",
        "SELECT DISTINCT k, a % 3 AS m FROM t WHERE b > 0",
        "SELECT DISTINCT * FROM (SELECT s FROM t) AS x",
    ]
    _queries_equal_duckdb(
        [(select, None) for select in selects], _rows(13, 900), typed, parallelism
    )


@pytest.mark.parametrize("typed", [False, True], ids=["dict-rows", "typed-rows"])
@pytest.mark.parametrize("parallelism", [1, 2])
def test_a_cumulating_window_equals_duckdb(parallelism: int, typed: bool) -> None:
    """CUMULATE: windows from each 12-second period's start, growing by 3 seconds
    ([0, 3s), [0, 6s), [0, 9s), [0, 12s), then [12s, 15s), ...)."""
    ours = (
        "SELECT window_start, window_end, k, COUNT(*) AS n, SUM(a) AS total, MAX(b) AS top "
        "FROM TABLE(CUMULATE(TABLE t, DESCRIPTOR(ts), INTERVAL '3' SECOND, INTERVAL '12' SECOND)) "
        "GROUP BY window_start, window_end, k"
    )
    reference = """
        WITH ends AS (SELECT range AS e FROM range(3000, 12001, 3000)),
             w AS (SELECT ts - ts % 12000 AS ws, ts - ts % 12000 + e AS we, t.*
                   FROM t, ends WHERE ts < ts - ts % 12000 + e)
        SELECT ws, we, k, COUNT(*) AS n, SUM(a) AS total, MAX(b) AS top FROM w GROUP BY ws, we, k
    """
    rows = _rows(9, 1_500)
    _same(_reflow(ours, rows, parallelism, typed), _duckdb(reference, rows))


@pytest.mark.parametrize("parallelism", [1, 2])
def test_group_by_without_a_window_equals_duckdb(parallelism: int) -> None:
    ours = (
        "SELECT s, k, COUNT(*) AS n, SUM(a) + 1 AS s1, AVG(b) AS ab FROM t "
        "WHERE b IS NULL OR b > -25 GROUP BY s, k HAVING SUM(a) IS NOT NULL"
    )
    rows = _rows(6, 1_000)
    _same(_reflow(ours, rows, parallelism), _duckdb(ours, rows))


@pytest.mark.parametrize("window", [False, True], ids=["group-by", "tumble"])
def test_aggregates_with_filter_equal_duckdb(window: bool) -> None:
    aggregates = (
        "COUNT(*) FILTER (WHERE a > 0) AS pos, SUM(a) FILTER (WHERE s LIKE '%a%') AS sa, "
        "COUNT(DISTINCT s) FILTER (WHERE b < 0) AS ds, MAX(b) FILTER (WHERE k IS NULL) AS mb, "
        "AVG(a) AS aa"
    )
    if window:
        ours = (
            f"SELECT window_start, k, {aggregates} FROM TABLE(TUMBLE(TABLE t, "
            "DESCRIPTOR(ts), INTERVAL '5' SECOND)) GROUP BY window_start, window_end, k"
        )
        reference = f"SELECT ts // 5000 * 5000 AS ws, k, {aggregates} FROM t GROUP BY ws, k"
    else:
        ours = reference = f"SELECT k, {aggregates} FROM t GROUP BY k"
    rows = _rows(8, 800)
    _same(_reflow(ours, rows), _duckdb(reference, rows))


def test_expressions_of_group_keys_equal_duckdb() -> None:
    ours = "SELECT a % 5 AS bucket, COUNT(*) AS n FROM t WHERE a IS NOT NULL GROUP BY a % 5"
    rows = _rows(7, 1_000)
    _same(_reflow(ours, rows), _duckdb(ours, rows))


COMPOSED = [
    (
        "SELECT x, y FROM (SELECT a + 1 AS x, b AS y FROM t WHERE a > 0) WHERE y IS NOT NULL",
        None,
    ),
    (
        "WITH pos AS (SELECT a, k FROM t WHERE a > 0) "
        "SELECT k, COUNT(*) AS n, SUM(a) AS s FROM pos GROUP BY k",
        None,
    ),
    ("SELECT a, s FROM t WHERE k = 1 UNION ALL SELECT a, s FROM t WHERE k = 2", None),
    ("SELECT a AS v FROM t WHERE a > 30 UNION ALL SELECT k FROM t WHERE k = 5", None),
    (
        "WITH ones AS (SELECT a, ts FROM t WHERE k = 1), twos AS (SELECT a, ts FROM t WHERE k = 2) "
        "SELECT * FROM ones UNION ALL SELECT * FROM twos UNION ALL SELECT a, ts FROM t WHERE k IS NULL",
        None,
    ),
    (
        "WITH recent AS (SELECT k, ts AS event_time FROM t WHERE a > 0) "
        "SELECT window_start, k, COUNT(*) AS n "
        "FROM TUMBLE(recent, event_time, INTERVAL '5' SECOND) GROUP BY window_start, window_end, k",
        "SELECT ts - ts % 5000 AS ws, k, COUNT(*) AS n FROM t WHERE a > 0 GROUP BY ws, k",
    ),
]


@pytest.mark.parametrize("typed", [False, True], ids=["dict-rows", "typed-rows"])
@pytest.mark.parametrize(("ours", "reference"), COMPOSED)
def test_subqueries_ctes_and_union_all_equal_duckdb(
    ours: str, reference: str | None, typed: bool
) -> None:
    rows = _rows(8, 1_500)
    _same(_reflow(ours, rows, typed=typed), _duckdb(reference or ours, rows))


def _join_rows(seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rng = random.Random(seed)
    people = [
        {
            "id": rng.choice([None, *range(30)]),
            "name": rng.choice(WORDS),
            "ts": i * 50 + rng.randint(0, 40),
        }
        for i in range(400)
    ]
    bids = [
        {
            "bidder": rng.choice([None, *range(30)]),
            "price": rng.randint(1, 500),
            "ts": i * 40 + rng.randint(0, 30),
        }
        for i in range(500)
    ]
    return people, bids


JOINS = [
    (
        "SELECT p.name, b.price FROM people p JOIN bids b ON p.id = b.bidder "
        "AND b.ts BETWEEN p.ts - INTERVAL '1' SECOND AND p.ts + INTERVAL '2' SECOND",
        "SELECT p.name, b.price FROM people p JOIN bids b ON p.id = b.bidder "
        "AND b.ts BETWEEN p.ts - 1000 AND p.ts + 2000",
    ),
    (
        "SELECT name, price, b.ts AS bid_ts FROM people p JOIN bids b ON b.bidder = p.id "
        "AND p.ts >= b.ts - INTERVAL '500' MILLISECOND AND p.ts < b.ts WHERE price > 100",
        "SELECT name, price, b.ts AS bid_ts FROM people p JOIN bids b ON b.bidder = p.id "
        "AND p.ts >= b.ts - 500 AND p.ts < b.ts WHERE price > 100",
    ),
    (
        "SELECT p.id AS id, COUNT(*) AS n, MAX(b.price) AS top FROM people p JOIN bids b "
        "ON p.id = b.bidder AND b.ts BETWEEN p.ts AND p.ts + INTERVAL '3' SECOND "
        "AND b.price % 2 = 0 GROUP BY p.id",
        "SELECT p.id AS id, COUNT(*) AS n, MAX(b.price) AS top FROM people p JOIN bids b "
        "ON p.id = b.bidder AND b.ts BETWEEN p.ts AND p.ts + 3000 AND b.price % 2 = 0 "
        "GROUP BY p.id",
    ),
    # Outer joins: unmatched rows (NULL keys included) padded with NULLs; the other ON
    # conditions decide what matches.
    (
        "SELECT p.name, p.id, b.price FROM people p LEFT JOIN bids b ON p.id = b.bidder "
        "AND b.ts BETWEEN p.ts - INTERVAL '1' SECOND AND p.ts + INTERVAL '1' SECOND "
        "AND b.price > 250",
        "SELECT p.name, p.id, b.price FROM people p LEFT JOIN bids b ON p.id = b.bidder "
        "AND b.ts BETWEEN p.ts - 1000 AND p.ts + 1000 AND b.price > 250",
    ),
    (
        "SELECT p.name, b.bidder, b.price FROM people p RIGHT OUTER JOIN bids b "
        "ON p.id = b.bidder AND p.ts BETWEEN b.ts - INTERVAL '500' MILLISECOND AND b.ts",
        "SELECT p.name, b.bidder, b.price FROM people p RIGHT OUTER JOIN bids b "
        "ON p.id = b.bidder AND p.ts BETWEEN b.ts - 500 AND b.ts",
    ),
    (
        "SELECT p.id, b.bidder, b.price FROM people p FULL JOIN bids b ON p.id = b.bidder "
        "AND b.ts BETWEEN p.ts AND p.ts + INTERVAL '2' SECOND WHERE b.price IS NULL "
        "OR b.price < 400",
        "SELECT p.id, b.bidder, b.price FROM people p FULL JOIN bids b ON p.id = b.bidder "
        "AND b.ts BETWEEN p.ts AND p.ts + 2000 WHERE b.price IS NULL OR b.price < 400",
    ),
    (
        "SELECT p.id, COUNT(b.price) AS n FROM people p LEFT JOIN bids b ON p.id = b.bidder "
        "AND b.ts BETWEEN p.ts AND p.ts + INTERVAL '2' SECOND GROUP BY p.id",
        "SELECT p.id, COUNT(b.price) AS n FROM people p LEFT JOIN bids b ON p.id = b.bidder "
        "AND b.ts BETWEEN p.ts AND p.ts + 2000 GROUP BY p.id",
    ),
]


@pytest.mark.parametrize(("ours", "reference"), JOINS)
@pytest.mark.parametrize("parallelism", [1, 2])
def test_interval_joins_equal_duckdb(ours: str, reference: str, parallelism: int) -> None:
    people, bids = _join_rows(9)
    name = uuid.uuid4().hex[:8]
    memory_store[f"people-{name}"], memory_store[f"bids-{name}"] = people, bids
    memory_store[f"out-{name}"] = []
    text = f"""
        CREATE TABLE people (id BIGINT, name VARCHAR, ts BIGINT,
                             WATERMARK FOR ts AS ts - INTERVAL '100' MILLISECOND)
        WITH ('connector' = 'memory', 'collection' = 'people-{name}');
        CREATE TABLE bids (bidder BIGINT, price BIGINT, ts BIGINT,
                           WATERMARK FOR ts AS ts - INTERVAL '100' MILLISECOND)
        WITH ('connector' = 'memory', 'collection' = 'bids-{name}');
        CREATE TABLE out_t (x BIGINT) WITH ('connector' = 'memory', 'collection' = 'out-{name}');
        INSERT INTO out_t {ours};
    """
    result = run_job(sql_job(text, parallelism=parallelism))
    assert result.status is JobStatus.COMPLETED, result.error
    ours_rows = [tuple(r.values()) for r in memory_store.pop(f"out-{name}")]
    con = duckdb.connect()
    load(con, "people", "id BIGINT, name VARCHAR, ts BIGINT", people)
    load(con, "bids", "bidder BIGINT, price BIGINT, ts BIGINT", bids)
    _same(ours_rows, [tuple(r) for r in con.execute(reference).fetchall()])


LOOKUPS = [
    (
        "SELECT o.a, c.label, o.k FROM t AS o JOIN dim FOR SYSTEM_TIME AS OF o.ts AS c "
        "ON o.k = c.id WHERE o.a > 0",
        "SELECT o.a, c.label, o.k FROM t AS o JOIN dim AS c ON o.k = c.id WHERE o.a > 0",
    ),
    (
        "SELECT a, label FROM t o LEFT JOIN dim FOR SYSTEM_TIME AS OF o.ts c ON c.id = o.k",
        "SELECT a, label FROM t o LEFT JOIN dim c ON c.id = o.k",
    ),
]


@pytest.mark.parametrize(("ours", "reference"), LOOKUPS)
def test_lookup_joins_equal_duckdb(ours: str, reference: str) -> None:
    rows = _rows(10, 500)
    dim = [{"id": i, "label": f"label-{i}"} for i in (1, 2, 3, None)]  # no 4 or 5: unmatched
    name = uuid.uuid4().hex[:8]
    memory_store[f"in-{name}"], memory_store[f"dim-{name}"] = list(rows), dim
    memory_store[f"out-{name}"] = []
    text = f"""
        CREATE TABLE t ({COLUMNS}) WITH ('connector' = 'memory', 'collection' = 'in-{name}');
        CREATE TABLE dim (id BIGINT, label VARCHAR)
        WITH ('connector' = 'memory', 'collection' = 'dim-{name}', 'lookup.cache.ttl' = '10 min');
        CREATE TABLE out_t (x BIGINT) WITH ('connector' = 'memory', 'collection' = 'out-{name}');
        INSERT INTO out_t {ours};
    """
    result = run_job(sql_job(text, parallelism=2))
    assert result.status is JobStatus.COMPLETED, result.error
    ours_rows = [tuple(r.values()) for r in memory_store.pop(f"out-{name}")]
    con = duckdb.connect()
    load(con, "t", COLUMNS, rows)
    load(con, "dim", "id BIGINT, label VARCHAR", dim)
    _same(ours_rows, [tuple(r) for r in con.execute(reference).fetchall()])


DEDUP = [
    "SELECT a, k, ts FROM (SELECT a, k, ts, ROW_NUMBER() OVER (PARTITION BY k ORDER BY ts) AS rn "
    "FROM t WHERE a IS NOT NULL) WHERE rn = 1",
    "SELECT * FROM (SELECT s, k, ts, b, ROW_NUMBER() OVER (PARTITION BY s, k ORDER BY ts ASC) AS rn "
    "FROM t) WHERE rn <= 1 AND b IS NOT NULL",
]


@pytest.mark.parametrize("typed", [False, True], ids=["dict-rows", "typed-rows"])
@pytest.mark.parametrize("query", DEDUP)
@pytest.mark.parametrize("parallelism", [1, 2])
def test_row_number_deduplication_equals_duckdb(query: str, parallelism: int, typed: bool) -> None:
    seen: set[int] = set()
    rows = []
    for row in _rows(11, 1_500):  # distinct times: the earliest row of a key is unique
        if row["ts"] not in seen:
            seen.add(row["ts"])
            rows.append(row)
    _same(_reflow(query, rows, parallelism, typed), _duckdb(query, rows))


def test_row_number_needs_the_filter_that_keeps_the_first_row() -> None:
    from reflow.table import SqlError

    with pytest.raises(SqlError, match="read the subquery with WHERE rn = 1"):
        _reflow(
            "SELECT a FROM (SELECT a, ROW_NUMBER() OVER (PARTITION BY k ORDER BY ts) AS rn "
            "FROM t) WHERE rn <= 3",
            _rows(1, 10),
        )


def _distinct_times(seed: int, n: int) -> list[dict[str, Any]]:
    """Random rows, no two at the same time: a ROWS frame's rows are then the same
    in any engine (rows of equal time come in arrival order, which DuckDB does not know)."""
    seen: set[int] = set()
    rows = []
    for row in _rows(seed, n):
        if row["ts"] not in seen:
            seen.add(row["ts"])
            rows.append(row)
    return rows


# (reflow SQL, DuckDB SQL): DuckDB's RANGE frames count in the ORDER BY column's units.
OVERS = [
    (
        "SELECT k, a, ts, SUM(a) OVER w AS s3, MIN(a) OVER w AS lo, MAX(b) OVER w AS hi, "
        "AVG(b) OVER w AS mean, COUNT(s) OVER w AS ns, COUNT(DISTINCT s) OVER w AS ds FROM t "
        "WINDOW w AS (PARTITION BY k ORDER BY ts ROWS BETWEEN 3 PRECEDING AND CURRENT ROW)",
        None,
    ),
    (
        "SELECT k, ts, COUNT(*) OVER w AS n, COUNT(a) OVER w AS na, MIN(b) OVER w AS lo, "
        "MAX(b) OVER w AS hi, AVG(a) OVER w AS mean FROM t "
        "WINDOW w AS (PARTITION BY k ORDER BY ts ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)",
        None,
    ),
    (
        "SELECT s, k, ts, SUM(b) OVER w AS recent, MAX(a) OVER w AS top, MIN(b) OVER w AS lo, "
        "COUNT(*) OVER w AS n FROM t WINDOW w AS (PARTITION BY s, k ORDER BY ts "
        "RANGE BETWEEN INTERVAL '2' SECOND PRECEDING AND CURRENT ROW)",
        "SELECT s, k, ts, SUM(b) OVER w AS recent, MAX(a) OVER w AS top, MIN(b) OVER w AS lo, "
        "COUNT(*) OVER w AS n FROM t WINDOW w AS (PARTITION BY s, k ORDER BY ts "
        "RANGE BETWEEN 2000 PRECEDING AND CURRENT ROW)",
    ),
    # the default frame: every row up to the current one
    ("SELECT a, ts, MAX(a) OVER (PARTITION BY s ORDER BY ts) AS top FROM t", None),
    # one partition, a WHERE before the window, expressions of aggregates
    (
        "SELECT a, ts, a - AVG(a) OVER (ORDER BY ts ROWS BETWEEN 5 PRECEDING AND CURRENT ROW) "
        "AS off, COUNT(*) OVER (ORDER BY ts ROWS BETWEEN 5 PRECEDING AND CURRENT ROW) + 1 AS n1 "
        "FROM t WHERE a IS NOT NULL AND a % 3 <> 0",
        None,
    ),
    # an OVER on a subquery's rows, ROWS 0 PRECEDING: the row alone
    (
        "SELECT x, ts, SUM(x) OVER (PARTITION BY k ORDER BY ts ROWS BETWEEN 0 PRECEDING AND "
        "CURRENT ROW) AS same FROM (SELECT a * 2 AS x, k, ts FROM t WHERE b > 0)",
        None,
    ),
    # an OVER's rows read by a query around it (typed rows when its input is typed)
    (
        "SELECT k, ts, top - a AS gap, top FROM (SELECT k, a, ts, MAX(a) OVER (PARTITION BY k "
        "ORDER BY ts ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS top FROM t) WHERE top > 3",
        None,
    ),
]


@pytest.mark.parametrize("typed", [False, True], ids=["dict-rows", "typed-rows"])
@pytest.mark.parametrize("parallelism", [1, 2])
def test_over_aggregates_equal_duckdb(parallelism: int, typed: bool) -> None:
    rows = _distinct_times(23, 1_200)
    results = _reflow_many([ours for ours, _ in OVERS], rows, parallelism, typed)
    for (ours, reference), got in zip(OVERS, results, strict=True):
        _same(got, _duckdb(reference or ours, rows), ours)


def test_range_frames_give_rows_of_equal_time_the_same_values() -> None:
    """Peers (rows of one time) are all in each other's RANGE frame, so the result
    does not depend on their order; many rows here share a time."""
    rows = [{**row, "ts": row["ts"] - row["ts"] % 1_000} for row in _rows(5, 800)]
    query = (
        "SELECT k, a, ts, SUM(a) OVER (PARTITION BY k ORDER BY ts RANGE BETWEEN "
        "INTERVAL '3' SECOND PRECEDING AND CURRENT ROW) AS s, COUNT(*) OVER (PARTITION BY k "
        "ORDER BY ts RANGE BETWEEN INTERVAL '3' SECOND PRECEDING AND CURRENT ROW) AS n FROM t"
    )
    reference = query.replace("INTERVAL '3' SECOND", "3000")
    assert len({r["ts"] for r in rows}) < len(rows) / 2
    _same(_reflow(query, rows, 2), _duckdb(reference, rows))


def test_rows_frames_over_rows_of_equal_time_count_each_row_once() -> None:
    """Rows of one time take consecutive places in a ROWS frame (in arrival order):
    a partition's counts at each time are the same whatever that order."""
    rows = [{**row, "ts": row["ts"] - row["ts"] % 1_000} for row in _rows(8, 800)]
    query = (
        "SELECT k, ts, COUNT(*) OVER (PARTITION BY k ORDER BY ts ROWS BETWEEN 2 PRECEDING "
        "AND CURRENT ROW) AS n FROM t"
    )
    _same(_reflow(query, rows, 2), _duckdb(query, rows))


CHANGELOG_QUERIES = [
    "SELECT k, COUNT(*) AS n, SUM(a) AS total, MAX(s) AS top FROM t GROUP BY k",
    "SELECT s, k, COUNT(DISTINCT a) AS d, SUM(a) * 2 AS twice FROM t GROUP BY s, k",
    # HAVING: keys enter and leave the result many times (-D when they leave)
    "SELECT k, COUNT(*) AS n, SUM(a) AS total FROM t GROUP BY k HAVING SUM(a) % 4 <> 1",
    "SELECT s, k, COUNT(*) AS n, MAX(a) AS top FROM t GROUP BY s, k "
    "HAVING MAX(a) > 10 AND COUNT(*) % 5 <> 0",
    "SELECT k, COUNT(*) FILTER (WHERE a > 0) AS pos, SUM(a) FILTER (WHERE s LIKE '%a%') AS sa "
    "FROM t GROUP BY k",
]


@pytest.mark.parametrize("mode", ["retract", "upsert"])
@pytest.mark.parametrize("query", CHANGELOG_QUERIES)
@pytest.mark.parametrize("parallelism", [1, 2])
def test_a_changelog_replays_to_duckdbs_aggregate(query: str, mode: str, parallelism: int) -> None:
    """Every change of an updating GROUP BY as a row with its kind: replayed in order
    per key (+I inserts, -U removes exactly the row last sent, +U sends the new
    one, -D removes a key that left HAVING), the table it leaves is DuckDB's result;
    upsert mode sends no -U."""
    rows = _rows(21, 800)
    keys = 1 if query.count("GROUP BY k") else 2
    got = _reflow(f"{query}", rows, parallelism, settings={"changelog.mode": mode})
    table: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    kinds = Counter(row[-1] for row in got)
    for *values, kind in got:
        key, row = tuple(values[:keys]), tuple(values)
        if kind in ("-U", "-D"):
            assert table.pop(key) == row  # retracts what was sent last for the key
            continue
        if kind == "+I":
            assert key not in table
        else:
            assert kind == "+U"
            assert (key in table) == (mode == "upsert")  # retract: after its -U
        table[key] = row
    _same(list(table.values()), _duckdb(query, rows))
    assert kinds["+I"] == len(table) + kinds["-D"]  # each key in the result once at a time
    assert kinds["+U"] > 0
    assert kinds["-U"] == (kinds["+U"] if mode == "retract" else 0)
    assert (kinds["-D"] > 0) == ("HAVING" in query)  # keys left the HAVING condition
