"""The mongodb connector against a real MongoDB wire-protocol server (SecantusDB,
started by the test run: a single-node replica set with change streams and
transactions)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymongo
import pytest

from reflow import Connectors, Job, JobStatus, Operators
from reflow.connectors.base import ConnectorContext
from reflow.errors import ConnectorConfigError
from reflow.graph.restart import FixedDelayRestart
from reflow.testing import TestingSink, TestingSource, check_connector, run_job
from tests.connectors.scenarios import dead_lettered_job, failed_start
from tests.servers import OwnedServer

_CLIENTS: dict[str, Any] = {}


@pytest.fixture(autouse=True, scope="module")
def _close_clients() -> Iterator[None]:
    yield
    for client in _CLIENTS.values():
        client.close()
    _CLIENTS.clear()


def _client(url: str) -> Any:
    """The test's own client for ``url`` (one per address, closed after the module)."""
    if url not in _CLIENTS:
        _CLIENTS[url] = pymongo.MongoClient(url, serverSelectionTimeoutMS=10_000)
    return _CLIENTS[url]


def _collection(url: str, database: str, name: str = "items") -> Any:
    return _client(url)[database][name]


def _completed(job: Job) -> Any:
    result = run_job(job)
    assert result.status is JobStatus.COMPLETED, result.error
    return result


def _without_id(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "_id"}


# -- options ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"filter": {"a": {"$where": "sleep(1)"}}}, "runs JavaScript on the server"),
        ({"mode": "changes", "pipeline": [{"$match": {"$function": {}}}]}, "JavaScript"),
        ({"mode": "changes", "filter": {"a": 1}}, "filter apply to mode 'scan'"),
        ({"stop_when_idle": 1}, "apply to mode 'changes'"),
        ({"url": "http://127.0.0.1:27017"}, "mongodb://"),
        ({"colection": "x"}, "did you mean 'collection'"),
    ],
)
def test_source_options_are_checked_before_any_connection(
    options: dict[str, Any], message: str
) -> None:
    from reflow.connectors.mongodb import MongoConnector

    given = {"database": "d", "collection": "c", **options}
    with pytest.raises(ConnectorConfigError, match=message):
        MongoConnector().validate_config(given, "source")


def test_sink_key_must_name_a_field() -> None:
    from reflow.connectors.mongodb import MongoConnector

    with pytest.raises(ConnectorConfigError, match="'key' needs at least one field"):
        MongoConnector().validate_config(
            {"database": "d", "collection": "c", "mode": "upsert", "key": []}, "sink"
        )


@pytest.mark.parametrize("role", ["source", "sink"])
def test_a_server_down_at_start_is_a_clear_error_with_the_password_masked(role: str) -> None:
    from tests.conftest import _free_low_port

    url = f"mongodb://app:s3cret@127.0.0.1:{_free_low_port()}/?directConnection=true"
    spec = Connectors.mongodb(url=url, database="d", collection="c", connect_timeout=0.3)
    error = failed_start(spec, role)
    assert f"mongodb {role}: cannot connect to mongodb://app:***@127.0.0.1" in error, error
    assert "s3cret" not in error
    assert "Check the 'url' option" in error


# -- the contract kit and record-for-record volumes ---------------------------------


def test_mongodb_connector_contract(mongodb_url: str, mongodb_database: str) -> None:
    options = {"url": mongodb_url, "database": mongodb_database, "collection": "contract"}
    report = check_connector(
        "mongodb",
        sink_options=options,
        source_options=options,
        normalize=_without_id,
        ordered=True,
    )
    assert "source resumes exactly from its snapshot" in report.passed, report


def test_100k_records_sink_then_parallel_scan_record_for_record(
    mongodb_url: str, mongodb_database: str
) -> None:
    records = [{"n": i, "user": f"u{i % 97}", "amount": i * 0.5} for i in range(100_000)]
    sink = Connectors.mongodb(url=mongodb_url, database=mongodb_database, collection="items")
    _completed(Job.builder().source(TestingSource(records)).sink(sink).build())
    assert _collection(mongodb_url, mongodb_database).estimated_document_count() == 100_000

    out = TestingSink()
    source = Connectors.mongodb(
        url=mongodb_url, database=mongodb_database, collection="items", parallelism=3
    )
    _completed(Job.builder().source(source).sink(out).build())
    ids = Counter(r["_id"] for r in out.records)
    assert len(ids) == 100_000 and set(ids.values()) == {1}  # each document once
    assert sorted((_without_id(r) for r in out.records), key=lambda r: r["n"]) == records


