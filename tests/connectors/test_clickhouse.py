"""The clickhouse connector against the ClickHouse engine, two ways: Debian's ClickHouse
server 18.16 over the native protocol (started by the test run), and ClickHouse 26.9
in-process through chdb (where insert deduplication tokens exist)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from reflow import Connectors, Job, JobStatus, Operators
from reflow.connectors.base import ConnectorContext
from reflow.errors import ConnectorConfigError
from reflow.graph.restart import FixedDelayRestart
from reflow.testing import TestingSink, TestingSource, check_connector, run_job
from tests.connectors.scenarios import dead_lettered_job, failed_start
from tests.servers import OwnedServer


class Engine:
    """Where a test's tables live: a url for the connector and a way to run SQL."""

    def __init__(self, url: str, database: str) -> None:
        self.url = url
        self.database = database

    def sql(self, statement: str) -> list[tuple[Any, ...]]:
        if self.url.startswith("chdb://"):
            import chdb

            conn = chdb.connect(self.url.removeprefix("chdb://"))  # type: ignore[no-untyped-call]
            try:
                conn.query(f"USE {self.database}")
                table = conn.query(statement, "ArrowTable")
                return [tuple(r.values()) for r in table.to_pylist()] if table else []
            finally:
                conn.close()
        from clickhouse_driver import Client

        port = int(self.url.rsplit(":", 1)[1])
        client = Client(host="127.0.0.1", port=port, database=self.database)
        try:
            rows: list[tuple[Any, ...]] = client.execute(statement)
            return rows
        finally:
            client.disconnect()

    def options(self, **more: Any) -> dict[str, Any]:
        return {"url": self.url, "database": self.database, **more}


# chdb's engine lives in one process: on Ray, the subtasks' processes cannot open the
# folder this test process holds (test_a_chdb_folder_open_in_another_process...).
@pytest.fixture(params=["server-18.16", pytest.param("chdb-26.9", marks=pytest.mark.local_only)])
def engine(request: pytest.FixtureRequest) -> Engine:
    if request.param == "server-18.16":
        server: OwnedServer = request.getfixturevalue("clickhouse_server")
        return Engine(server.url, request.getfixturevalue("clickhouse_database"))
    return Engine(request.getfixturevalue("chdb_url"), request.getfixturevalue("chdb_database"))


ITEMS = "CREATE TABLE items (id Int64, user String, amount Float64, note Nullable(String)) "


def _completed(job: Job) -> Any:
    result = run_job(job)
    assert result.status is JobStatus.COMPLETED, result.error
    return result


def _records(count: int) -> list[dict[str, Any]]:
    return [
        {"id": i, "user": f"u{i % 97}", "amount": i * 0.5, "note": None if i % 4 else f"n{i}"}
        for i in range(count)
    ]


# -- options ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "options", "message"),
    [
        ("source", {"url": "http://127.0.0.1:8123", "table": "t"}, "clickhouse://"),
        ("source", {"table": "t", "query": "SELECT 1"}, "exactly one of 'table' or 'query'"),
        ("source", {"table": "t", "params": {"a": 1}}, "'params' go with 'query'"),
        ("source", {"table": "t", "order_by": "id; DROP TABLE t"}, "takes column names"),
        ("sink", {"table": "t", "delivery": "twice"}, "delivery"),
    ],
)
def test_options_are_checked_before_any_connection(
    role: str, options: dict[str, Any], message: str
) -> None:
    from reflow.connectors.clickhouse import ClickHouseConnector

    with pytest.raises(ConnectorConfigError, match=message):
        ClickHouseConnector().validate_config(options, role)


@pytest.mark.parametrize("role", ["source", "sink"])
def test_a_server_down_at_start_is_a_clear_error_with_the_password_masked(role: str) -> None:
    from tests.conftest import _free_low_port

    url = f"clickhouse://app:s3cret@127.0.0.1:{_free_low_port()}/db"
    spec = Connectors.clickhouse(url=url, table="t", connect_timeout=0.5)
    error = failed_start(spec, role)
    assert f"clickhouse {role}: cannot connect to clickhouse://app:***@127.0.0.1" in error, error
    assert "s3cret" not in error
    assert "is running and reachable" in error


def test_a_missing_table_names_it_and_the_fix(engine: Engine) -> None:
    sink = Connectors.clickhouse(**engine.options(table="nowhere"))
    result = run_job(Job.builder().source(TestingSource([{"a": 1}])).sink(sink).build())
    assert result.status is JobStatus.FAILED
    assert "table 'nowhere' does not exist" in str(result.error)
    assert "create it first" in str(result.error)


# -- the contract kit and volumes ------------------------------------------------------


