"""SQL into message queues: the typed rows of a query are encoded as JSON messages
as they are (no step turning each into a dict first), against the real RabbitMQ,
NATS and Mosquitto servers; what a consumer reads back is the projected rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from reflow import Connectors, Job, JobStatus
from reflow.table.planner import SelectOp, sql_job
from reflow.testing import TestingSink, run_job
from tests.conftest import RABBITMQ_URL
from tests.connectors.test_mqtt import _open_session

NATS_SERVERS = "nats://127.0.0.1:4222"

ROWS: list[dict[str, Any]] = [
    {"id": i, "user": f"u{i % 7}", "amount": i * 0.5, "note": None} for i in range(300)
]
EXPECTED = [
    {"id": r["id"], "user": r["user"], "doubled": r["amount"] * 2, "note": None}
    for r in ROWS
    if r["id"] % 3 == 0
]


def _script(folder: Path, sink_options: str) -> str:
    data = folder / "in.jsonl"
    data.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in ROWS))
    return f"""
CREATE TABLE t (id BIGINT, user VARCHAR, amount DOUBLE, note VARCHAR)
WITH ('connector' = 'file', 'path' = '{data}', 'format' = 'json');
CREATE SINK q (id BIGINT) WITH ({sink_options});
INSERT INTO q SELECT id, user, amount * 2 AS doubled, note FROM t WHERE id % 3 = 0;
"""


def _run_and_read(script: str, source: Any) -> list[Any]:
    job = sql_job(script)
    selects = [n for n in job.stream_graph.nodes if isinstance(n.payload, SelectOp)]
    assert len(selects) == 1  # the projection only: no conversion to dicts after it
    result = run_job(job)
    assert result.status is JobStatus.COMPLETED, result.error
    out = TestingSink()
    read = run_job(Job.builder().source(source).sink(out).build())
    assert read.status is JobStatus.COMPLETED, read.error
    return out.records


def test_sql_into_rabbitmq(rabbitmq_queue: str, tmp_path: Path) -> None:
    script = _script(
        tmp_path,
        f"'connector' = 'rabbitmq', 'url' = '{RABBITMQ_URL}', 'queue' = '{rabbitmq_queue}'",
    )
    source = Connectors.rabbitmq(url=RABBITMQ_URL, queue=rabbitmq_queue, stop_when_idle="1s")
    assert _run_and_read(script, source) == EXPECTED


def test_sql_into_nats(nats_stream: str, tmp_path: Path) -> None:
    script = _script(
        tmp_path, f"'connector' = 'nats', 'servers' = '{NATS_SERVERS}', 'stream' = '{nats_stream}'"
    )
    source = Connectors.nats(servers=NATS_SERVERS, stream=nats_stream, stop_when_idle="1s")
    assert _run_and_read(script, source) == EXPECTED


def test_sql_into_mqtt_topics_named_by_a_column(mqtt_topic: str, tmp_path: Path) -> None:
    client_id = f"reader-{mqtt_topic.rsplit('/', 1)[-1]}"
    _open_session(1883, client_id, mqtt_topic + "/#")
    script = _script(
        tmp_path, f"'connector' = 'mqtt', 'topic' = '{mqtt_topic}/{{user}}', 'qos' = '1'"
    )
    source = Connectors.mqtt(
        topic=mqtt_topic + "/#", client_id=client_id, metadata=True, stop_when_idle=1.0
    )
    read = _run_and_read(script, source)
    assert sorted((r["payload"] for r in read), key=lambda r: r["id"]) == EXPECTED
    assert all(r["topic"] == f"{mqtt_topic}/{r['payload']['user']}" for r in read)


def test_a_text_message_format_is_given_each_row_as_a_dict(
    rabbitmq_queue: str, tmp_path: Path
) -> None:
    # Only JSON encodes typed rows itself; the runtime gives other formats each row's
    # dict (before, the planner added a step for it; the text was the row's repr).
    script = _script(
        tmp_path,
        f"'connector' = 'rabbitmq', 'url' = '{RABBITMQ_URL}', 'queue' = '{rabbitmq_queue}', "
        "'format' = 'text'",
    )
    source = Connectors.rabbitmq(
        url=RABBITMQ_URL, queue=rabbitmq_queue, format="text", stop_when_idle=1.0
    )
    assert _run_and_read(script, source) == [str(row) for row in EXPECTED]
