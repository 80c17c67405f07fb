"""Columnar batch inserts: retries, rows the server refuses to the error policy, and
exactly-once by deduplication tokens or a ReplacingMergeTree table."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from operator import itemgetter
from typing import Any

from reflow.connectors.base import ConnectorContext, Refusals, StagedSinkWriter
from reflow.connectors.clickhouse.client import (
    ClickHouseClient,
    connect,
    is_data_error,
    is_transient,
    quote,
    reason,
)
from reflow.connectors.retry import write_in_pool
from reflow.errors import ConnectorError
from reflow.masking import mask_credentials

__all__ = ["ClickHouseWriter", "probe"]

logger = logging.getLogger(__name__)


def _columns(rows: list[Mapping[str, Any]], names: list[str]) -> list[list[Any]]:
    """Column by column; a row without one of ``names`` gives None there."""
    try:
        return [list(map(itemgetter(name), rows)) for name in names]  # C speed
    except KeyError:
        return [[row.get(name) for row in rows] for name in names]


# A health probe that takes longer than this counts as "not connected".
HEALTH_TIMEOUT_SECONDS = 3.0
# The first release with insert_deduplication_token.
TOKENS_SINCE = (22, 2)
# Engines where a block inserted twice collapses to one row set on merge (read with FINAL).
COLLAPSING = ("ReplacingMergeTree", "CollapsingMergeTree", "VersionedCollapsingMergeTree")


async def probe(client: ClickHouseClient | None, ctx: ConnectorContext) -> tuple[bool, str] | None:
    """Connected if the server answers ``SELECT 1`` within ``HEALTH_TIMEOUT_SECONDS``."""
    if client is None:
        return None
    where = mask_credentials(client.url)
    try:
        await asyncio.wait_for(ctx.run_blocking(client.ping), HEALTH_TIMEOUT_SECONDS)
    except Exception as exc:
        return False, f"cannot reach {where}: {reason(exc)}"
    return True, f"connected to {where}"


class _Column:
    __slots__ = ("name", "nullable", "optional", "type")

    def __init__(self, name: str, type_name: str, default_kind: str) -> None:
        self.name = name
        self.type = type_name
        self.nullable = type_name.startswith("Nullable(")
        self.optional = self.nullable or default_kind in ("DEFAULT", "MATERIALIZED", "ALIAS")


class ClickHouseWriter(StagedSinkWriter):
    """Inserts blocks of ``batch_size`` rows, column by column.

    A record that is not a dict, names a column the table lacks, or misses a
    column without a default goes to the error policy before the insert. An
    insert the server or driver refuses for its data is split in halves until the
    refused rows are found (they go to the error policy; the rest is inserted).
    Connection errors are retried with backoff. Where the table deduplicates
    (tokens), every block carries a token, so a retried block is not stored twice.
    """

    def __init__(self, options: Any, ctx: ConnectorContext) -> None:
        super().__init__(
            options.batch_size, options.flush_interval, options.delivery == "exactly-once"
        )
        self.subtask = ctx.subtask_index
        self.options = options
        self.ctx = ctx
        self.client: ClickHouseClient | None = None
        self.columns: dict[str, _Column] = {}
        self.required: set[str] = set()
        self.tokens = False
        self.refused = Refusals()

    # -- opening -------------------------------------------------------------------

    async def open(self) -> None:
        self.client = await self.ctx.run_blocking(connect, self.options, "sink")
        await self.ctx.run_blocking(self._inspect)
        await super().open()

    def _inspect(self) -> None:
        assert self.client is not None
        table = self.options.table
        database, _, name = table.rpartition(".")
        where = "database = currentDatabase()" if not database else "database = {db:String}"
        found = self.client.query(
            f"SELECT engine, engine_full FROM system.tables WHERE {where} AND name = {{t:String}}",
            {"db": database, "t": name},
        )
        if not found:
            raise ConnectorError(
                f"clickhouse sink: table {table!r} does not exist in "
                f"{mask_credentials(self.options.url)}; create it first (a ClickHouse table "
                "needs an engine and an ORDER BY, which the sink cannot choose for you)"
            )
        engine, engine_full = (str(v) for v in found[0])
        described = self.client.query(f"DESCRIBE TABLE {quote(table)}")
        self.columns = {
            str(row[0]): _Column(str(row[0]), str(row[1]), str(row[2])) for row in described
        }
        self.required = {c.name for c in self.columns.values() if not c.optional}
        self.tokens = self._deduplicates(engine, engine_full)
        if self.exactly_once and not self.tokens and not engine.endswith(COLLAPSING):
            version = ".".join(str(v) for v in self.client.version())
            raise ConnectorError(
                f"clickhouse sink: exactly-once needs a table that drops repeated inserts, and "
                f"{table!r} ({engine}, ClickHouse {version}) does not: on ClickHouse 22.2+ set "
                f"ALTER TABLE {table} MODIFY SETTING non_replicated_deduplication_window = 1000 "
                "(or use a Replicated table); on older servers use a ReplacingMergeTree table "
                "and read it with FINAL"
            )

    def _deduplicates(self, engine: str, engine_full: str) -> bool:
        """True when inserts with the same ``insert_deduplication_token`` are dropped."""
        assert self.client is not None
        if self.client.version() < TOKENS_SINCE or "MergeTree" not in engine:
            return False
        if engine.startswith("Replicated"):
            return True
        window = engine_full.split("non_replicated_deduplication_window", 1)
        if len(window) < 2:
            return False
        digits = "".join(c for c in window[1].lstrip(" =").split(",")[0] if c.isdigit())
        return bool(digits) and int(digits) > 0

    async def health(self) -> tuple[bool, str] | None:
        return await probe(self.client, self.ctx)

    # -- rows into columns -----------------------------------------------------------

    def _valid(self, records: list[Any]) -> list[Mapping[str, Any]]:
        """The records the table can take, checked per batch (per record only when the
        batch has a problem): dicts, of the table's columns, with a value for every
        column that has no default."""
        rows: list[Mapping[str, Any]] = records
        if set(map(type, records)) != {dict}:
            rows = []
            for record in records:
                if isinstance(record, Mapping):
                    rows.append(record)
                    continue
                self.refused.add(
                    record,
                    TypeError(
                        f"the clickhouse sink takes dict records, got {type(record).__name__}"
                    ),
                )
        if not rows:
            return rows
        present: set[str] = set().union(*rows)
        if not present <= self.columns.keys() or not self.required <= present:
            return [row for row in rows if self._row_fits(row)]
        return rows  # NULLs in columns without a default are found in the block

    def _row_fits(self, row: Mapping[str, Any]) -> bool:
        unknown = [k for k in row if k not in self.columns]
        missing = sorted(name for name in self.required if row.get(name) is None)
        if not unknown and not missing:
            return True
        problems = []
        if unknown:
            problems.append(f"columns {unknown} are not in table {self.options.table!r}")
        if missing:
            problems.append(f"no value for {missing} (no default in the table)")
        self.refused.add(row, ValueError("; ".join(problems)))
        return False

    def _block(
        self, rows: list[Mapping[str, Any]]
    ) -> tuple[list[Mapping[str, Any]], list[str], list[list[Any]]]:
        """The columns named by any row, in table order (absent values are None). Where
        the engine would store NULL as the column's default (chdb), rows with NULL in a
        column without a default are rejected first; the native driver refuses them."""
        present: set[str] = set().union(*rows)
        names = [name for name in self.columns if name in present]
        columns = _columns(rows, names)
        if self.client is not None and self.client.null_as_default:
            required = self.required
            if any(None in values for name, values in zip(names, columns, strict=True)
                   if name in required):  # fmt: skip
                rows = [row for row in rows if self._row_fits(row)]
                columns = _columns(rows, names)
        return rows, names, columns

    def _types(self, names: list[str]) -> list[str]:
        return [self.columns[name].type for name in names]

    # -- inserting -------------------------------------------------------------------

    def _insert(self, rows: list[Mapping[str, Any]], token: str | None) -> None:
        """Insert ``rows``; on a data error, each half on its own, down to the refused
        rows (rejected). A half's token is its parent's plus its path, so a repeat of
        the same rows splits the same way and deduplicates block for block."""
        assert self.client is not None
        if not rows:
            return
        settings = {"insert_deduplication_token": token} if token and self.tokens else {}
        rows, names, columns = self._block(rows)
        if not rows:
            return
        try:
            self.client.insert(self.options.table, names, self._types(names), columns, settings)
            self.ctx.count("inserts")
            return
        except Exception as exc:
            if is_transient(exc) or not is_data_error(exc):
                raise
            if len(rows) == 1:
                if self._row_fits(rows[0]):  # else refused, saying which value is missing
                    self.refused.add(rows[0], ValueError(f"refused by ClickHouse: {reason(exc)}"))
                return
        half = len(rows) // 2
        self._insert(rows[:half], None if token is None else f"{token}.0")
        self._insert(rows[half:], None if token is None else f"{token}.1")

    async def _insert_with_retry(
        self, what: str, rows: list[Mapping[str, Any]], token: str
    ) -> None:
        opts = self.options
        await write_in_pool(
            self.ctx,
            lambda retried: self._insert(rows, token),
            self.refused,
            writer="clickhouse sink",
            what=what,
            where=f"into {opts.table!r} in {mask_credentials(opts.url)}",
            retries=opts.max_retries,
            first_delay=opts.retry_backoff,
            retry_on=is_transient,
            reason=reason,
        )

    async def write_records(self, records: list[Any]) -> None:
        rows = self._valid(records)
        if rows:
            # One token per block, kept across retries: a block the server stored
            # before the connection broke is not stored again.
            await self._insert_with_retry(f"inserting {len(rows)} rows", rows, uuid.uuid4().hex)
        self.refused.hand_over(self.ctx)

    async def commit_records(self, subtask: int, checkpoint_id: int, records: list[Any]) -> None:
        rows = self._valid(records)
        size = self.options.batch_size
        for block, start in enumerate(range(0, len(rows), size)):
            token = f"{self.ctx.job_id}/{self.ctx.step_id}/{subtask}/{checkpoint_id}/{block}"
            await self._insert_with_retry(
                f"committing checkpoint {checkpoint_id}", rows[start : start + size], token
            )
        self.refused.hand_over(self.ctx)

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            if self.client is not None:
                await self.ctx.run_blocking(self.client.close)
                self.client = None