def test_clickhouse_connector_contract(engine: Engine) -> None:
    engine.sql(
        "CREATE TABLE contract (id Int64, name String, amount Float64, flag UInt8, "
        "note Nullable(String)) ENGINE = MergeTree ORDER BY id"
    )
    options = engine.options(table="contract")
    report = check_connector(
        "clickhouse",
        sink_options=options,
        source_options={**options, "order_by": "id", "chunk_size": 128},
        normalize=lambda r: {**r, "flag": bool(r["flag"])},  # booleans are UInt8 here
        ordered=True,
    )
    assert "source resumes exactly from its snapshot" in report.passed, report


def test_100k_records_sink_then_parallel_read_record_for_record(engine: Engine) -> None:
    engine.sql(ITEMS + "ENGINE = MergeTree ORDER BY id")
    records = _records(100_000)
    sink = Connectors.clickhouse(**engine.options(table="items", batch_size=5_000))
    _completed(Job.builder().source(TestingSource(records)).sink(sink).build())
    assert engine.sql("SELECT count() FROM items") == [(100_000,)]

    out = TestingSink()
    source = Connectors.clickhouse(
        **engine.options(table="items", partition_column="user", parallelism=3, chunk_size=4_000)
    )
    _completed(Job.builder().source(source).sink(out).build())
    assert len(out.records) == 100_000
    assert sorted(out.records, key=lambda r: r["id"]) == records  # each row once, as sent


def test_query_with_parameters(engine: Engine) -> None:
    engine.sql(ITEMS + "ENGINE = MergeTree ORDER BY id")
    sink = Connectors.clickhouse(**engine.options(table="items"))
    _completed(Job.builder().source(TestingSource(_records(1_000))).sink(sink).build())
    out = TestingSink()
    source = Connectors.clickhouse(
        **engine.options(
            query="SELECT id, amount FROM items WHERE user = {user:String} AND id < {top:Int64}"
            " AND note LIKE '%5'",
            params={"user": "u5", "top": 600},
        )
    )
    _completed(Job.builder().source(source).sink(out).build())
    expected = [i for i in range(600) if i % 97 == 5 and i % 4 == 0 and str(i).endswith("5")]
    assert sorted(r["id"] for r in out.records) == expected


def test_rows_the_table_cannot_take_go_to_the_dead_letter(engine: Engine) -> None:
    engine.sql(
        "CREATE TABLE items (id Int64, user String, amount Float64 DEFAULT 0, "
        "note Nullable(String)) ENGINE = MergeTree ORDER BY id"
    )
    good = [{"id": i, "user": f"u{i}"} for i in range(500)]
    bad: list[Any] = [
        "not a record",
        {"id": 1_000, "user": "x", "colour": "red"},  # no such column
        {"id": 1_001, "amount": 1.0},  # user has no default
        {"id": "one thousand two", "user": "x"},  # not an Int64
    ]
    records = good[:200] + bad + good[200:]
    dead = TestingSink()
    sink = Connectors.clickhouse(**engine.options(table="items", batch_size=128))
    _completed(dead_lettered_job(TestingSource(records), sink, dead))
    assert sorted(str(d["record"]) for d in dead.records) == sorted(str(b) for b in bad)
    errors = " | ".join(str(d["error"]) for d in dead.records)
    assert "dict records" in errors and "'colour'" in errors and "no value for ['user']" in errors
    assert "refused by ClickHouse" in errors
    assert engine.sql("SELECT count(), sum(amount) FROM items") == [(500, 0.0)]


# -- exactly-once ------------------------------------------------------------------------


def _restore_twice(options: dict[str, Any]) -> None:
    """A checkpoint persisted, the process died before its commit: restore writes it;
    a second restore (another crash) must add nothing."""
    from reflow.connectors.clickhouse import ClickHouseConnector

    spec = ClickHouseConnector().create_sink({**options, "delivery": "exactly-once"})

    def writer() -> Any:
        return spec.create_writer(ConnectorContext("out", job_id="job-1"))

    async def scenario() -> None:
        crashed = writer()
        await crashed.open()
        await crashed.write(_records(2_500))
        state = await crashed.pre_commit(1)
        await crashed.write([{"id": -1, "user": "late", "amount": 0.0}])  # after the barrier
        await crashed.close()
        for _ in range(2):
            restarted = writer()
            await restarted.open()
            await restarted.restore([state])
            await restarted.close()

    asyncio.run(scenario())


