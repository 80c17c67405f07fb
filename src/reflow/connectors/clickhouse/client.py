"""One small interface over the two ways to reach ClickHouse: a server over the native
protocol (clickhouse-driver) and the in-process engine (chdb)."""

from __future__ import annotations

import abc
import re
import struct
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

from reflow.errors import ConnectorError
from reflow.masking import mask_credentials

__all__ = [
    "ClickHouseClient",
    "connect",
    "error_code",
    "is_data_error",
    "is_transient",
    "quote",
    "reason",
]

# Server error codes that blame the data of an insert, not the server or the table:
# the offending rows go to the error policy instead of failing the step.
DATA_ERRORS = frozenset({6, 27, 38, 41, 53, 69, 70, 72, 131, 190, 321, 349, 377, 395, 1000})
# Server error codes worth a retry (the server is restarting, overloaded, timing out).
TRANSIENT_ERRORS = frozenset({159, 209, 210, 242, 252, 319, 425})
_CODE = re.compile(r"Code: (\d+)")


def quote(name: str) -> str:
    """A ClickHouse identifier in backquotes (``db.table`` quotes each part)."""
    return ".".join("`" + part.replace("\\", "\\\\").replace("`", "\\`") + "`"
                    for part in name.split("."))  # fmt: skip


def error_code(exc: BaseException) -> int | None:
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    found = _CODE.search(str(exc))
    return int(found.group(1)) if found else None


def reason(exc: BaseException) -> str:
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    lines = [line for line in text.splitlines() if line.strip()]
    first = lines[0]
    if first.startswith("Code:") and len(lines) > 1 and "Exception" in lines[1]:
        first = f"{first} {lines[1].strip()}"
    return first.split(" Stack trace:")[0][:500]


def is_transient(exc: BaseException) -> bool:
    """A connection problem: retry (the native client reconnects by itself)."""
    try:
        from clickhouse_driver import errors
    except ImportError:  # chdb only: nothing goes over a network
        return False
    if isinstance(exc, errors.NetworkError | errors.SocketTimeoutError | EOFError):
        return True
    if isinstance(exc, errors.ServerException):
        return exc.code in TRANSIENT_ERRORS
    return isinstance(exc, OSError)


def is_data_error(exc: BaseException) -> bool:
    """An insert failed for what some rows hold (a wrong type, NULL in a non-Nullable
    column, a value out of range)."""
    # The driver serialises a block column by column: a value of the wrong type fails
    # there (None in a String column as an AttributeError).
    if isinstance(exc, TypeError | ValueError | OverflowError | AttributeError | struct.error):
        return True
    try:
        import pyarrow as pa

        if isinstance(exc, pa.ArrowException):
            return True
    except ImportError:
        pass
    return error_code(exc) in DATA_ERRORS


