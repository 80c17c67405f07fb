"""Nexmark Q1 written in streaming SQL (see bench/q1.py for the same query in Python).

The plain reference is Q1's loop; the SQL projects every column of the bid with
the price converted, so both write the same rows.
"""

from __future__ import annotations

from pathlib import Path

from bench import q1
from bench.common import main_for, run_sql

SQL = """
SET 'parallelism' = '{parallelism}';
CREATE TABLE bids (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR,
                   url VARCHAR, dateTime BIGINT, extra VARCHAR)
WITH ('connector' = 'file', 'path' = '{inp}', 'format' = 'json');
CREATE SINK out_t (auction BIGINT) WITH ('connector' = 'file', 'path' = '{out}', 'format' = 'json');
INSERT INTO out_t
SELECT auction, bidder, price * 0.908 AS price, channel, url, dateTime, extra
FROM bids WHERE auction % 10 < 4;
"""


def run_plain(inp: Path, out: Path) -> int:
    return q1.run_plain(inp, out)


def run_reflow(inp: Path, out: Path, parallelism: int = 1) -> int:
    return run_sql(SQL.format(inp=inp, out=out, parallelism=parallelism), "out_t")


if __name__ == "__main__":
    main_for(run_plain, run_reflow, imports=("reflow.table",))  # SQL: sqlglot, the planner
