"""SQL sink throughput on PostgreSQL: every bid inserted as a row, 500 rows per
multi-row INSERT and transaction, beside the same inserts with psycopg alone.

``python -m bench.sql_sink --impl reflow|plain INPUT OUTPUT`` needs PostgreSQL on
127.0.0.1:5432 (user postgres, trust auth); the table is named after OUTPUT and
dropped after the count.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from bench.common import main_for

DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
BATCH = 500
COLUMNS = ("auction", "bidder", "price", "channel", "url", "dateTime", "extra")


def _table(out: Path) -> str:
    return "bench_" + out.parent.name.replace(".", "_").replace("-", "_")


def _create(table: str) -> None:
    import psycopg

    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {table} (auction BIGINT, bidder BIGINT, price BIGINT, "
            'channel TEXT, url TEXT, "dateTime" BIGINT, extra TEXT)'
        )


def _finish(table: str) -> int:
    import psycopg

    with psycopg.connect(DSN, autocommit=True) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        conn.execute(f"DROP TABLE {table}")
    return int(row[0]) if row else 0


def run_plain(inp: Path, out: Path) -> int:
    """The reference: psycopg, one multi-row INSERT of 500 bids per transaction."""
    import psycopg

    table = _table(out)
    _create(table)
    loads = orjson.loads
    row_sql = "(" + ", ".join(["%s"] * len(COLUMNS)) + ")"
    names = ", ".join(f'"{c}"' for c in COLUMNS)
    head = f"INSERT INTO {table} ({names}) VALUES "

    def flush(conn: psycopg.Connection, rows: list[tuple[object, ...]]) -> None:
        params = [value for row in rows for value in row]
        with conn.transaction():
            conn.execute(head + ", ".join([row_sql] * len(rows)), params)

    with psycopg.connect(DSN) as conn:
        rows: list[tuple[object, ...]] = []
        with open(inp, "rb") as fin:
            for line in fin:
                bid = loads(line)
                rows.append(tuple(bid[c] for c in COLUMNS))
                if len(rows) == BATCH:
                    flush(conn, rows)
                    rows = []
        if rows:
            flush(conn, rows)
    return _finish(table)


def run_reflow(inp: Path, out: Path, parallelism: int = 1) -> int:
    from reflow import Connectors, Job
    from reflow.testing import run_job

    table = _table(out)
    _create(table)
    job = (
        Job.builder()
        .name("sql-sink-bench")
        .parallelism(parallelism)
        .batch_size(BATCH)
        .source(Connectors.file(path=str(inp), format="json"), id="bids")
        .sink(Connectors.sql(url=DSN, table=table, batch_size=BATCH), id="out")
        .build()
    )
    result = run_job(job)
    if result.error:
        raise SystemExit(result.error)
    return _finish(table)


if __name__ == "__main__":
    main_for(run_plain, run_reflow)