def test_parallel_scan_covers_ids_of_every_type_with_a_filter_and_projection(
    mongodb_url: str, mongodb_database: str
) -> None:
    from bson import ObjectId

    coll = _collection(mongodb_url, mongodb_database)
    ids: list[Any] = [*range(-50, 250), *(f"s{i:03}" for i in range(200))]
    ids += [ObjectId() for _ in range(200)]
    coll.insert_many([{"_id": i, "k": n % 4, "v": n} for n, i in enumerate(ids)])
    out = TestingSink()
    source = Connectors.mongodb(
        url=mongodb_url,
        database=mongodb_database,
        collection="items",
        filter={"k": {"$ne": 0}},
        projection={"_id": 0, "v": 1},
        parallelism=4,
        batch_size=37,
    )
    _completed(Job.builder().source(source).sink(out).build())
    expected = sorted(n for n in range(len(ids)) if n % 4 != 0)
    assert sorted(r["v"] for r in out.records) == expected  # each once, none missing
    assert all(set(r) == {"v"} for r in out.records)  # _id read for the position only


def test_a_resumed_scan_goes_on_after_the_last_id_across_types(
    mongodb_url: str, mongodb_database: str
) -> None:
    from reflow.connectors.mongodb import MongoConnector

    coll = _collection(mongodb_url, mongodb_database)
    coll.insert_many([{"_id": i} for i in [*range(10), "a", "b", None]])
    spec = MongoConnector().create_source(
        {"url": mongodb_url, "database": mongodb_database, "collection": "items", "batch_size": 4}
    )

    async def read(position: Any) -> tuple[list[Any], Any]:
        reader = spec.create_reader(ConnectorContext("src"))
        if position is not None:
            reader.restore(position)
        await reader.open()
        first = await reader.read_batch()
        snapshot = reader.snapshot()
        rest = []
        while (batch := await reader.read_batch()) is not None:
            rest.extend(batch)
        await reader.close()
        assert first is not None
        return [d["_id"] for d in first] + [d["_id"] for d in rest], snapshot

    everything, after_first = asyncio.run(read(None))
    assert everything == [None, *range(10), "a", "b"]  # MongoDB's order: null, numbers, strings
    resumed, _ = asyncio.run(read(after_first))
    assert resumed == everything[4:]


# -- the sink ----------------------------------------------------------------------


def test_upsert_and_replace_by_key_fields(mongodb_url: str, mongodb_database: str) -> None:
    first = [{"region": "eu", "sku": i, "qty": 1, "note": "a"} for i in range(500)]
    second = [{"region": "eu", "sku": i, "qty": 2} for i in range(250, 750)]
    for mode, batch in (("upsert", first), ("upsert", second)):
        sink = Connectors.mongodb(
            url=mongodb_url,
            database=mongodb_database,
            collection="stock",
            mode=mode,
            key=["region", "sku"],
            ordered=False,
            batch_size=128,
        )
        _completed(Job.builder().source(TestingSource(batch)).sink(sink).build())
    coll = _collection(mongodb_url, mongodb_database, "stock")
    docs = {d["sku"]: _without_id(d) for d in coll.find()}
    assert len(docs) == 750
    assert docs[10] == {"region": "eu", "sku": 10, "qty": 1, "note": "a"}
    assert docs[300] == {"region": "eu", "sku": 300, "qty": 2, "note": "a"}  # $set keeps note
    assert docs[700] == {"region": "eu", "sku": 700, "qty": 2}

    replace = Connectors.mongodb(
        url=mongodb_url,
        database=mongodb_database,
        collection="stock",
        mode="replace",
        key=["region", "sku"],
    )
    _completed(Job.builder().source(TestingSource(second[:10])).sink(replace).build())
    assert _without_id(coll.find_one({"sku": 255})) == {"region": "eu", "sku": 255, "qty": 2}
    assert _without_id(coll.find_one({"sku": 300}))["note"] == "a"  # not in the replace


