"""Flink SQL scripts as Flink users write them: views, statement sets, backtick
identifiers, INSERT with a column list, CAST to TIMESTAMP, window_time for a window
over windows; and what reflow refuses with a reason (INSERT OVERWRITE, ...)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from reflow import JobStatus
from reflow.table import SqlError, sql_job
from reflow.testing import memory_store, run_job

ROWS: list[dict[str, Any]] = [
    {"a": i, "s": f"s{i % 3}", "ts": 1_700_000_000_000 + i * 700, "user": f"u{i % 2}"}
    for i in range(60)
]


def _run(statements: str) -> dict[str, list[Any]]:
    """Run ``statements`` over the table ``t`` (ROWS) into memory tables ``o`` and ``p``;
    the rows each received."""
    name = uuid.uuid4().hex[:8]
    memory_store[f"in-{name}"] = list(ROWS)
    for out in ("o", "p"):
        memory_store[f"{out}-{name}"] = []
    text = f"""
CREATE TABLE t (a BIGINT, s VARCHAR, ts BIGINT, `user` VARCHAR,
                WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
WITH ('connector' = 'memory', 'collection' = 'in-{name}');
CREATE TABLE o (x BIGINT, y VARCHAR) WITH ('connector' = 'memory', 'collection' = 'o-{name}');
CREATE TABLE p (x BIGINT, y VARCHAR) WITH ('connector' = 'memory', 'collection' = 'p-{name}');
{statements}
"""
    result = run_job(sql_job(text))
    assert result.status is JobStatus.COMPLETED, result.error
    return {out: memory_store.pop(f"{out}-{name}") for out in ("o", "p")}


def test_a_view_is_read_like_a_table_and_planned_once() -> None:
    out = _run(
        """
CREATE VIEW big AS SELECT a, s FROM t WHERE a >= 50;
CREATE TEMPORARY VIEW bigger AS SELECT a, s FROM big WHERE a >= 55;
INSERT INTO o SELECT a AS x, s AS y FROM big;
INSERT INTO p SELECT a AS x, s AS y FROM bigger;
"""
    )
    assert [r["x"] for r in out["o"]] == list(range(50, 60))
    assert [r["x"] for r in out["p"]] == list(range(55, 60))


def test_a_statement_set_runs_its_inserts_in_one_job() -> None:
    for frame in (
        "EXECUTE STATEMENT SET BEGIN\n{body}\nEND;",
        "BEGIN STATEMENT SET;\n{body}\nEND;",
    ):
        body = "INSERT INTO o SELECT a AS x FROM t WHERE a < 2;\nINSERT INTO p SELECT a AS x FROM t WHERE a > 57;"
        out = _run(frame.format(body=body))
        assert [r["x"] for r in out["o"]] == [0, 1]
        assert [r["x"] for r in out["p"]] == [58, 59]


def test_backticks_quote_identifiers_as_in_flink() -> None:
    out = _run("INSERT INTO o SELECT a AS `x`, `user` AS y FROM t WHERE `user` = 'u1' AND a < 4;")
    assert out["o"] == [{"x": 1, "y": "u1"}, {"x": 3, "y": "u1"}]


def test_insert_with_a_column_list_names_the_columns_by_place() -> None:
    # The list was ignored: the rows went out as {"a": ..., "s": ...}.
    out = _run("INSERT INTO o (y, x) SELECT s, a FROM t WHERE a < 2;")
    assert out["o"] == [{"y": "s0", "x": 0}, {"y": "s1", "x": 1}]


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ("INSERT INTO o (x, z) SELECT a, s FROM t;", "INSERT INTO o (x, z): no column z"),
        ("INSERT INTO o (x, x) SELECT a, s FROM t;", "a column is named twice"),
        ("INSERT INTO o (x) SELECT a, s FROM t;", "names 1 columns but the SELECT gives 2"),
        ("INSERT OVERWRITE o SELECT a AS x FROM t;", "INSERT OVERWRITE is not supported"),
        (
            "INSERT INTO o SELECT window_start AS x FROM TABLE(CUMULATE(TABLE t, "
            "DESCRIPTOR(ts), INTERVAL '2' SECOND, INTERVAL '5' SECOND)) "
            "GROUP BY window_start, window_end;",
            "CUMULATE: the size must be a multiple of the step",
        ),
        ("CREATE VIEW t AS SELECT a FROM t;", "CREATE VIEW t: the name is already taken"),
        (
            "INSERT INTO o SELECT DISTINCT s AS y, COUNT(*) AS x FROM t GROUP BY s;",
            "SELECT DISTINCT with GROUP BY, aggregates or OVER is not supported",
        ),
        ("CREATE VIEW v AS SELECT a FROM v; INSERT INTO o SELECT a AS x FROM v;", "reads itself"),
    ],
)
def test_what_is_refused_says_why(statement: str, message: str) -> None:
    with pytest.raises(SqlError, match=re.escape(message)):
        _run(statement)


def test_cast_to_timestamp_reads_iso_text_as_epoch_milliseconds() -> None:
    out = _run(
        "INSERT INTO o SELECT CAST('2024-05-01T10:00:00Z' AS TIMESTAMP(3)) AS x, "
        "CAST(CAST(ts AS TIMESTAMP_LTZ(3)) AS VARCHAR) AS y FROM t WHERE a = 0;"
    )
    assert out["o"] == [{"x": 1_714_557_600_000, "y": str(ROWS[0]["ts"])}]


def test_window_time_is_the_last_millisecond_and_times_a_window_over_windows() -> None:
    out = _run(
        """
CREATE VIEW small AS
SELECT window_start AS ws, window_end AS we, window_time AS wt, COUNT(*) AS n
FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '2' SECOND))
GROUP BY window_start, window_end;
INSERT INTO o SELECT wt - we AS x FROM small;
INSERT INTO p
SELECT window_start AS x, CAST(SUM(n) AS VARCHAR) AS y
FROM TABLE(TUMBLE(TABLE small, DESCRIPTOR(wt), INTERVAL '10' SECOND))
GROUP BY window_start, window_end;
"""
    )
    assert {r["x"] for r in out["o"]} == {-1}
    direct: dict[int, int] = {}
    for row in ROWS:
        start = row["ts"] // 10_000 * 10_000
        direct[start] = direct.get(start, 0) + 1
    assert {r["x"]: int(r["y"]) for r in out["p"]} == direct


def test_inserts_into_one_table_share_its_sink(tmp_path: Path) -> None:
    # Each INSERT had a sink of its own: two writers of one file, one over the other.
    memory_store["two-inserts"] = list(ROWS)
    out = tmp_path / "out.jsonl"
    job = sql_job(
        f"""