class ClickHouseClient(abc.ABC):
    """What the source and sink need; blocking calls (run them in the I/O pool)."""

    url: str
    null_as_default = False
    """True when the engine stores a NULL sent for a non-Nullable column as the
    column's default instead of refusing it."""

    @abc.abstractmethod
    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """All rows of ``sql``."""

    @abc.abstractmethod
    def stream(
        self, sql: str, params: dict[str, Any] | None, chunk: int
    ) -> Iterator[list[dict[str, Any]]]:
        """The rows of ``sql`` as dicts, ``chunk`` at a time."""

    @abc.abstractmethod
    def insert(
        self,
        table: str,
        names: list[str],
        types: list[str],
        columns: list[list[Any]],
        settings: dict[str, Any],
    ) -> None:
        """Insert one block given column by column (``types``: the table's, by name)."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def version(self) -> tuple[int, int]:
        text = str(self.query("SELECT version()")[0][0])
        major, minor = (int(p) for p in text.split(".")[:2])
        return major, minor

    def ping(self) -> None:
        self.query("SELECT 1")


_PARAM = re.compile(r"\{(\w+):[^{}]+\}")


class NativeClient(ClickHouseClient):
    """A server over the native protocol (clickhouse-driver)."""

    def __init__(self, options: Any) -> None:
        from clickhouse_driver import Client

        self.url = options.url
        parts = urlsplit(options.url)
        secure = parts.scheme == "clickhouses"
        database = options.database or unquote(parts.path.lstrip("/")) or "default"
        self.client = Client(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (9440 if secure else 9000),
            user=unquote(parts.username or "default"),
            password=options.password or unquote(parts.password or ""),
            database=database,
            secure=secure,
            connect_timeout=options.connect_timeout,
            send_receive_timeout=options.timeout,
            client_name="reflow",
        )

    @staticmethod
    def _pyformat(sql: str, params: dict[str, Any] | None) -> str:
        """``{name:Type}`` parameters as the driver's ``%(name)s`` (it quotes the values)."""
        if not params:
            return sql
        return _PARAM.sub(r"%(\1)s", sql.replace("%", "%%"))

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self.client.execute(self._pyformat(sql, params), params)
        return rows

    def stream(
        self, sql: str, params: dict[str, Any] | None, chunk: int
    ) -> Iterator[list[dict[str, Any]]]:
        rows = self.client.execute_iter(
            self._pyformat(sql, params),
            params,
            with_column_types=True,
            settings={"max_block_size": chunk},
        )
        names = [name for name, _type in next(rows)]
        batch: list[dict[str, Any]] = []
        for row in rows:
            batch.append(dict(zip(names, row, strict=True)))
            if len(batch) == chunk:
                yield batch
                batch = []
        if batch:
            yield batch

    def insert(
        self,
        table: str,
        names: list[str],
        types: list[str],
        columns: list[list[Any]],
        settings: dict[str, Any],
    ) -> None:
        listed = ", ".join(quote(n) for n in names)
        self.client.execute(
            f"INSERT INTO {quote(table)} ({listed}) VALUES",
            columns,
            columnar=True,
            settings=settings,
        )

    def close(self) -> None:
        self.client.disconnect()


class EmbeddedClient(ClickHouseClient):
    """The ClickHouse engine in this process (chdb): one data folder per process."""

    null_as_default = True

    def __init__(self, options: Any) -> None:
        import chdb

        self.url = options.url
        path = urlsplit(options.url).path
        self.conn = chdb.connect(path or ":memory:")  # type: ignore[no-untyped-call]
        self.database = options.database or "default"
        self.used = False

    def _use(self) -> None:
        if self.database != "default" and not self.used:
            self.conn.query(f"USE {quote(self.database)}")  # for the rest of the session
            self.used = True

    def _run(self, sql: str, params: dict[str, Any] | None) -> Any:
        self._use()
        return self.conn.query(sql, "ArrowTable", params=params or {})

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        table = self._run(sql, params)
        return [tuple(row.values()) for row in table.to_pylist()]

    def stream(
        self, sql: str, params: dict[str, Any] | None, chunk: int
    ) -> Iterator[list[dict[str, Any]]]:
        table = self._run(sql, params)
        for batch in table.to_batches(max_chunksize=chunk):
            if batch.num_rows:
                yield batch.to_pylist()

    def insert(
        self,
        table: str,
        names: list[str],
        types: list[str],
        columns: list[list[Any]],
        settings: dict[str, Any],
    ) -> None:
        import pyarrow as pa

        # Arrays of the table's types: a value of another type fails here (the engine
        # would parse a string into an Int64 column as 0).
        arrays = [
            _array(values, arrow_type(kind)) for values, kind in zip(columns, types, strict=True)
        ]
        block = pa.Table.from_arrays(arrays, names=names)  # noqa: F841 -- read by Python()
        listed = ", ".join(quote(n) for n in names)
        given = ", ".join(f"{k} = {_literal(v)}" for k, v in settings.items())
        clause = f" SETTINGS {given}" if given else ""
        self._use()
        # chdb's Python() table function reads ``block`` from this frame.
        self.conn.query(
            f"INSERT INTO {quote(table)} ({listed}) SELECT * FROM Python(block){clause}"
        )

    def close(self) -> None:
        self.conn.close()