@pytest.mark.local_only  # chdb: the engine is in this process
def test_exactly_once_by_deduplication_tokens(chdb_url: str, chdb_database: str) -> None:
    engine = Engine(chdb_url, chdb_database)
    engine.sql(
        ITEMS + "ENGINE = MergeTree ORDER BY id SETTINGS non_replicated_deduplication_window = 100"
    )
    _restore_twice(engine.options(table="items", batch_size=1_000))
    # Three blocks of the checkpoint, each written twice, stored once (no FINAL needed).
    assert engine.sql("SELECT count(), uniqExact(id), min(id) FROM items") == [(2_500, 2_500, 0)]


def test_exactly_once_by_replacing_merge_tree_on_a_server_without_tokens(
    clickhouse_server: OwnedServer, clickhouse_database: str
) -> None:
    engine = Engine(clickhouse_server.url, clickhouse_database)
    engine.sql(ITEMS + "ENGINE = ReplacingMergeTree ORDER BY id")
    _restore_twice(engine.options(table="items", batch_size=1_000))
    assert engine.sql("SELECT count(), uniqExact(id), min(id) FROM items FINAL") == [
        (2_500, 2_500, 0)
    ]


def test_exactly_once_into_a_table_that_keeps_repeats_is_refused_with_the_fix(
    engine: Engine,
) -> None:
    engine.sql(ITEMS + "ENGINE = MergeTree ORDER BY id")
    sink = Connectors.clickhouse(**engine.options(table="items", delivery="exactly-once"))
    result = run_job(Job.builder().source(TestingSource(_records(3))).sink(sink).build())
    assert result.status is JobStatus.FAILED
    assert "non_replicated_deduplication_window" in str(result.error)
    assert "ReplacingMergeTree" in str(result.error)


@pytest.mark.local_only  # its functions share state with the test (counters, lists)
def test_exactly_once_sink_through_failures_and_restarts(engine: Engine, tmp_path: Path) -> None:
    tokens = engine.url.startswith("chdb://")
    settings = " SETTINGS non_replicated_deduplication_window = 1000" if tokens else ""
    table_engine = "MergeTree" if tokens else "ReplacingMergeTree"
    engine.sql(ITEMS + f"ENGINE = {table_engine} ORDER BY id{settings}")
    failures = {"left": 2}

    async def flaky(record: dict[str, Any]) -> dict[str, Any]:
        if record["id"] % 100 == 0:
            await asyncio.sleep(0.005)  # slow enough for checkpoints to complete
        if record["id"] in (3_000, 7_000) and failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("forced failure")
        return record

    job = (
        Job.builder()
        .batch_size(50)
        .checkpointing(str(tmp_path / "ckpt"), interval_ms=100)
        .restart_strategy(FixedDelayRestart(attempts=3, delay_s=0.01))
        .source(TestingSource(_records(10_000)))
        .transform(Operators.map(flaky, concurrency=1))
        .sink(
            Connectors.clickhouse(
                **engine.options(table="items", batch_size=700, delivery="exactly-once")
            )
        )
        .build()
    )
    result = _completed(job)
    assert result.restarts == 2
    final = "" if tokens else " FINAL"
    assert engine.sql(f"SELECT count(), uniqExact(id) FROM items{final}") == [(10_000, 10_000)]


# -- outages -----------------------------------------------------------------------------