CREATE TABLE t (a BIGINT, s VARCHAR, ts BIGINT)
WITH ('connector' = 'memory', 'collection' = 'two-inserts');
CREATE SINK o (x BIGINT) WITH ('connector' = 'file', 'path' = '{out}');
INSERT INTO o SELECT a AS x FROM t WHERE a % 2 = 0;
INSERT INTO o SELECT a AS x FROM t WHERE a % 2 = 1;
"""
    )
    assert [n.step_id for n in job.stream_graph.nodes].count("o") == 1
    assert run_job(job).status is JobStatus.COMPLETED
    written = [orjson.loads(line)["x"] for line in out.read_bytes().splitlines()]
    assert sorted(written) == list(range(60))


@pytest.mark.parametrize("key", ["late.table", "dead-letter.table"])
def test_rows_set_aside_need_a_table_no_insert_writes(key: str) -> None:
    policy = "SET 'error.policy' = 'dead-letter';" if key == "dead-letter.table" else ""
    window = (
        "INSERT INTO p SELECT window_start AS x FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), "
        "INTERVAL '1' SECOND)) GROUP BY window_start, window_end;"
    )
    with pytest.raises(SqlError, match="that table is also written by INSERT INTO"):
        _run(f"{policy} SET '{key}' = 'o'; INSERT INTO o SELECT a AS x FROM t; {window}")