_ARROW_NAMES = {
    "Int8": "int8", "Int16": "int16", "Int32": "int32", "Int64": "int64",
    "UInt8": "uint8", "UInt16": "uint16", "UInt32": "uint32", "UInt64": "uint64",
    "Float32": "float32", "Float64": "float64", "String": "string", "Bool": "bool_",
    "Date": "date32", "Date32": "date32", "UUID": "string",
}  # fmt: skip
_WRAPPED = re.compile(r"^(?:Nullable|LowCardinality)\((.*)\)$")
_DATETIME64 = re.compile(r"^DateTime64\((\d+)(?:,\s*'([^']+)')?\)$")
_DATETIME = re.compile(r"^DateTime(?:\('([^']+)'\))?$")
_DECIMAL = re.compile(r"^Decimal\((\d+),\s*(\d+)\)$")


def arrow_type(kind: str) -> Any:
    """The Arrow type for a ClickHouse column type, or None to let Arrow infer it."""
    import pyarrow as pa

    while wrapped := _WRAPPED.match(kind):
        kind = wrapped.group(1)
    if kind in _ARROW_NAMES:
        return getattr(pa, _ARROW_NAMES[kind])()
    if kind.startswith("FixedString("):
        return pa.string()
    if found := _DATETIME64.match(kind):
        precision = int(found.group(1))
        unit = (
            "s" if precision == 0 else "ms" if precision <= 3 else "us" if precision <= 6 else "ns"
        )
        return pa.timestamp(unit, tz=found.group(2))
    if found := _DATETIME.match(kind):
        return pa.timestamp("s", tz=found.group(1))
    if found := _DECIMAL.match(kind):
        return pa.decimal128(int(found.group(1)), int(found.group(2)))
    return None


def _array(values: list[Any], kind: Any) -> Any:
    """An Arrow array of ``kind``; booleans count as 0/1 in integer columns, as the
    native protocol takes them."""
    import pyarrow as pa

    try:
        return pa.array(values, type=kind)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        if kind is None or not pa.types.is_integer(kind):
            raise
        return pa.array([int(v) if isinstance(v, bool) else v for v in values], type=kind)


def _literal(value: Any) -> str:
    if isinstance(value, bool | int | float):
        return str(int(value) if isinstance(value, bool) else value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def connect(options: Any, role: str) -> ClickHouseClient:
    """A client that has answered ``SELECT 1``, or ConnectorError naming the connector,
    the masked address and the fix."""
    where = mask_credentials(options.url)
    try:
        client: ClickHouseClient = (
            EmbeddedClient(options) if options.url.startswith("chdb:") else NativeClient(options)
        )
    except ImportError as exc:
        extra = "chdb" if options.url.startswith("chdb:") else "clickhouse"
        raise ConnectorError(
            f"clickhouse {role}: {exc.name} is not installed; pip install 'reflow[{extra}]'"
        ) from exc
    except Exception as exc:  # chdb: the folder is open in another process
        raise ConnectorError(
            f"clickhouse {role}: cannot open the in-process engine at {where}: {reason(exc)}. "
            "chdb opens one folder per process, and a folder in one process at a time: give "
            "each process its own folder (on the Ray executor, subtasks run in their own "
            "processes) or use a ClickHouse server"
        ) from exc
    try:
        client.ping()
    except Exception as exc:
        client.close()
        raise ConnectorError(
            f"clickhouse {role}: cannot connect to {where}: {reason(exc)}. Check the 'url' "
            "option (and 'password') and that the ClickHouse server is running and reachable"
        ) from exc
    return client
