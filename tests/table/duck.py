"""Loading rows into DuckDB, the reference engine of the SQL tests: as one Arrow table
(DuckDB's ``executemany`` takes about a millisecond a row)."""

from __future__ import annotations

from typing import Any

ARROW_TYPES = {"BIGINT": "int64", "DOUBLE": "float64", "VARCHAR": "string"}


def load(con: Any, table: str, columns: str, rows: list[dict[str, Any]]) -> None:
    """``CREATE TABLE table (columns)`` in ``con`` holding ``rows`` (dicts by column
    name; a missing key is NULL). ``columns`` is SQL: ``a BIGINT, b DOUBLE, s VARCHAR``."""
    import pyarrow as pa

    pairs = [part.split() for part in columns.split(",")]
    schema = pa.schema([(name, ARROW_TYPES[kind.upper()]) for name, kind in pairs])
    loaded = pa.Table.from_pylist(
        [{name: row.get(name) for name in schema.names} for row in rows], schema=schema
    )
    con.register("__loaded", loaded)
    con.execute(f"CREATE TABLE {table} ({columns})")
    con.execute(f"INSERT INTO {table} SELECT * FROM __loaded")
    con.unregister("__loaded")
