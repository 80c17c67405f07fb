"""Every built-in connector passes the contract kit of ``reflow.testing`` against
its real system (the same kit third-party connectors run)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from reflow.testing import check_connector, contract_records
from tests.conftest import RABBITMQ_URL


def _kafka_topic(bootstrap: str) -> str:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    name = f"contract-{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name, 2, 1)])
        finally:
            await admin.close()

    asyncio.run(create())
    return name


def test_file_connector_contract(tmp_path: Path) -> None:
    for fmt in ("json", "csv", "parquet"):
        path = str(tmp_path / f"out.{fmt}")
        records: list[Any] = contract_records()
        if fmt == "csv":  # CSV carries text, and None as an empty field
            records = [{k: ("" if v is None else str(v)) for k, v in r.items()} for r in records]
        report = check_connector(
            "file",
            sink_options={"path": path, "format": fmt},
            source_options={"path": path, "format": fmt},
            records=records,
            ordered=True,
        )
        assert "source resumes exactly from its snapshot" in report.passed, report


def test_sql_connector_contract(database_url: str) -> None:
    report = check_connector(
        "sql",
        sink_options={"url": database_url, "table": "contract", "create_table": True, "key": "id"},
        source_options={"url": database_url, "table": "contract"},
        normalize=lambda r: {**r, "flag": bool(r["flag"])},  # MariaDB has no boolean type
        ordered=True,
    )
    assert len(report.passed) >= 6, report


def test_redis_connector_contract(redis_prefix: str) -> None:
    stream = f"{redis_prefix}contract"
    report = check_connector(
        "redis",
        sink_options={"data_type": "stream", "key": stream},
        source_options={"stream": stream, "stop_at_end": True, "block": 0.2},
        ordered=True,
    )
    assert "resume from snapshot" in report.skipped  # acknowledgements, not positions


def test_kafka_connector_contract(kafka_bootstrap: str) -> None:
    topic = _kafka_topic(kafka_bootstrap)
    report = check_connector(
        "kafka",
        sink_options={"bootstrap_servers": kafka_bootstrap, "topic": topic, "key_field": "id"},
        source_options={"bootstrap_servers": kafka_bootstrap, "topic": topic, "stop_at_end": True},
    )
    assert "source resumes exactly from its snapshot" in report.passed, report


def test_rabbitmq_connector_contract(rabbitmq_queue: str) -> None:
    report = check_connector(
        "rabbitmq",
        sink_options={"url": RABBITMQ_URL, "queue": rabbitmq_queue},
        source_options={"url": RABBITMQ_URL, "queue": rabbitmq_queue, "stop_when_idle": 0.5},
        ordered=True,
    )
    assert "resume from snapshot" in report.skipped


def test_nats_connector_contract(nats_stream: str) -> None:
    report = check_connector(
        "nats",
        sink_options={"stream": nats_stream},
        source_options={"stream": nats_stream, "stop_when_idle": 0.5},
        ordered=True,
    )
    assert "resume from snapshot" in report.skipped


def test_the_kit_catches_a_broken_connector(tmp_path: Path) -> None:
    """A connector that drops records fails the contract with a clear message."""
    from reflow.connectors.file import FileConnector
    from reflow.connectors.registry import register_connector

    class Lossy(FileConnector):
        type = "lossy-file"

        def create_sink(self, options: Any) -> Any:
            sink = super().create_sink(options)
            make = sink.create_writer

            def create_writer(ctx: Any) -> Any:
                writer = make(ctx)
                write = writer.write

                async def drop_last(batch: list[Any]) -> None:
                    await write(batch[:-1])

                setattr(writer, "write", drop_last)  # noqa: B010  # a faulty writer
                return writer

            setattr(sink, "create_writer", create_writer)  # noqa: B010
            return sink

    register_connector("lossy-file", Lossy)
    path = str(tmp_path / "out.jsonl")
    with pytest.raises(AssertionError, match="records missing"):
        check_connector(
            "lossy-file",
            sink_options={"path": path, "format": "json"},
            source_options={"path": path, "format": "json"},
        )


def test_http_connector_contract() -> None:
    from aiohttp import web

    from tests.connectors.http_server import ThreadedServer

    stored: list[Any] = []

    async def post(request: web.Request) -> web.Response:
        stored.extend(await request.json())
        return web.Response()

    async def get(request: web.Request) -> web.Response:
        start, limit = int(request.query["offset"]), int(request.query["limit"])
        return web.json_response(stored[start : start + limit])

    def app() -> web.Application:
        application = web.Application()
        application.router.add_post("/items", post)
        application.router.add_get("/items", get)
        return application

    with ThreadedServer(app) as server:
        url = server.url + "/items"
        report = check_connector(
            "http",
            sink_options={"url": url, "batch_size": 128},
            source_options={"url": url, "pagination": "offset", "page_size": 300},
            ordered=True,
        )
    assert "source resumes exactly from its snapshot" in report.passed, report


def test_mqtt_connector_contract(mosquitto_unlimited: int) -> None:
    from tests.connectors.test_mqtt import _open_session

    topic = f"contract/{uuid.uuid4().hex[:8]}"
    client_id = f"contract-{uuid.uuid4().hex[:8]}"
    _open_session(mosquitto_unlimited, client_id, topic)
    report = check_connector(
        "mqtt",
        sink_options={"port": mosquitto_unlimited, "topic": topic},
        source_options={
            "port": mosquitto_unlimited,
            "topic": topic,
            "client_id": client_id,
            "stop_when_idle": 0.5,
        },
        ordered=True,
    )
    assert "resume from snapshot" in report.skipped  # acknowledgements, not positions


def test_websocket_connector_contract() -> None:
    from aiohttp import web

    from tests.connectors.http_server import ThreadedServer

    records = contract_records()
    connections: list[int] = []

    async def feed(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        connections.append(1)
        if len(connections) == 1:  # the records once, as a live feed would
            for record in records:
                await ws.send_json(record)
        async for _ in ws:  # then stay connected until the client leaves
            pass
        return ws

    def app() -> web.Application:
        application = web.Application()
        application.router.add_get("/feed", feed)
        return application

    with ThreadedServer(app) as server:
        report = check_connector(
            "websocket",
            sink_options=None,
            source_options={
                "url": server.url.replace("http", "ws") + "/feed",
                "stop_when_idle": 0.5,
            },
            records=records,
            ordered=True,
        )
    assert "source read back 1000 records unchanged" in report.passed


def test_webhook_connector_contract() -> None:
    import threading

    from tests.connectors.http_server import free_port
    from tests.connectors.test_http import _post_all

    port = free_port()
    records = contract_records()
    sender = threading.Thread(
        target=lambda: asyncio.run(_post_all(f"http://127.0.0.1:{port}/", records, 100, 1))
    )
    sender.start()
    report = check_connector(
        "webhook",
        sink_options=None,
        source_options={"port": port, "stop_when_idle": 1.0},
        records=records,
        ordered=True,
    )
    sender.join(10)
    assert "source read back 1000 records unchanged" in report.passed
