"""A SQL job on whichever executor the suite runs on (local, or Ray in the Ray
suite): a windowed aggregate and an OVER aggregate at parallelism 2 from a file into
files, against DuckDB's results on the same rows."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path

import orjson
import pytest

from reflow import JobStatus
from reflow.runtime import execute_with_recovery
from reflow.table import sql_job
from reflow.testing import executor_for_tests
from tests.table.duck import load

duckdb = pytest.importorskip("duckdb", reason="duckdb (the reference engine) is a dev dependency")


def _written(folder: Path, name: str) -> Counter[tuple[object, ...]]:
    return Counter(
        tuple(orjson.loads(line).values())
        for f in folder.glob(f"{name}*.jsonl")
        for line in f.read_bytes().splitlines()
    )


def test_windowed_and_over_sql_aggregates_at_parallelism_2(tmp_path: Path) -> None:
    rng = random.Random(21)
    rows = [
        {"k": rng.choice(["a", "b", "c", None]), "v": rng.randrange(100), "ts": i * 13}
        for i in range(3_000)
    ]
    data = tmp_path / "in.jsonl"
    data.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    job = sql_job(
        f"""
        SET 'parallelism' = '2';
        CREATE TABLE t (k VARCHAR, v BIGINT, ts BIGINT, WATERMARK FOR ts AS ts)
        WITH ('connector' = 'file', 'path' = '{data}', 'format' = 'json');
        CREATE SINK o (k VARCHAR) WITH ('connector' = 'file', 'path' = '{tmp_path}/out.jsonl');
        INSERT INTO o
        SELECT window_start, k, COUNT(*) AS n, SUM(v) AS total
        FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '2' SECOND))
        GROUP BY window_start, window_end, k;
        CREATE SINK running (k VARCHAR)
        WITH ('connector' = 'file', 'path' = '{tmp_path}/running.jsonl');
        INSERT INTO running
        SELECT k, ts, SUM(v) OVER (PARTITION BY k ORDER BY ts
                                   ROWS BETWEEN 4 PRECEDING AND CURRENT ROW) AS last5
        FROM t;
        """
    )
    executor = executor_for_tests()
    try:
        result = asyncio.run(execute_with_recovery(executor, job))
    finally:
        executor.close()
    assert result.status is JobStatus.COMPLETED, result.error
    ours = _written(tmp_path, "out")
    con = duckdb.connect()
    load(con, "t", "k VARCHAR, v BIGINT, ts BIGINT", rows)
    reference = Counter(
        tuple(row)
        for row in con.execute(
            "SELECT ts - ts % 2000 AS ws, k, COUNT(*), SUM(v) FROM t GROUP BY ws, k"
        ).fetchall()
    )
    assert ours == reference
    over = con.execute(
        "SELECT k, ts, SUM(v) OVER (PARTITION BY k ORDER BY ts "
        "ROWS BETWEEN 4 PRECEDING AND CURRENT ROW) FROM t"
    ).fetchall()
    assert _written(tmp_path, "running") == Counter(tuple(row) for row in over)
