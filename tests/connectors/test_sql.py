"""The sql connector against SQLite, PostgreSQL and MariaDB (real servers)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from reflow import Connectors, Job, JobStatus, Operators
from reflow.connectors.sql.engine import normalize_url
from reflow.connectors.sql.source import partition_ranges
from reflow.testing import TestingSink, TestingSource, run_job
from tests.connectors.scenarios import dead_lettered_job

ROWS: list[dict[str, Any]] = [
    {"id": i, "region": f"r{i % 5}", "amount": i * 0.25} for i in range(1, 2_001)
]


def _run(job: Job) -> None:
    result = run_job(job)
    assert result.status is JobStatus.COMPLETED, result.error


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(normalize_url(url))


def _write(url: str, rows: list[dict[str, object]], **options: object) -> None:
    sink = Connectors.sql(url=url, table="orders", create_table=True, key="id", **options)
    _run(Job.builder().source(TestingSource(rows)).sink(sink).build())


def test_sink_creates_the_table_and_inserts_every_row(database_url: str) -> None:
    _write(database_url, ROWS, batch_size=300)
    engine = _engine(database_url)
    with engine.connect() as conn:
        count, total = conn.execute(sa.text("SELECT COUNT(*), SUM(amount) FROM orders")).one()
    engine.dispose()
    assert count == 2_000
    assert total == pytest.approx(sum(r["amount"] for r in ROWS))


def test_upsert_by_key_replaces_rows(database_url: str) -> None:
    _write(database_url, ROWS[:100], mode="upsert")
    changed = [{**r, "amount": -1.0} for r in ROWS[50:150]]
    _write(database_url, changed, mode="upsert")
    engine = _engine(database_url)
    with engine.connect() as conn:
        count = conn.execute(sa.text("SELECT COUNT(*) FROM orders")).scalar_one()
        negative = conn.execute(
            sa.text("SELECT COUNT(*) FROM orders WHERE amount < 0")
        ).scalar_one()
    engine.dispose()
    assert (count, negative) == (150, 100)


@pytest.mark.parametrize("parallelism", [1, 3])
def test_source_reads_a_table_in_order_and_in_parallel_ranges(
    database_url: str, parallelism: int
) -> None:
    _write(database_url, ROWS)
    sink = TestingSink()
    source = Connectors.sql(url=database_url, table="orders", partition_column="id", fetch_size=128)
    _run(Job.builder().parallelism(parallelism).source(source).sink(sink).build())
    assert sorted(r["id"] for r in sink.records) == [r["id"] for r in ROWS]
    if parallelism == 1:
        assert [r["id"] for r in sink.records] == [r["id"] for r in ROWS]


def test_source_parameterised_query(database_url: str) -> None:
    _write(database_url, ROWS)
    sink = TestingSink()
    query = "SELECT id, amount FROM orders WHERE region = :region AND id <= :top ORDER BY id"
    source = Connectors.sql(url=database_url, query=query, params={"region": "r2", "top": 30})
    _run(Job.builder().source(source).sink(sink).build())
    assert [r["id"] for r in sink.records] == [2, 7, 12, 17, 22, 27]


def test_question_mark_parameters_like_the_seed(sqlite_url: str) -> None:
    _write(sqlite_url, ROWS)
    sink = TestingSink()
    source = (
        Connectors.jdbc().url(sqlite_url).query("SELECT * FROM orders WHERE id = ?").params([7])
    )
    _run(Job.builder().source(source.build()).sink(sink).build())
    assert sink.records == [ROWS[6]]


def test_file_to_sql_with_transform(database_url: str, tmp_path: object) -> None:
    import orjson

    path = f"{tmp_path}/in.jsonl"
    with open(path, "wb") as f:
        for r in ROWS:
            f.write(orjson.dumps(r) + b"\n")
    job = (
        Job.builder()
        .source(Connectors.file(path=path))
        .transform(Operators.filter(lambda r: r["region"] == "r1"))
        .sink(Connectors.sql(url=database_url, table="r1", create_table=True, key="id"))
        .build()
    )
    _run(job)
    engine = _engine(database_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM r1")).scalar_one() == 400
    engine.dispose()


def test_rows_the_database_rejects_go_to_the_dead_letter(database_url: str) -> None:
    _write(database_url, ROWS[:10])
    dead = TestingSink()
    rows = [
        {"id": 100, "region": "x", "amount": 1.0},
        {"id": 5, "region": "dup", "amount": 1.0},
        {"id": 101, "region": "y", "amount": 2.0},
        {"id": 102, "bogus": 1},
    ]
    sink = Connectors.sql(url=database_url, table="orders")
    job = dead_lettered_job(TestingSource(rows), sink, dead)
    _run(job)
    assert sorted(d["record"]["id"] for d in dead.records) == [5, 102]
    engine = _engine(database_url)
    with engine.connect() as conn:
        ids = [r[0] for r in conn.execute(sa.text("SELECT id FROM orders ORDER BY id"))]
    engine.dispose()
    assert ids == [*range(1, 11), 100, 101]


def test_missing_table_without_create_is_a_clear_error(sqlite_url: str) -> None:
    job = (
        Job.builder()
        .source(TestingSource([{"a": 1}]))
        .sink(Connectors.sql(url=sqlite_url, table="nope"))
        .build()
    )
    result = run_job(job)
    assert result.status is JobStatus.FAILED
    assert "table 'nope' does not exist" in (result.error or "")
    assert "create_table: true" in (result.error or "")


def test_unreachable_server_names_the_address_without_the_password() -> None:
    url = "postgresql://etl:s3cret@127.0.0.1:9/warehouse"
    job = Job.builder().source(Connectors.sql(url=url, table="t")).sink(TestingSink()).build()
    result = run_job(job)
    assert result.status is JobStatus.FAILED
    assert "cannot connect to postgresql+psycopg://etl:***@127.0.0.1:9/warehouse" in (
        result.error or ""
    )
    assert "s3cret" not in (result.error or "")


@pytest.mark.parametrize(
    "url,expected",
    [
        ("jdbc:mysql://localhost:3306/db", "mysql+pymysql://localhost:3306/db"),
        ("jdbc:postgresql://h/db", "postgresql+psycopg://h/db"),
        ("jdbc:sqlite:/tmp/x.db", "sqlite:////tmp/x.db"),
        ("mariadb://u@h/db", "mysql+pymysql://u@h/db"),
        ("sqlite:///rel.db", "sqlite:///rel.db"),
    ],
)
def test_url_translation(url: str, expected: str) -> None:
    assert normalize_url(url) == expected


@pytest.mark.parametrize(
    ("lower", "upper", "count"), [(1, 10, 3), (0, 9, 4), (5, 5, 3), (0, 2, 8), (-1.5, 7.25, 4)]
)
def test_partition_ranges_put_every_value_in_exactly_one_range(
    lower: float, upper: float, count: int
) -> None:
    ranges = partition_ranges(lower, upper, count)
    assert 1 <= len(ranges) <= count
    values = [lower - 100, lower, upper, upper + 0.5, upper + 100, *range(-3, 12), 2.5, 9.999]
    for value in values:
        inside = [
            (lo, hi)
            for lo, hi in ranges
            if (lo is None or value >= lo) and (hi is None or value < hi)
        ]
        assert len(inside) == 1, (value, ranges)


KEYS = [None, -3.2, 0, 0.5, 1, 1.5, 2, 2, 3.999, 4, 5, 5, 7, 9.75, None, 100, 1e9, None]


@pytest.mark.parametrize(
    "bounds", [{}, {"lower_bound": 2, "upper_bound": 5}, {"lower_bound": 0.5, "upper_bound": 3}]
)
def test_partitioned_read_of_nulls_floats_and_bounds_returns_each_row_once(
    database_url: str, bounds: dict[str, float]
) -> None:
    engine = _engine(database_url)
    table = sa.Table(
        "keyed",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("k", sa.Float, nullable=True),
    )
    table.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), [{"id": i, "k": k} for i, k in enumerate(KEYS)])
    engine.dispose()
    sink = TestingSink()
    source = Connectors.sql(
        url=database_url, table="keyed", partition_column="k", num_partitions=4, **bounds
    )
    _run(Job.builder().parallelism(3).source(source).sink(sink).build())
    assert sorted(r["id"] for r in sink.records) == list(range(len(KEYS)))


def test_upsert_without_key_is_rejected() -> None:
    from reflow import ConnectorConfigError

    with pytest.raises(ConnectorConfigError, match=r"mode 'upsert' needs 'key'"):
        Connectors.sql(url="sqlite:///x.db", table="t", mode="upsert").validate("sink")


def test_flush_interval_writes_a_partial_batch_while_the_stream_is_quiet(sqlite_url: str) -> None:
    import asyncio

    from reflow.runtime import LocalExecutor

    sink = Connectors.sql(
        url=sqlite_url, table="orders", create_table=True, batch_size=1_000, flush_interval="100ms"
    )
    job = Job.builder().source(TestingSource(ROWS[:7], bounded=False)).sink(sink).build()

    async def scenario() -> int:
        with LocalExecutor() as executor:
            task = asyncio.create_task(executor.execute(job))
            await asyncio.sleep(0.6)
            engine = _engine(sqlite_url)
            with engine.connect() as conn:
                count = conn.execute(sa.text("SELECT COUNT(*) FROM orders")).scalar_one()
            engine.dispose()
            await executor.stop(job.job_id)
            await task
            return int(count)

    assert asyncio.run(scenario()) == 7


def test_a_key_of_zero_is_kept_not_generated(database_url: str) -> None:
    # MySQL/MariaDB replace 0 in an AUTO_INCREMENT column with a generated value;
    # tables the sink creates keep the records' own keys.
    rows = [{"id": i, "v": i} for i in range(0, 250)]
    _run(
        Job.builder()
        .source(TestingSource(rows))
        .sink(Connectors.sql(url=database_url, table="zero", create_table=True, key="id"))
        .build()
    )
    engine = _engine(database_url)
    with engine.connect() as conn:
        pairs = conn.execute(sa.text("SELECT id, v FROM zero ORDER BY id")).all()
    engine.dispose()
    assert [tuple(p) for p in pairs] == [(i, i) for i in range(250)]


def test_100k_rows_round_trip(database_url: str) -> None:
    rows = [{"id": i, "region": f"r{i % 7}", "amount": i * 0.5} for i in range(1, 100_001)]
    _write(database_url, rows)
    sink = TestingSink()
    source = Connectors.sql(url=database_url, table="orders", partition_column="id")
    _run(Job.builder().parallelism(2).source(source).sink(sink).build())
    assert sorted(sink.records, key=lambda r: r["id"]) == rows  # every row exactly as sent


def test_server_gone_mid_run_is_retried_by_the_sink_and_recovered_by_the_source(
    postgres_url: str, tmp_path: object
) -> None:
    """The connection to PostgreSQL is cut for 0.5 s while rows are written and while
    they are read: the sink retries its batch with backoff; the source's job restarts
    from its checkpoint. No row is lost, and the exactly-once test sink sees each once."""
    import asyncio
    from pathlib import Path

    from reflow.graph.restart import FixedDelayRestart
    from tests.server.test_health import TcpProxy

    rows = [{"id": i, "region": f"r{i % 7}", "amount": i * 0.5} for i in range(1, 20_001)]

    async def slow(record: dict[str, Any]) -> dict[str, Any]:
        if record["id"] % 200 == 0:
            await asyncio.sleep(0.01)
        return record

    async def scenario() -> tuple[Any, Any, list[Any]]:
        proxy = TcpProxy(5432)
        await proxy.start()
        url = postgres_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")

        write = (
            Job.builder()
            .source(TestingSource(rows))
            .transform(Operators.map(slow, concurrency=1))
            .sink(Connectors.sql(url=url, table="orders", create_table=True, batch_size=200))
            .build()
        )
        written = await proxy.run_through_outage(write, 0.4, 0.5)
        out = TestingSink(exactly_once=True)
        read = (
            Job.builder()
            .checkpointing(str(Path(str(tmp_path)) / "ckpt"), interval_ms=100)
            .restart_strategy(FixedDelayRestart(attempts=5, delay_s=0.3))
            .source(Connectors.sql(url=url, table="orders", fetch_size=200))
            .transform(Operators.map(slow, concurrency=1))
            .sink(out)
            .build()
        )
        read_result = await proxy.run_through_outage(read, 0.4, 0.5)
        await proxy.stop()
        return written, read_result, out.records

    written, read, got = asyncio.run(scenario())
    assert written.status is JobStatus.COMPLETED, written.error
    assert read.status is JobStatus.COMPLETED, read.error
    ids = [r["id"] for r in got]
    assert set(ids) == {r["id"] for r in rows}  # none lost
    engine = _engine(postgres_url)
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT count(*) FROM orders")).scalar_one()
    engine.dispose()
    assert len(ids) == stored  # the reader saw each stored row once


@pytest.mark.parametrize("delivery", ["at-least-once", "exactly-once"])
def test_a_table_another_subtask_created_first_is_used(
    sqlite_url: str, delivery: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parallel sink subtasks race between "does the table exist?" and CREATE TABLE
    (seen under SIGKILL restarts): the one that loses gets "already exists" and
    must write into the table the other created."""
    original = sa.Table.create

    def racing_create(self: sa.Table, bind: sa.Engine, checkfirst: bool = True) -> None:
        original(self, bind, checkfirst=True)  # the other subtask's CREATE lands first
        original(self, bind, checkfirst=False)  # then this one's: "already exists"

    monkeypatch.setattr(sa.Table, "create", racing_create)
    rows = [{"id": i, "name": f"n{i}"} for i in range(50)]
    sink = Connectors.sql(url=sqlite_url, table="raced", create_table=True, delivery=delivery)
    _run(Job.builder().source(TestingSource(rows)).sink(sink).build())
    monkeypatch.undo()
    engine = _engine(sqlite_url)
    with engine.connect() as conn:
        ids = [r[0] for r in conn.execute(sa.text("SELECT id FROM raced ORDER BY id"))]
    engine.dispose()
    assert ids == list(range(50))


def test_a_stopped_job_writes_what_its_sink_buffered(tmp_path: object) -> None:
    """Cancel (Ctrl-C, SIGTERM, the API) used to drop the rows an at-least-once SQL
    sink held below its batch size: they had been read and processed."""
    import asyncio

    from reflow.runtime import ExecutorSettings, LocalExecutor

    url = f"sqlite:///{tmp_path}/stop.db"
    sink = Connectors.sql(url=url, table="t", create_table=True, batch_size=100, flush_interval=600)
    job = (
        Job.builder()
        .source(TestingSource([{"n": i} for i in range(7)], bounded=False))
        .sink(sink)
        .build()
    )

    async def run() -> JobStatus:
        with LocalExecutor(ExecutorSettings()) as executor:
            task = asyncio.create_task(executor.execute(job))
            for _ in range(2_000):
                await asyncio.sleep(0.001)
                try:
                    if executor.snapshot(job.job_id).metrics.step("sink").records_in == 7:
                        break
                except Exception:
                    continue
            await executor.stop(job.job_id)
            return (await task).status

    assert asyncio.run(run()) is JobStatus.CANCELLED
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM t")).scalar() == 7
