"""Writing batches of rows: insert or upsert, optional table creation, retries."""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from reflow.connectors.base import BufferedSinkWriter, ConnectorContext
from reflow.connectors.retry import retry
from reflow.connectors.sql.engine import connect_engine, masked_url, split_table_name
from reflow.errors import ConnectorError

__all__ = ["SqlWriter", "column_type_for"]

logger = logging.getLogger(__name__)

# First wait before retrying a batch after a connection error; doubles per try.
RETRY_BACKOFF_SECONDS = 0.5
# A health probe that takes longer than this counts as "not connected".
HEALTH_TIMEOUT_SECONDS = 3.0
# Width of text key columns in created tables (MariaDB cannot index TEXT).
KEY_STRING_LENGTH = 255


def column_type_for(value: Any, is_key: bool) -> Any:
    """The SQLAlchemy column type for a Python value, for ``create_table``."""
    from sqlalchemy import (
        JSON,
        BigInteger,
        Boolean,
        Date,
        DateTime,
        Float,
        LargeBinary,
        Numeric,
        String,
        Text,
    )

    if isinstance(value, bool):
        return Boolean()
    if isinstance(value, int):
        return BigInteger()
    if isinstance(value, float):
        return Float(53)
    if isinstance(value, decimal.Decimal):
        return Numeric(38, 10)
    if isinstance(value, dt.datetime):
        return DateTime()
    if isinstance(value, dt.date):
        return Date()
    if isinstance(value, bytes):
        return LargeBinary()
    if isinstance(value, dict | list):
        return JSON()
    return String(KEY_STRING_LENGTH) if is_key else Text()


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]


# Marker id of the commit at the end of input (after every checkpoint id).
FINAL_COMMIT = 2**62
MARKER_TABLE = "reflow_sink_commits"


