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

                writer.write = drop_last
                return writer

            sink.create_writer = create_writer
            return sink

    register_connector("lossy-file", Lossy)
    path = str(tmp_path / "out.jsonl")
    with pytest.raises(AssertionError, match="records missing"):
        check_connector(
            "lossy-file",
            sink_options={"path": path, "format": "json"},
            source_options={"path": path, "format": "json"},
        )
