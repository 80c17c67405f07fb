"""``Connectors``: connector specs by registered name, in keyword or fluent style."""

from __future__ import annotations

from typing import Any

from reflow.connectors.registry import ConnectorSpec

__all__ = ["ConnectorSpecBuilder", "Connectors"]


class ConnectorSpecBuilder:
    """Fluent style of the seed (§9.1): ``Connectors.sql().table("users").batch_size(100).build()``.

    Every method call sets the option of that name; ``build()`` returns the spec.
    """

    def __init__(self, connector: str, options: dict[str, Any]) -> None:
        self._connector = connector
        self._options = dict(options)

    def __getattr__(self, option: str) -> Any:
        if option.startswith("_"):
            raise AttributeError(option)

        def setter(*values: Any) -> ConnectorSpecBuilder:
            self._options[option] = values[0] if len(values) == 1 else list(values)
            return self

        return setter

    def build(self) -> ConnectorSpec:
        name = self._options.pop("name", None)
        parallelism = self._options.pop("parallelism", None)
        return ConnectorSpec(self._connector, dict(self._options), name, parallelism)


class Connectors:
    """Specs for registered connectors; the same spec serves as source or sink.

    ``Connectors.file(path="in.jsonl", format="json")`` returns a spec right
    away; ``Connectors.file()`` with no options returns a fluent builder.
    ``Connectors.get("name", ...)`` reaches any registered connector, including
    third-party ones.
    """

    @staticmethod
    def get(connector: str, **options: Any) -> Any:
        if not options:
            return ConnectorSpecBuilder(connector, {})
        name = options.pop("name", None)
        parallelism = options.pop("parallelism", None)
        return ConnectorSpec(connector, options, name, parallelism)

    @staticmethod
    def file(**options: Any) -> Any:
        """Files: CSV, JSON lines, text, Parquet; a path, folder or glob (see docs/connectors.md)."""
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