@pytest.mark.parametrize("ordered", [True, False])
def test_refused_documents_go_to_the_dead_letter_and_the_rest_is_written(
    mongodb_url: str, mongodb_database: str, ordered: bool
) -> None:
    coll = _collection(mongodb_url, mongodb_database)
    coll.insert_many([{"_id": i, "old": True} for i in range(0, 1_000, 100)])
    records: list[Any] = [{"_id": i, "v": i} for i in range(1_000)]
    records += ["not a document", {"_id": 5, "v": "twice"}]
    dead = TestingSink()
    sink = Connectors.mongodb(
        url=mongodb_url,
        database=mongodb_database,
        collection="items",
        ordered=ordered,
        batch_size=64,
    )
    _completed(dead_lettered_job(TestingSource(records), sink, dead))
    refused = sorted(str(d["record"]) for d in dead.records)
    expected = sorted([*(str({"_id": i, "v": i}) for i in range(0, 1_000, 100))])
    expected = sorted([*expected, "not a document", str({"_id": 5, "v": "twice"})])
    assert refused == expected  # exactly the duplicates and the non-document
    errors = [str(d["error"]) for d in dead.records]
    assert sum("refused by MongoDB: E11000 duplicate key" in e for e in errors) == 11, errors
    assert sum("takes dict records, got str" in e for e in errors) == 1, errors
    assert coll.count_documents({}) == 1_000  # 990 new + 10 that were there
    assert coll.count_documents({"old": True}) == 10


def test_exactly_once_commit_lost_in_a_crash_is_redone_once_on_restore(
    mongodb_url: str, mongodb_database: str
) -> None:
    """The checkpoint was persisted but the process died before its commit: restore
    writes the checkpoint's documents (plain inserts, in a transaction with the
    marker); restoring again writes nothing more."""
    from reflow.connectors.mongodb import MongoConnector

    spec = MongoConnector().create_sink(
        {
            "url": mongodb_url,
            "database": mongodb_database,
            "collection": "items",
            "delivery": "exactly-once",
        }
    )

    def writer() -> Any:
        return spec.create_writer(ConnectorContext("out", job_id="job-1"))

    async def scenario() -> None:
        crashed = writer()
        await crashed.open()
        assert crashed.transactions
        await crashed.write([{"n": i} for i in range(1_000)])
        state = await crashed.pre_commit(1)
        await crashed.write([{"n": -1}])  # after the barrier: not in checkpoint 1
        await crashed.close()  # dies before commit(1)
        assert _collection(mongodb_url, mongodb_database).count_documents({}) == 0
        for _ in range(2):
            restarted = writer()
            await restarted.open()
            await restarted.restore([state])
            await restarted.close()

    asyncio.run(scenario())
    coll = _collection(mongodb_url, mongodb_database)
    assert sorted(d["n"] for d in coll.find()) == list(range(1_000))


