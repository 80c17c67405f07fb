"""The design document's examples, in its shape, against real servers: the §6.2 job
file as written (pointed at the local broker and MariaDB), §9.1 (Kafka -> map ->
filter -> JDBC, scheduled immediately), §9.2 (JDBC query -> rolling aggregate ->
dated CSV file, on a cron schedule) and §9.3 (a StreamGraph with two branches of
5-minute window aggregates into two tables).

What still differs from the seed's spelling is said at each example: Java lambdas
and method references become Python lambdas and field names, and the connectors
are given the addresses of the local servers."""

from __future__ import annotations

import asyncio
import csv
import operator
import sqlite3
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa

from reflow import Connectors, Job, Operators, SchedulePolicy, StreamGraph
from reflow.config import job_loader, load_job_text
from reflow.eventtime import ManualClock
from reflow.operators import Collectors
from reflow.runtime import ExecutorSettings, LocalExecutor
from reflow.scheduler import JobManager, JobStore

# -- helpers ---------------------------------------------------------------------------


def _create_topics(bootstrap: str, *names: str, partitions: int = 2) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            new = [NewTopic(n, partitions, 1) for n in names if n not in existing]
            if new:
                await admin.create_topics(new)
        finally:
            await admin.close()

    asyncio.run(create())


def _produce(bootstrap: str, topic: str, records: list[dict[str, Any]]) -> None:
    from aiokafka import AIOKafkaProducer

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            for record in records:
                await producer.send(topic, orjson.dumps(record))
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(send())


async def _until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Wait (polling) for an outside system to reach a state; fails naming it."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def _metric(executor: LocalExecutor, job_id: str, step: str, field: str) -> int:
    """A step's counter, 0 until the run has started."""
    from reflow.errors import ExecutionError

    try:
        return int(getattr(executor.snapshot(job_id).metrics.step(step), field))
    except ExecutionError:
        return 0


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(url.replace("mysql://", "mysql+pymysql://", 1))


def _rows(engine: sa.Engine, query: str) -> list[Any]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(query))]


# -- §6.2 ------------------------------------------------------------------------------

# The seed's §6.2 file; the only changes: bootstrapServers and url name local servers.
SEED_62 = """
# ETL任务配置示例
job:
  id: user-etl-job
  name: User Data ETL
  type: streaming

  # 调度配置
  schedule:
    policy: cron
    expression: "0 0 * * * ?"
    timezone: Asia/Shanghai

  # 资源配置
  resources:
    parallelism: 8
    memory: 4g

  # Source配置
  source:
    connector: kafka
    type: kafka
    config:
      bootstrapServers: {bootstrap}
      topics: [user-events]
      groupId: etl-consumer

  # Operator配置
  operators:
    - name: parse
      type: map
      parallelism: 8

    - name: filter
      type: filter
      parallelism: 8

    - name: aggregate
      type: window-aggregate
      parallelism: 4
      window:
        type: tumbling
        size: 5m

  # Sink配置
  sink:
    connector: jdbc
    type: jdbc
    config:
      url: {jdbc_url}
      table: user_stats
      batchSize: 100
      flushInterval: 5s
"""

WINDOW_START = 1_780_000_200_000  # a 5-minute boundary


def test_seed_62_job_file_runs_as_written(kafka_bootstrap: str, mariadb_url: str) -> None:
    _create_topics(kafka_bootstrap, "user-events")
    _produce(kafka_bootstrap, "user-events", [{"user": f"u{i % 7}", "n": i} for i in range(300)])
    engine = _engine(mariadb_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE user_stats (`key` VARCHAR(64) NULL, window_start BIGINT, "
                "window_end BIGINT, value BIGINT)"
            )
        )
    jdbc_url = "jdbc:" + mariadb_url
    job = load_job_text(SEED_62.format(bootstrap=kafka_bootstrap, jdbc_url=jdbc_url), "6.2.yaml")
    assert job.job_id == "user-etl-job" and job.job_graph.max_parallelism == 8
    assert job.metadata["memory"] == "4g" and job.metadata["schedule"]["policy"] == "cron"
    clock = ManualClock(WINDOW_START + 1_000)

    async def run() -> None:
        with LocalExecutor(ExecutorSettings(clock=clock)) as executor:
            task = asyncio.create_task(executor.execute(job))
            step = job.job_id

            def metric(name: str, field: str) -> int:
                return _metric(executor, step, name, field)

            await _until(lambda: metric("aggregate", "records_in") == 300, "300 records read")
            await clock.advance_and_settle(300, step=5)  # the 5-minute window closes
            await _until(lambda: metric("sink", "records_in") == 1, "the window result")
            await executor.stop(step)  # a streaming job: stopped, its sink flushed
            result = await task
            assert result.status.value == "CANCELLED", result.error
            assert result.metrics.step("sink").records_in == 1, result.summary()

    asyncio.run(run())
    assert _rows(engine, "SELECT `key`, window_start, window_end, value FROM user_stats") == [
        (None, WINDOW_START, WINDOW_START + 300_000, 300)
    ]
    engine.dispose()


# -- §9.1 ------------------------------------------------------------------------------