@pytest.mark.local_only  # its functions share state with the test (counters, lists)
def test_server_stopped_mid_run_is_retried_by_the_sink_and_recovered_by_the_source(
    clickhouse_server: OwnedServer, clickhouse_database: str, tmp_path: Path
) -> None:
    """The server is stopped for about a second while rows are inserted, and again while
    they are read: the sink retries its insert with backoff; the source's job fails and
    restarts from its checkpoint (its position: rows read in ``order_by`` order). No row
    is lost; the exactly-once test sink sees each once."""
    engine = Engine(clickhouse_server.url, clickhouse_database)
    engine.sql(ITEMS + "ENGINE = MergeTree ORDER BY id")
    records = _records(20_000)

    async def slow(record: dict[str, Any]) -> dict[str, Any]:
        if record["id"] % 200 == 0:
            await asyncio.sleep(0.01)
        return record

    def outage() -> None:
        while engine.sql("SELECT count() FROM items")[0][0] < 4_000:
            time.sleep(0.02)
        _stop_and_start(clickhouse_server, 1.0)

    write = (
        Job.builder()
        .source(TestingSource(records))
        .transform(Operators.map(slow, concurrency=1))
        .sink(
            Connectors.clickhouse(
                **engine.options(table="items", batch_size=500, flush_interval=0.05),
                max_retries=8,
                retry_backoff=0.2,
                connect_timeout=1,
            )
        )
        .build()
    )
    thread = threading.Thread(target=outage)
    thread.start()
    written = run_job(write)
    thread.join()
    assert written.status is JobStatus.COMPLETED, written.error
    count, distinct = engine.sql("SELECT count(), uniqExact(id) FROM items")[0]
    assert distinct == 20_000  # none lost (at-least-once: a lost acknowledgement may repeat)
    assert count >= 20_000

    seen: list[int] = []

    async def note(record: dict[str, Any]) -> dict[str, Any]:
        if len(seen) == 6_000:
            await asyncio.to_thread(_stop_and_start, clickhouse_server, 1.0)
        seen.append(record["id"])
        return record

    out = TestingSink(exactly_once=True)
    read = (
        Job.builder()
        .batch_size(100)
        .checkpointing(str(tmp_path / "ckpt"), interval_ms=100)
        .restart_strategy(FixedDelayRestart(attempts=5, delay_s=0.5))
        .source(
            Connectors.clickhouse(
                **engine.options(
                    # 2 KB a row: more than the sockets hold, so the stop breaks the read.
                    query="SELECT id, arrayStringConcat(arrayMap(x -> 'abcdefgh', range(250))) "
                    "AS pad FROM (SELECT DISTINCT id FROM items)",
                    order_by="id",
                    chunk_size=300,
                ),
                connect_timeout=1,
            )
        )
        .transform(Operators.map(slow, concurrency=1))
        .transform(Operators.map(note, concurrency=1))
        .sink(out)
        .build()
    )
    result = run_job(read)
    assert result.status is JobStatus.COMPLETED, result.error
    assert result.restarts >= 1  # the read failed while the server was down
    assert sorted(r["id"] for r in out.records) == list(range(20_000))


def _stop_and_start(server: OwnedServer, down: float) -> None:
    server.stop()
    time.sleep(down)
    server.start()


def test_health_reports_the_address_and_a_stopped_server(
    clickhouse_server: OwnedServer, clickhouse_database: str
) -> None:
    from reflow.connectors.clickhouse import ClickHouseConnector

    engine = Engine(clickhouse_server.url, clickhouse_database)
    engine.sql(ITEMS + "ENGINE = MergeTree ORDER BY id")
    spec = ClickHouseConnector().create_sink(engine.options(table="items"))

    async def scenario() -> tuple[Any, Any]:
        writer: Any = spec.create_writer(ConnectorContext("out"))
        await writer.open()
        up = await writer.health()
        clickhouse_server.stop()
        try:
            down = await writer.health()
        finally:
            clickhouse_server.start()
            await writer.close()
        return up, down

    up, down = asyncio.run(scenario())
    where = f"clickhouse://***@127.0.0.1:{clickhouse_server.port}"  # user and password hidden
    assert up == (True, f"connected to {where}")
    assert down[0] is False and down[1].startswith(f"cannot reach {where}: ")


def test_a_chdb_folder_open_in_another_process_is_a_clear_error(
    chdb_url: str, chdb_database: str
) -> None:
    """This test process holds the folder; a job in another process cannot open it."""
    import subprocess
    import sys

    script = (
        "from reflow import Connectors, Job\n"
        "from reflow.testing import TestingSource, run_job\n"
        f"sink = Connectors.clickhouse(url={chdb_url!r}, database={chdb_database!r}, table='t')\n"
        "print(run_job(Job.builder().source(TestingSource([{'a': 1}])).sink(sink).build()).error)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert "clickhouse sink: cannot open the in-process engine at chdb://" in done.stdout
    assert "one folder per process" in done.stdout


def test_refused_rows_reach_the_error_policy_on_the_event_loop_thread(engine: Engine) -> None:
    """The insert (and its halving) runs in the I/O pool; the error policy is called on
    the loop, once per refused row."""
    from reflow.connectors.clickhouse import ClickHouseConnector

    engine.sql(ITEMS + "ENGINE = MergeTree ORDER BY id")
    spec = ClickHouseConnector().create_sink(engine.options(table="items"))
    calls: list[tuple[Any, str]] = []

    def reject(record: Any, error: BaseException) -> None:
        calls.append((record, threading.current_thread().name))

    rows: list[Any] = _records(40)
    rows[17] = {"id": "seventeen", "user": "x"}

    async def scenario() -> str:
        writer: Any = spec.create_writer(ConnectorContext("out", reject=reject))
        await writer.open()
        await writer.write(rows)
        await writer.flush()
        await writer.close()
        return threading.current_thread().name

    loop_thread = asyncio.run(scenario())
    assert [r for r, _ in calls] == [rows[17]]
    assert {thread for _, thread in calls} == {loop_thread}
    assert engine.sql("SELECT count() FROM items") == [(39,)]