@pytest.mark.parametrize("kill", [True, False])
def test_a_commit_killed_mid_transaction_does_not_hold_up_the_restart(
    mongodb_url: str, mongodb_database: str, kill: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process died inside its commit transaction, which stays open on the server
    (60 s by default) holding the marker: the restart kills that session (its id is
    in the checkpoint) and commits at once, instead of conflicting until the retries
    run out."""
    from reflow.connectors.mongodb import MongoConnector
    from reflow.connectors.mongodb.sink import MARKER_COLLECTION, MongoWriter
    from reflow.errors import ConnectorError

    if not kill:  # what the restart met before: the dead transaction's conflict
        monkeypatch.setattr(MongoWriter, "_kill_session", lambda self, session_id: None)
    spec = MongoConnector().create_sink(
        {
            "url": mongodb_url,
            "database": mongodb_database,
            "collection": "items",
            "delivery": "exactly-once",
            "max_retries": 1,
            "retry_backoff": 0.05,
        }
    )

    async def scenario() -> None:
        crashed: Any = spec.create_writer(ConnectorContext("out", job_id="job-k"))
        await crashed.open()
        await crashed.write([{"n": i} for i in range(100)])
        state = await crashed.pre_commit(1)
        # its commit begins in the checkpoint's session, and the process dies in it:
        # the transaction holds the marker; the dead process never ends the session
        session = crashed.sessions[1]
        session.start_transaction()
        crashed.client[mongodb_database][MARKER_COLLECTION].update_one(
            {"_id": crashed._marker_id(0)},
            {"$set": {"checkpoint_id": 0}},
            upsert=True,
            session=session,
        )
        try:
            restarted: Any = spec.create_writer(ConnectorContext("out", job_id="job-k"))
            await restarted.open()
            try:
                await restarted.restore([state])
            finally:
                await restarted.close()
        finally:
            crashed.client.close()

    coll = _collection(mongodb_url, mongodb_database)
    if not kill:
        with pytest.raises(ConnectorError, match="WriteConflict"):
            asyncio.run(scenario())
        assert coll.count_documents({}) == 0
        return
    asyncio.run(scenario())
    assert sorted(d["n"] for d in coll.find()) == list(range(100))


def test_exactly_once_insert_without_transactions_is_refused_with_the_fix(
    mongodb_url: str, mongodb_database: str
) -> None:
    sink = Connectors.mongodb(
        url=mongodb_url,
        database=mongodb_database,
        collection="items",
        delivery="exactly-once",
        transactions="off",
    )
    result = run_job(Job.builder().source(TestingSource([{"n": 1}])).sink(sink).build())
    assert result.status is JobStatus.FAILED
    assert "use mode 'upsert' or 'replace'" in str(result.error)


# -- change streams ------------------------------------------------------------------


def test_change_stream_delivers_inserts_updates_and_deletes_in_order(
    mongodb_url: str, mongodb_database: str
) -> None:
    """Changes made while the job runs arrive in order; a change before ``start_at``
    (an operation time, here the second after it) does not."""
    coll = _collection(mongodb_url, mongodb_database)
    with _client(mongodb_url).start_session() as session:
        coll.insert_one({"_id": "before", "v": 0}, session=session)
        start = session.operation_time.time + 1
    out = TestingSink()
    source = Connectors.mongodb(
        url=mongodb_url,
        database=mongodb_database,
        collection="items",
        mode="changes",
        start_at=start,
        stop_when_idle=1.5,
        max_await=0.2,
    )

    def changes() -> None:
        while time.time() < start:  # the server's clock: changes from ``start`` on
            time.sleep(0.01)
        for i in range(300):
            coll.insert_one({"_id": i, "v": i})
            if i % 3 == 0:
                coll.update_one({"_id": i}, {"$set": {"v": -1 - i}, "$unset": {"x": ""}})
            if i % 5 == 0:
                coll.delete_one({"_id": i})

    writer = threading.Thread(target=changes)
    writer.start()
    result = run_job(Job.builder().source(source).sink(out).build())
    writer.join()
    assert result.status is JobStatus.COMPLETED, result.error
    expected: list[tuple[str, int]] = []
    for i in range(300):
        expected.append(("insert", i))
        if i % 3 == 0:
            expected.append(("update", i))
        if i % 5 == 0:
            expected.append(("delete", i))
    assert [(r["operation"], r["_id"]) for r in out.records] == expected
    first_update = next(r for r in out.records if r["operation"] == "update")
    assert first_update["updated_fields"] == {"v": -1}
    kept = [r for r in out.records if r["operation"] == "update" and r["_id"] % 5]
    assert kept and all(r["document"] == {"_id": r["_id"], "v": -1 - r["_id"]} for r in kept)
    inserts = [r for r in out.records if r["operation"] == "insert"]
    assert [r["document"] for r in inserts] == [{"_id": i, "v": i} for i in range(300)]
    assert all(r["namespace"] == f"{mongodb_database}.items" for r in out.records)
    times = [r["cluster_time"] for r in out.records]
    assert times == sorted(times) and times[0].tzinfo is not None


@pytest.mark.local_only  # its functions share state with the test (counters, lists)
def test_change_stream_from_a_start_time_kill_and_resume_loses_and_doubles_nothing(
    mongodb_url: str, mongodb_database: str, tmp_path: Path
) -> None:
    """Events from ``start_at`` (written before the job), through a job that fails twice
    and restarts from its checkpoint (the resume token), into the exactly-once MongoDB
    sink: every event arrives once, in order per document."""
    import datetime as dt

    coll = _collection(mongodb_url, mongodb_database)
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=2)
    for chunk in range(0, 6_000, 500):
        coll.insert_many([{"_id": i, "n": i} for i in range(chunk, chunk + 500)])
    failures = {"left": 2}

    async def flaky(record: dict[str, Any]) -> dict[str, Any]:
        n = record["_id"]
        if n % 100 == 0:
            await asyncio.sleep(0.005)  # slow enough for checkpoints to complete
        if n in (2_000, 4_500) and failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("forced failure")
        return {"n": n, "op": record["operation"]}

    job = (
        Job.builder()
        .batch_size(50)
        .checkpointing(str(tmp_path / "ckpt"), interval_ms=100)
        .restart_strategy(FixedDelayRestart(attempts=3, delay_s=0.01))
        .source(
            Connectors.mongodb(
                url=mongodb_url,
                database=mongodb_database,
                collection="items",
                mode="changes",
                start_at=start,
                stop_when_idle=1.0,
                max_await=0.2,
                batch_size=50,
            )
        )
        .transform(Operators.map(flaky, concurrency=1))
        .sink(
            Connectors.mongodb(
                url=mongodb_url,
                database=mongodb_database,
                collection="copy",
                delivery="exactly-once",
            )
        )
        .build()
    )
    result = _completed(job)
    assert result.restarts == 2
    copy = _collection(mongodb_url, mongodb_database, "copy")
    numbers = Counter(d["n"] for d in copy.find())
    assert sorted(numbers) == list(range(6_000))
    assert set(numbers.values()) == {1}  # every event once


# -- outages ------------------------------------------------------------------------


@pytest.mark.local_only  # its functions share state with the test (counters, lists)
def test_server_stopped_mid_run_is_retried_by_the_sink_and_the_scan(
    mongodb_server: OwnedServer, mongodb_database: str
) -> None:
    """The server is stopped for about a second while documents are written, and
    again while they are read: the sink retries its bulk write (documents a lost
    attempt already wrote are not doubled), the scan reconnects and goes on after its
    last _id. Every document arrives once."""
    url = mongodb_server.url
    records = [{"n": i} for i in range(20_000)]

    async def slow(record: dict[str, int]) -> dict[str, int]:
        if record["n"] % 200 == 0:
            await asyncio.sleep(0.01)
        return record

    def outage(after_documents: int, collection: str) -> threading.Thread:
        def run() -> None:
            coll = _collection(url, mongodb_database, collection)
            while coll.estimated_document_count() < after_documents:
                time.sleep(0.02)
            mongodb_server.stop()
            time.sleep(1.0)
            mongodb_server.start()

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    write = (
        Job.builder()
        .source(TestingSource(records))
        .transform(Operators.map(slow, concurrency=1))
        .sink(
            Connectors.mongodb(
                url=url,
                database=mongodb_database,
                collection="items",
                batch_size=200,
                max_retries=8,
                retry_backoff=0.2,
                connect_timeout=2,
            )
        )
        .build()
    )
    thread = outage(5_000, "items")
    written = run_job(write)
    thread.join()
    assert written.status is JobStatus.COMPLETED, written.error
    coll = _collection(url, mongodb_database)
    stored = Counter(d["n"] for d in coll.find())
    assert sorted(stored) == list(range(20_000)) and set(stored.values()) == {1}

    out: list[int] = []

    async def note(record: dict[str, Any]) -> dict[str, Any]:
        out.append(record["n"])
        if len(out) == 5_000:
            stopper = threading.Thread(target=_stop_and_start, args=(mongodb_server, 1.0))
            stopper.start()
            await asyncio.to_thread(stopper.join)
        return record

    read = (
        Job.builder()
        .source(
            Connectors.mongodb(
                url=url,
                database=mongodb_database,
                collection="items",
                batch_size=500,
                connect_timeout=2,
            )
        )
        .transform(Operators.map(note, concurrency=1))
        .sink(TestingSink())
        .build()
    )
    result = run_job(read)
    assert result.status is JobStatus.COMPLETED, result.error
    assert sorted(out) == list(range(20_000))  # none lost, none twice


def _stop_and_start(server: OwnedServer, down: float) -> None:
    server.stop()
    time.sleep(down)
    server.start()


KILL_HELPERS = """
import asyncio

async def copy(event):
    await asyncio.sleep(0.001)
    return {"n": event["_id"], "op": event["operation"]}
"""

KILL_JOB = """
job:
  id: mongo-kill
  name: mongo-kill
  batch_size: 40
  checkpoint: {{path: "{ckpt}", interval: 150ms}}
  source:
    name: changes
    connector: mongodb
    config:
      url: "{url}"
      database: {database}
      collection: items
      mode: changes
      start_at: "{start}"
      stop_when_idle: 1s
      max_await: 200ms
      batch_size: 40
  operators:
    - {{name: copy, type: map, function: "mongohelpers:copy", concurrency: 1}}
  sink:
    name: out
    connector: mongodb
    config: {{url: "{url}", database: {database}, collection: copy, delivery: exactly-once}}
"""


@pytest.mark.timeout(300)
def test_sigkilled_change_stream_job_resumes_from_its_token_exactly_once(
    mongodb_url: str, mongodb_database: str, tmp_path: Path
) -> None:
    """``reflow run --resume`` of a change stream -> exactly-once MongoDB sink job,
    SIGKILLed at random points: each restart resumes from the checkpointed resume
    token and the committed copy holds every event once."""
    import datetime as dt

    from tests.checkpoint.test_kill import _run_with_kills

    coll = _collection(mongodb_url, mongodb_database)
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=2)
    for chunk in range(0, 3_000, 500):
        coll.insert_many([{"_id": i} for i in range(chunk, chunk + 500)])
    (tmp_path / "mongohelpers.py").write_text(KILL_HELPERS)
    job = tmp_path / "mongo-kill.yaml"
    job.write_text(
        KILL_JOB.format(
            ckpt=tmp_path / "mongo-kill-ckpt",
            url=mongodb_url,
            database=mongodb_database,
            start=start.isoformat(),
        )
    )
    killed = _run_with_kills(job, kills=3, seed=5)
    assert killed >= 3, "the job must have been killed at least 3 times"
    copy = _collection(mongodb_url, mongodb_database, "copy")
    numbers = Counter(d["n"] for d in copy.find())
    assert sorted(numbers) == list(range(3_000))
    assert set(numbers.values()) == {1}  # every event once, through every kill


def test_health_reports_the_masked_address_and_a_stopped_server(
    mongodb_server: OwnedServer, mongodb_database: str
) -> None:
    from reflow.connectors.mongodb import MongoConnector

    url = mongodb_server.url.replace("mongodb://", "mongodb://app:s3cret@")
    spec = MongoConnector().create_sink(
        {"url": mongodb_server.url, "database": mongodb_database, "collection": "items"}
    )

    async def scenario() -> tuple[Any, Any]:
        writer: Any = spec.create_writer(ConnectorContext("out"))
        await writer.open()
        writer.options = writer.options.model_copy(update={"url": url})  # as configured
        up = await writer.health()
        mongodb_server.stop()
        try:
            down = await writer.health()
        finally:
            mongodb_server.start()
            await writer.close()
        return up, down

    up, down = asyncio.run(scenario())
    assert up[0] is True and up[1].startswith("connected to mongodb://app:***@127.0.0.1")
    assert down[0] is False and "cannot reach mongodb://app:***@" in down[1]
    assert "s3cret" not in up[1] + down[1]


def test_refused_documents_reach_the_error_policy_on_the_event_loop_thread(
    mongodb_url: str, mongodb_database: str
) -> None:
    """The bulk write runs in the I/O pool; the error policy is called on the loop."""
    from reflow.connectors.mongodb import MongoConnector

    _collection(mongodb_url, mongodb_database).insert_one({"_id": 3})
    spec = MongoConnector().create_sink(
        {"url": mongodb_url, "database": mongodb_database, "collection": "items"}
    )
    calls: list[tuple[Any, str]] = []

    def reject(record: Any, error: BaseException) -> None:
        calls.append((record, threading.current_thread().name))

    async def scenario() -> str:
        writer: Any = spec.create_writer(ConnectorContext("out", reject=reject))
        await writer.open()
        await writer.write([{"_id": i} for i in range(6)] + ["text"])
        await writer.flush()
        await writer.close()
        return threading.current_thread().name

    loop_thread = asyncio.run(scenario())
    assert sorted(str(r) for r, _ in calls) == ["text", str({"_id": 3})]
    assert {thread for _, thread in calls} == {loop_thread}