class SqlWriter(BufferedSinkWriter):
    """Batched inserts or upserts; with ``delivery: exactly-once``, a transaction per checkpoint.

    Exactly-once: rows wait in memory until the next checkpoint barrier
    (pre-commit: they are stored in the checkpoint), and are written when the
    checkpoint completes, in one transaction with a marker row
    (job, step, subtask -> checkpoint id). A restart re-commits the restored
    checkpoint's rows unless the marker shows they are in already.
    """

    def __init__(self, options: Any, ctx: ConnectorContext) -> None:
        exactly_once = options.delivery == "exactly-once"
        super().__init__(options.batch_size, None if exactly_once else options.flush_interval)
        self.options = options
        self.ctx = ctx
        self.engine: Any = None
        self.table: Any = None
        self.columns: set[str] = set()
        self.exactly_once = exactly_once
        self.current: list[Any] = []
        self.staged: dict[int, list[dict[str, Any]]] = {}
        self.marker: Any = None

    async def open(self) -> None:
        self.engine = await self.ctx.run_blocking(connect_engine, self.options)
        await self.ctx.run_blocking(self._reflect)
        await super().open()

    def _reflect(self) -> None:
        from sqlalchemy import MetaData, Table, inspect

        schema, name = split_table_name(self.options.table)
        if inspect(self.engine).has_table(name, schema=schema):
            self.table = Table(name, MetaData(), autoload_with=self.engine, schema=schema)
            self.columns = set(self.table.c.keys())
        elif not self.options.create_table:
            raise ConnectorError(
                f"sql sink: table {self.options.table!r} does not exist in "
                f"{masked_url(self.options.url)}; create it, or set create_table: true"
            )

    def _create(self, rows: Sequence[Mapping[str, Any]]) -> None:
        from sqlalchemy import Column, MetaData, Table

        schema, name = split_table_name(self.options.table)
        key = self.options.key or []
        names: list[str] = []
        samples: dict[str, Any] = {}
        for row in rows:
            for column, value in row.items():
                if column not in samples:
                    names.append(column)
                    samples[column] = value
                elif samples[column] is None:
                    samples[column] = value
        # Keys hold the records' own values: never AUTO_INCREMENT (MySQL would
        # replace a key of 0 with a generated one).
        table = Table(
            name,
            MetaData(),
            *(
                Column(
                    c,
                    column_type_for(samples[c], c in key),
                    primary_key=c in key,
                    autoincrement=False,
                )
                for c in names
            ),
            schema=schema,
        )
        if not self._create_if_missing(table):
            self._reflect()  # another subtask created it first, maybe with more columns
            return
        self.table = table
        self.columns = set(names)
        logger.info("sql sink %s: created table %s", self.ctx.step_id, self.options.table)

    def _create_if_missing(self, table: Any) -> bool:
        """CREATE ``table`` unless it exists; True if this subtask created it. Parallel
        subtasks race between the existence check and the CREATE: the loser's
        "already exists" error is fine."""
        from sqlalchemy import inspect
        from sqlalchemy.exc import DBAPIError

        try:
            table.create(self.engine, checkfirst=True)
        except DBAPIError:
            if inspect(self.engine).has_table(table.name, schema=table.schema):
                return False
            raise
        return True

    def _rows(self, records: list[Any]) -> list[dict[str, Any]]:
        columns = self.options.columns
        rows: list[dict[str, Any]] = []
        for record in records:
            if isinstance(record, Mapping):
                row = dict(record)
            elif columns is not None and isinstance(record, list | tuple):
                if len(record) != len(columns):
                    self.ctx.reject(
                        record,
                        ValueError(
                            f"expected {len(columns)} values ({columns}), got {len(record)}"
                        ),
                    )
                    continue
                row = dict(zip(columns, record, strict=True))
            else:
                self.ctx.reject(
                    record,
                    TypeError(
                        f"the sql sink takes dict records (or lists with the 'columns' option), "
                        f"got {type(record).__name__}"
                    ),
                )
                continue
            if self.table is not None:
                unknown = row.keys() - self.columns
                if unknown:
                    self.ctx.reject(
                        record,
                        ValueError(
                            f"columns {sorted(unknown)} are not in table {self.options.table!r}"
                        ),
                    )
                    continue
            rows.append(row)
        return rows

    def _statement(self) -> Any:
        from sqlalchemy import insert

        table = self.table
        if self.options.mode == "insert":
            return insert(table)
        key = list(self.options.key or [])
        dialect = self.engine.dialect.name
        if dialect in ("sqlite", "postgresql"):
            from sqlalchemy.dialects import postgresql, sqlite

            stmt = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(table)
            updates = {c.name: stmt.excluded[c.name] for c in table.c if c.name not in key}
            if not updates:
                return stmt.on_conflict_do_nothing(index_elements=key)
            return stmt.on_conflict_do_update(index_elements=key, set_=updates)
        if dialect in ("mysql", "mariadb"):
            from sqlalchemy.dialects.mysql import insert as mysql_insert

            mstmt = mysql_insert(table)
            updates = {c.name: mstmt.inserted[c.name] for c in table.c if c.name not in key}
            return mstmt.on_duplicate_key_update(updates or {key[0]: mstmt.inserted[key[0]]})
        raise ConnectorError(f"sql sink: upsert is not supported on {dialect}; use mode: insert")

    def _insert_blocking(self, rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], Any]]:
        """Insert ``rows`` in one transaction; on a data error, row by row.

        Returns the rows that failed on their own, with their error.
        """
        from sqlalchemy.exc import DBAPIError, StatementError

        if self.table is None:
            self._create(rows)
        stmt = self._statement()
        try:
            with self.engine.begin() as conn:
                conn.execute(stmt, rows)
            return []
        except DBAPIError as exc:
            if exc.connection_invalidated or _is_transient(exc):
                raise
        except StatementError:
            pass
        failed = []
        for row in rows:
            try:
                with self.engine.begin() as conn:
                    conn.execute(stmt, [row])
            except (DBAPIError, StatementError) as exc:
                if isinstance(exc, DBAPIError) and (
                    exc.connection_invalidated or _is_transient(exc)
                ):
                    raise
                failed.append((row, exc))
        return failed

    async def write_records(self, records: list[Any]) -> None:
        rows = self._rows(records)
        if not rows:
            return

        def give_up(exc: BaseException, retries: int) -> ConnectorError:
            after = f" after {retries} retries" if retries else ""
            return ConnectorError(
                f"sql sink: writing {len(rows)} rows to {self.options.table!r} in "
                f"{masked_url(self.options.url)} failed{after}: {_reason(exc)}"
            )

        failed = await retry(
            self.ctx,
            lambda: self.ctx.run_blocking(self._insert_blocking, rows),
            what=f"writing {len(rows)} rows to {self.options.table!r}",
            retries=self.options.max_retries,
            first_delay=RETRY_BACKOFF_SECONDS,
            retry_on=_is_transient,
            give_up=give_up,
        )
        for row, error in failed:
            self.ctx.reject(row, ValueError(f"rejected by the database: {_reason(error)}"))

    def _ping(self) -> None:
        from sqlalchemy import text

        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    async def health(self) -> tuple[bool, str] | None:
        """Connected if a fresh connection answers ``SELECT 1``."""
        if self.engine is None:
            return None
        where = masked_url(self.options.url)
        try:
            await asyncio.wait_for(self.ctx.run_blocking(self._ping), HEALTH_TIMEOUT_SECONDS)
        except Exception as exc:
            return (
                False,
                f"cannot reach {where}: {_reason(exc) if str(exc) else type(exc).__name__}",
            )
        return True, f"connected to {where}"

    # -- exactly-once --------------------------------------------------------------

    async def write(self, batch: list[Any]) -> None:
        if self.exactly_once:
            self.current.extend(batch)
        else:
            await super().write(batch)

    def _marker_table(self) -> Any:
        from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table

        if self.marker is None:
            self.marker = Table(
                MARKER_TABLE,
                MetaData(),
                Column("job_id", String(KEY_STRING_LENGTH), primary_key=True),
                Column("step_id", String(KEY_STRING_LENGTH), primary_key=True),
                Column("subtask", Integer, primary_key=True),
                Column("checkpoint_id", BigInteger, nullable=False),
            )
            self._create_if_missing(self.marker)
        return self.marker

    def _commit_blocking(
        self, subtask: int, checkpoint_id: int, rows: list[dict[str, Any]]
    ) -> None:
        """Write ``rows`` and the marker in one transaction, unless already committed."""
        from sqlalchemy import insert, select, update

        marker = self._marker_table()
        where = (
            (marker.c.job_id == self.ctx.job_id)
            & (marker.c.step_id == self.ctx.step_id)
            & (marker.c.subtask == subtask)
        )
        if rows and self.table is None:
            self._create(rows)
        with self.engine.begin() as conn:
            done = conn.execute(select(marker.c.checkpoint_id).where(where)).scalar_one_or_none()
            if done is not None and done >= checkpoint_id:
                return  # committed before a failure: do not write twice
            if rows:
                conn.execute(self._statement(), rows)
            if done is None:
                conn.execute(
                    insert(marker).values(
                        job_id=self.ctx.job_id,
                        step_id=self.ctx.step_id,
                        subtask=subtask,
                        checkpoint_id=checkpoint_id,
                    )
                )
            else:
                conn.execute(update(marker).where(where).values(checkpoint_id=checkpoint_id))

    async def pre_commit(self, checkpoint_id: int) -> Any:
        if not self.exactly_once:
            await self.flush()
            return None
        rows = self._rows(self.current)
        self.current = []
        self.staged[checkpoint_id] = rows
        return (self.ctx.subtask_index, checkpoint_id, rows)

    async def commit(self, checkpoint_id: int) -> None:
        for staged in sorted(c for c in self.staged if c <= checkpoint_id):
            rows = self.staged[staged]
            await self.ctx.run_blocking(self._commit_blocking, self.ctx.subtask_index, staged, rows)
            del self.staged[staged]  # only once written: a cancelled commit is redone

    async def restore(self, states: list[Any]) -> None:
        if not self.exactly_once:
            return
        for subtask, checkpoint_id, rows in states:
            await self.ctx.run_blocking(self._commit_blocking, subtask, checkpoint_id, rows)

    async def flush(self) -> None:
        if not self.exactly_once:
            await super().flush()
            return
        # End of input: everything not yet committed, as the final commit.
        await self.commit(FINAL_COMMIT)
        rows = self._rows(self.current)
        self.current = []
        await self.ctx.run_blocking(
            self._commit_blocking, self.ctx.subtask_index, FINAL_COMMIT, rows
        )

    async def close(self) -> None:
        await super().close()
        if self.engine is not None:
            await self.ctx.run_blocking(self.engine.dispose)
            self.engine = None


def _is_transient(exc: BaseException) -> bool:
    from sqlalchemy.exc import DBAPIError, OperationalError

    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, OperationalError) and "locked" not in str(exc).lower()
