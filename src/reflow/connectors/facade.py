"""``Connectors``: connector specs by registered name, in keyword or fluent style."""

from __future__ import annotations

from typing import Any

from reflow.connectors.registry import ConnectorSpec, get_connector

__all__ = ["Connectors"]


class Connectors:
    """Specs for registered connectors; the same spec serves as source or sink.

    ``Connectors.file(path="in.jsonl", format="json")`` returns a spec; the
    seed's fluent style works too: ``Connectors.file().path("in.jsonl").build()``.
    ``Connectors.get("name", ...)`` reaches any registered connector, including
    third-party ones.
    """

    @staticmethod
    def get(connector: str, **options: Any) -> Any:
        name = options.pop("name", None)
        parallelism = options.pop("parallelism", None)
        # An unknown connector or option name fails here, where it was written.
        check = getattr(get_connector(connector), "check_option_names", None)
        if check is not None:
            check(options)
        return ConnectorSpec(connector, options, name, parallelism)

    @staticmethod
    def file(**options: Any) -> Any:
        """Files: CSV, JSON lines, text, Parquet; a path, folder or glob (docs/connectors.md)."""
        return Connectors.get("file", **options)

    @staticmethod
    def sql(**options: Any) -> Any:
        """SQL databases through SQLAlchemy: SQLite, PostgreSQL, MariaDB/MySQL, ..."""
        return Connectors.get("sql", **options)

    @staticmethod
    def jdbc(**options: Any) -> Any:
        """The seed's name for ``sql``; ``jdbc:`` URLs are translated."""
        return Connectors.get("jdbc", **options)

    @staticmethod
    def datagen(**options: Any) -> Any:
        """Synthetic records, rate-limited, bounded or not."""
        return Connectors.get("datagen", **options)

    @staticmethod
    def stdout(**options: Any) -> Any:
        """Print records to standard output."""
        return Connectors.get("stdout", **options)

    @staticmethod
    def memory(**options: Any) -> Any:
        """Named in-memory lists, for tests and notebooks."""
        return Connectors.get("memory", **options)

    @staticmethod
    def redis(**options: Any) -> Any:
        """Redis: string/hash/list/stream/zset sinks with TTL; a stream source (consumer group)."""
        return Connectors.get("redis", **options)

    @staticmethod
    def kafka(**options: Any) -> Any:
        """Kafka topics: a partitioned, checkpointed source and a batching sink."""
        return Connectors.get("kafka", **options)

    @staticmethod
    def rabbitmq(**options: Any) -> Any:
        """RabbitMQ queues: a source acknowledging after checkpoints, a confirmed sink."""
        return Connectors.get("rabbitmq", **options)

    @staticmethod
    def nats(**options: Any) -> Any:
        """NATS JetStream: a durable-consumer source acknowledging after checkpoints, a sink."""
        return Connectors.get("nats", **options)

    @staticmethod
    def http(**options: Any) -> Any:
        """HTTP APIs: a polling source (pagination, rate limit, incremental) and a batching sink."""
        return Connectors.get("http", **options)

    @staticmethod
    def webhook(**options: Any) -> Any:
        """An HTTP endpoint receiving records; 429 under backpressure, 200 once records are safe."""
        return Connectors.get("webhook", **options)

    @staticmethod
    def websocket(**options: Any) -> Any:
        """A WebSocket server's pushed messages; reconnects with backoff."""
        return Connectors.get("websocket", **options)

    @staticmethod
    def mqtt(**options: Any) -> Any:
        """MQTT topics: a source acknowledging after read or checkpoint, a QoS 0/1/2 sink."""
        return Connectors.get("mqtt", **options)

    @staticmethod
    def mongodb(**options: Any) -> Any:
        """A MongoDB collection: scan or change stream in, bulk writes out."""
        return Connectors.get("mongodb", **options)

    @staticmethod
    def clickhouse(**options: Any) -> Any:
        """A ClickHouse table or query: columnar batch inserts, chunked parallel reads."""
        return Connectors.get("clickhouse", **options)
