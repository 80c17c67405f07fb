"""Nexmark Q5 (simplified, see bench/q5.py) written in streaming SQL: bids per
auction per 10 s tumbling window of event time, 200 ms of allowed disorder."""

from __future__ import annotations

from pathlib import Path

from bench import q5
from bench.common import main_for, run_sql

SQL = """
SET 'parallelism' = '{parallelism}';
CREATE TABLE bids (auction BIGINT, dateTime BIGINT,
                   WATERMARK FOR dateTime AS dateTime - INTERVAL '200' MILLISECOND)
WITH ('connector' = 'file', 'path' = '{inp}', 'format' = 'json');
CREATE SINK out_t (auction BIGINT) WITH ('connector' = 'file', 'path' = '{out}', 'format' = 'json');
INSERT INTO out_t
SELECT auction AS key, window_start, window_end, COUNT(*) AS value
FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))
GROUP BY window_start, window_end, auction;
"""


def run_plain(inp: Path, out: Path) -> int:
    return q5.run_plain(inp, out)


def run_reflow(inp: Path, out: Path, parallelism: int = 1) -> int:
    return run_sql(SQL.format(inp=inp, out=out, parallelism=parallelism), "out_t")


if __name__ == "__main__":
    main_for(run_plain, run_reflow, imports=("reflow.table",))  # SQL: sqlglot, the planner