SEED_91_JOB: Job | None = None
"""Set by the test: the scheduler keeps jobs by reference to a module-level name."""


def parse_user(event: dict[str, Any]) -> dict[str, Any]:
    return {"id": event["id"], "name": event["name"], "active": event["active"]}


def test_seed_91_simple_etl_scheduled_immediately(
    kafka_bootstrap: str, mariadb_url: str, tmp_path: Path
) -> None:
    global SEED_91_JOB
    topic = f"user-events-{uuid.uuid4().hex[:6]}"  # the §6.2 test reads user-events
    _create_topics(kafka_bootstrap, topic)
    events = [{"id": i, "name": f"user {i}", "active": i % 3 != 0} for i in range(500)]
    _produce(kafka_bootstrap, topic, events)
    engine = _engine(mariadb_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE users (id BIGINT, name VARCHAR(64), active BOOL)"))

    # Seed: Job.builder().name("simple-etl").source(Connectors.kafka().topic(...)
    #   .groupId("etl-consumer").build()).transform(Operators.map(event -> parseUser(event)))
    #   .transform(Operators.filter(user -> user.isActive())).sink(Connectors.jdbc()
    #   .table("users").batchSize(100).build()).build();
    job = (
        Job.builder()
        .name("simple-etl")
        .source(
            Connectors.kafka()
            .topic(topic)
            .groupId("etl-consumer")
            .bootstrapServers(kafka_bootstrap)  # local server
            .build()
        )
        .transform(Operators.map(lambda event: parse_user(event)))
        .transform(Operators.filter(lambda user: user["active"]))
        .sink(
            Connectors.jdbc()
            .url("jdbc:" + mariadb_url)  # local server
            .table("users")
            .batchSize(100)
            .build()
        )
        .build()
    )
    SEED_91_JOB = job
    jobScheduler = JobManager(JobStore(f"sqlite:///{tmp_path}/jobs.db"), loader=job_loader)
    jobScheduler.schedule(job, SchedulePolicy.immediate())

    async def run() -> None:
        jobScheduler.recover()
        expected = sum(1 for e in events if e["active"])

        async def rows_arrive() -> None:
            deadline = time.monotonic() + 60
            while _rows(engine, "SELECT COUNT(*) FROM users")[0][0] < expected:
                assert time.monotonic() < deadline, "timed out waiting for the users rows"
                await jobScheduler.step()
                await asyncio.sleep(0.1)

        await rows_arrive()
        jobScheduler.cancel("simple-etl")  # a streaming job: it runs until cancelled
        await asyncio.gather(*(r.task for r in jobScheduler.running.values()))

    asyncio.run(run())
    rows = _rows(engine, "SELECT id, name, active FROM users ORDER BY id")
    assert rows == [(e["id"], e["name"], 1) for e in events if e["active"]]
    runs = jobScheduler.store.runs("simple-etl")
    assert [(r.trigger, r.status) for r in runs] == [("submit", "CANCELLED")]
    SEED_91_JOB = None
    engine.dispose()


# -- §9.2 ------------------------------------------------------------------------------

SEED_92_JOB: Job | None = None


def test_seed_92_daily_report_on_a_cron_schedule(postgres_url: str, tmp_path: Path) -> None:
    global SEED_92_JOB
    engine = sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://", 1))
    orders = [
        ("2026-05-31", "north", 10.0),
        ("2026-05-31", "south", 5.0),
        ("2026-05-31", "north", 2.5),
        ("2026-05-30", "north", 100.0),  # another day: not in the report
    ]
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE orders (date DATE, region TEXT, amount FLOAT)"))
        for day, region, amount in orders:
            conn.execute(
                sa.text("INSERT INTO orders VALUES (:d, :r, :a)"),
                {"d": day, "r": region, "a": amount},
            )
    reports = tmp_path / "reports"

    # Seed: Job.builder().name("daily-report").source(Connectors.jdbc()
    #   .query("SELECT * FROM orders WHERE date = ?").build())
    #   .transform(Operators.aggregate(Orders::getRegion, Orders::getAmount, Double::sum))
    #   .sink(Connectors.file().path("/reports/daily-{date}.csv").build()).build();
    job = (
        Job.builder()
        .name("daily-report")
        .source(
            Connectors.jdbc()
            .url(postgres_url)  # local server
            .query("SELECT * FROM orders WHERE date = ?")
            .params(["2026-05-31"])  # the value of the ? (the seed leaves it out)
            .build()
        )
        .transform(Operators.aggregate("region", "amount", operator.add))
        .sink(Connectors.file().path(f"{reports}/daily-{{date}}.csv").build())
        .build()
    )
    SEED_92_JOB = job
    clock = ManualClock(int(datetime(2026, 6, 1, 0, 30, tzinfo=UTC).timestamp() * 1000))
    jobScheduler = JobManager(
        JobStore(f"sqlite:///{tmp_path}/jobs.db"),
        settings=ExecutorSettings(clock=clock),
        loader=job_loader,
    )
    # Seed: every day at 01:00.
    jobScheduler.schedule(job, SchedulePolicy.cron("0 0 1 * * ?"))

    async def a_day() -> None:
        jobScheduler.recover()
        for _ in range(24 * 6):  # a simulated day in 10-minute steps
            clock.advance(600)
            for _ in range(3):
                await jobScheduler.step()
                if jobScheduler.running:
                    await asyncio.gather(*(r.task for r in jobScheduler.running.values()))

    asyncio.run(a_day())
    runs = jobScheduler.store.runs("daily-report")
    assert [(r.trigger[:30], r.status) for r in runs] == [
        ("cron:2026-06-01T01:00:00+00:00", "COMPLETED")
    ]
    (report,) = reports.glob("daily-*.csv")
    with report.open() as file:
        rows = sorted((r["region"], float(r["amount"])) for r in csv.DictReader(file))
    assert rows == [("north", 12.5), ("south", 5.0)]
    SEED_92_JOB = None
    engine.dispose()


# -- §9.3 ------------------------------------------------------------------------------

SEED_93_JOB: Job | None = None


def parse_event(message: dict[str, Any]) -> dict[str, Any]:
    return {**message, "kind": message["type"]}


def test_seed_93_stream_graph_with_two_window_branches(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    global SEED_93_JOB
    topic = f"events-{uuid.uuid4().hex[:6]}"
    _create_topics(kafka_bootstrap, topic)
    events = [
        {"type": "user", "userId": f"u{i % 3}", "orderId": None, "amount": 0.0}
        if i % 2
        else {"type": "order", "userId": None, "orderId": f"o{i % 4}", "amount": i * 0.5}
        for i in range(400)
    ]
    _produce(kafka_bootstrap, topic, events)
    db = tmp_path / "stats.db"
    with sqlite3.connect(db) as conn:
        for table in ("user_stats", "order_stats"):
            conn.execute(f"CREATE TABLE {table} (key TEXT, window_start, window_end, value)")
    url = f"sqlite:///{db}"  # local server

    graph = (
        StreamGraph.builder()
        # Source
        .addSource(
            "kafka-source",
            Connectors.kafka().topics(topic).bootstrapServers(kafka_bootstrap).build(),
        )
        # Parse
        .addOperator("parse", Operators.map(lambda msg: parse_event(msg)))
        # Branch 1: User events
        .addOperator("filter-user", Operators.filter(lambda e: e["kind"] == "user"))
        .addOperator(
            "user-aggregate",
            Operators.windowAggregate(timedelta(minutes=5), "userId", Collectors.counting()),  # type: ignore[attr-defined]  # the seed's spelling
        )
        .addSink("user-sink", Connectors.jdbc().url(url).table("user_stats").build())
        # Branch 2: Order events
        .addOperator("filter-order", Operators.filter(lambda e: e["kind"] == "order"))
        .addOperator(
            "order-aggregate",
            Operators.windowAggregate(  # type: ignore[attr-defined]  # the seed's spelling
                timedelta(minutes=5), "orderId", Collectors.summingDouble("amount")
            ),
        )
        .addSink("order-sink", Connectors.jdbc().url(url).table("order_stats").build())
        # Connect edges
        .connect("kafka-source", "parse")
        .connect("parse", "filter-user")
        .connect("parse", "filter-order")
        .connect("filter-user", "user-aggregate")
        .connect("user-aggregate", "user-sink")
        .connect("filter-order", "order-aggregate")
        .connect("order-aggregate", "order-sink")
        .build()
    )
    jobGraph = graph.toJobGraph()
    job = Job(jobGraph)
    SEED_93_JOB = job
    clock = ManualClock(WINDOW_START)
    jobScheduler = JobManager(
        JobStore(f"sqlite:///{tmp_path}/jobs.db"),
        settings=ExecutorSettings(clock=clock),
        loader=job_loader,
    )
    jobScheduler.schedule(job, SchedulePolicy.immediate())

    async def run() -> None:
        jobScheduler.recover()
        await jobScheduler.step()
        (running,) = jobScheduler.running.values()
        executor = jobScheduler.executor
        assert isinstance(executor, LocalExecutor)

        def into(step: str) -> int:
            return _metric(executor, running.run_id, step, "records_in")

        await _until(lambda: into("parse") == 400, "400 events parsed")
        await _until(lambda: into("user-aggregate") + into("order-aggregate") == 400, "branches")
        await clock.advance_and_settle(301, step=5)  # the 5-minute windows close
        await _until(lambda: into("user-sink") == 3 and into("order-sink") == 2, "window results")
        jobScheduler.cancel(running.job_id)
        await running.task

    asyncio.run(run())
    with sqlite3.connect(db) as conn:
        users = conn.execute("SELECT key, window_end - window_start, value FROM user_stats")
        counts = Counter(e["userId"] for e in events if e["type"] == "user")
        assert sorted(users) == [(u, 300_000, n) for u, n in sorted(counts.items())]
        orders = dict(conn.execute("SELECT key, value FROM order_stats"))
    assert orders == {
        "o0": sum(i * 0.5 for i in range(0, 400, 4)),
        "o2": sum(i * 0.5 for i in range(2, 400, 4)),
    }
    SEED_93_JOB = None
    assert sys.modules[__name__].SEED_93_JOB is None
