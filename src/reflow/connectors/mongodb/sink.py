"""Bulk writes of inserts, upserts or replaces; retries; exactly-once at checkpoints."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from reflow.connectors.base import ConnectorContext, Refusals, StagedSinkWriter
from reflow.connectors.mongodb.client import connect, health, is_transient, masked, reason
from reflow.connectors.retry import write_in_pool
from reflow.errors import ConnectorError

__all__ = ["MARKER_COLLECTION", "MongoWriter"]

logger = logging.getLogger(__name__)

# Commit markers of exactly-once sinks: _id "job/step/subtask" -> last checkpoint written.
MARKER_COLLECTION = "reflow_sink_commits"
DUPLICATE_KEY = 11000


class MongoWriter(StagedSinkWriter):
    """Bulk writes of ``batch_size`` operations.

    A document the server refuses (a duplicate key, a failed validation) goes to the
    step's error policy with the server's message; the rest of the batch is written
    (an ordered write continues after the refused document). Connection errors are
    retried with backoff: an insert whose first attempt may have written part of the
    batch treats "duplicate key" on its own generated ``_id`` as already written.

    Exactly-once: records wait until the next checkpoint barrier (they are stored in
    the checkpoint) and are written when the checkpoint completes, in a transaction
    with a marker (``reflow_sink_commits``: job/step/subtask -> checkpoint id); a
    restart writes the restored checkpoint's records again unless the marker shows
    they are in. Without transactions the writes are upserts or replaces, which
    give the same result when repeated.

    A process killed while it commits leaves its transaction open on the server
    (until the server's transaction lifetime, 60 s by default, runs out), and the
    restarted job's commit of the same checkpoint would conflict with it. So each
    checkpoint's commit runs in a session made when the checkpoint is taken, whose
    id is stored with the records; a restart first kills the sessions of the
    checkpoints it commits again, which aborts what they left open.
    """

    def __init__(self, options: Any, ctx: ConnectorContext) -> None:
        super().__init__(
            options.batch_size, options.flush_interval, options.delivery == "exactly-once"
        )
        self.subtask = ctx.subtask_index
        self.options = options
        self.ctx = ctx
        self.client: Any = None
        self.collection: Any = None
        self.transactions = False
        self.refused = Refusals()
        self.sessions: dict[int, Any] = {}
        """checkpoint id -> the session its commit runs in (transactions only)."""

    # -- connecting --------------------------------------------------------------

    async def open(self) -> None:
        self.client = await self.ctx.run_blocking(connect, self.options, "sink")
        self.collection = self.client[self.options.database][self.options.collection]
        if self.exactly_once:
            self.transactions = await self.ctx.run_blocking(self._use_transactions)
        await super().open()

    def _use_transactions(self) -> bool:
        hello = self.client.admin.command("hello")
        available = bool(hello.get("setName")) or hello.get("msg") == "isdbgrid"
        wanted = self.options.transactions
        if wanted == "on" and not available:
            raise ConnectorError(
                f"mongodb sink: transactions: on, but {masked(self.options.url)} is a standalone "
                "server without transactions; use a replica set, or transactions: auto"
            )
        use = bool(available and wanted != "off")
        if not use and self.options.mode == "insert":
            raise ConnectorError(
                "mongodb sink: exactly-once with mode 'insert' needs transactions (a replica set "
                f"or sharded cluster; {masked(self.options.url)} has none or they are off): "
                "use mode 'upsert' or 'replace', whose writes can be repeated"
            )
        return use

    async def health(self) -> tuple[bool, str] | None:
        return await health(self.client, self.ctx, self.options.url)

    # -- turning records into operations -------------------------------------------

    def _operations(self, records: list[Any]) -> list[tuple[Any, Any]]:
        """(operation, record) per record; records that cannot be written are refused."""
        from pymongo import InsertOne, ReplaceOne, UpdateOne

        mode, key = self.options.mode, self.options.key
        ops: list[tuple[Any, Any]] = []
        for record in records:
            if not isinstance(record, Mapping):
                self.refused.add(
                    record,
                    TypeError(f"the mongodb sink takes dict records, got {type(record).__name__}"),
                )
                continue
            doc = dict(record)  # the driver adds _id to inserted documents: not to the record
            if mode == "insert":
                ops.append((InsertOne(doc), record))
                continue
            missing = [k for k in key if k not in doc]
            if missing:
                self.refused.add(
                    record, ValueError(f"the record has no key field(s) {missing} (key: {key})")
                )
                continue
            where = {k: doc[k] for k in key}
            if mode == "upsert":
                ops.append((UpdateOne(where, {"$set": doc}, upsert=True), record))
            else:
                ops.append((ReplaceOne(where, doc, upsert=True), record))
        return ops

    # -- writing -----------------------------------------------------------------

    def _bulk(self, ops: list[tuple[Any, Any]], retried: bool, session: Any = None) -> int:
        """Write ``ops``; refused documents go to the error policy. Returns how many were
        refused. In a transaction an error aborts it: the refused document is rejected
        and the caller runs the transaction again without it (``TransactionRetry``)."""
        from pymongo import InsertOne
        from pymongo.errors import BulkWriteError

        refused = 0
        pending = ops
        while pending:
            try:
                self.collection.bulk_write(
                    [op for op, _ in pending], ordered=self.options.ordered, session=session
                )
                self.ctx.count("bulk_writes")
                return refused
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors") or []
                if not errors:
                    raise
                ordered_tail = self.options.ordered and errors[-1]["index"] + 1 < len(pending)
                for error in errors:
                    index = error["index"]
                    if (
                        retried
                        and error.get("code") == DUPLICATE_KEY
                        and isinstance(pending[index][0], InsertOne)
                    ):
                        # Written, with its generated _id, by the attempt that lost its
                        # connection.
                        self.ctx.count("duplicates_skipped")
                        continue
                    refused += 1
                    self.refused.add(
                        pending[index][1],
                        ValueError(f"refused by MongoDB: {error.get('errmsg')}"),
                    )
                if session is not None:
                    raise TransactionRetry([pending[e["index"]] for e in errors]) from exc
                pending = pending[errors[-1]["index"] + 1 :] if ordered_tail else []
        return refused

    async def _write_with_retry(self, what: str, attempt: Callable[[bool], Any]) -> None:
        opts = self.options
        await write_in_pool(
            self.ctx,
            attempt,
            self.refused,
            writer="mongodb sink",
            what=what,
            where=f"in {opts.database}.{opts.collection} on {masked(opts.url)}",
            retries=opts.max_retries,
            first_delay=opts.retry_backoff,
            retry_on=is_transient,
            reason=reason,
        )

    async def write_records(self, records: list[Any]) -> None:
        ops = self._operations(records)
        if ops:
            await self._write_with_retry(
                f"writing {len(ops)} documents", lambda retried: self._bulk(ops, retried)
            )
        self.refused.hand_over(self.ctx)

    def _marker_id(self, subtask: int) -> str:
        return f"{self.ctx.job_id}/{self.ctx.step_id}/{subtask}"

    def _committed(self, subtask: int, session: Any = None) -> int | None:
        markers = self.client[self.options.database][MARKER_COLLECTION]
        found = markers.find_one({"_id": self._marker_id(subtask)}, session=session)
        return None if found is None else int(found["checkpoint_id"])

    def _mark(self, subtask: int, checkpoint_id: int, session: Any = None) -> None:
        markers = self.client[self.options.database][MARKER_COLLECTION]
        markers.update_one(
            {"_id": self._marker_id(subtask)},
            {"$set": {"checkpoint_id": checkpoint_id, "collection": self.options.collection}},
            upsert=True,
            session=session,
        )

    # -- exactly-once ------------------------------------------------------------

    async def pre_commit(self, checkpoint_id: int) -> Any:
        state = await super().pre_commit(checkpoint_id)
        if state is None or not self.transactions:
            return state
        session = self.client.start_session()  # no I/O: the server learns it on first use
        self.sessions[checkpoint_id] = session
        return (*state, bytes(session.session_id["id"]))

    async def restore(self, states: list[Any]) -> None:
        if not self.exactly_once:
            return
        for state in states:
            subtask, checkpoint_id, records, *session = state
            if session:
                await self.ctx.run_blocking(self._kill_session, session[0])
            await self.commit_records(subtask, checkpoint_id, records)

    def _kill_session(self, session_id: bytes) -> None:
        """Abort what a killed process's commit left open in its session."""
        from bson.binary import UUID_SUBTYPE, Binary

        try:
            self.client.admin.command("killSessions", [{"id": Binary(session_id, UUID_SUBTYPE)}])
        except Exception as exc:  # not allowed, or gone: the commit retries as before
            logger.warning(
                "mongodb sink: cannot kill session %s of an earlier attempt (%s); its "
                "open transaction may delay the commit until the server ends it",
                session_id.hex(),
                reason(exc),
            )

    def _commit_blocking(
        self, subtask: int, checkpoint_id: int, records: list[Any], retried: bool
    ) -> None:
        """Write ``records`` and the marker, unless the marker shows they are in."""
        done = self._committed(subtask)
        if done is not None and done >= checkpoint_id:
            return  # committed before a failure: do not write twice
        ops = self._operations(records)
        if not self.transactions:
            self._bulk(ops, retried)  # upserts/replaces: a repeat changes nothing
            self._mark(subtask, checkpoint_id)
            return
        owned = self.sessions.get(checkpoint_id)
        while True:
            try:
                with contextlib.ExitStack() as scope:
                    session = owned or scope.enter_context(self.client.start_session())
                    with session.start_transaction():
                        done = self._committed(subtask, session)
                        if done is not None and done >= checkpoint_id:
                            return
                        if ops:
                            self._bulk(ops, retried=False, session=session)
                        self._mark(subtask, checkpoint_id, session)
                return
            except TransactionRetry as refused:
                gone = {id(op) for op in refused.ops}
                ops = [op for op in ops if id(op) not in gone]

    async def commit_records(self, subtask: int, checkpoint_id: int, records: list[Any]) -> None:
        await self._write_with_retry(
            f"committing checkpoint {checkpoint_id} ({len(records)} records)",
            lambda retried: self._commit_blocking(subtask, checkpoint_id, records, retried),
        )
        session = self.sessions.pop(checkpoint_id, None)
        if session is not None:
            session.end_session()

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            self.sessions.clear()  # ended with the client
            if self.client is not None:
                await self.ctx.run_blocking(self.client.close)
                self.client = None


class TransactionRetry(Exception):
    """Documents refused inside a transaction: it is aborted and run again without them."""

    def __init__(self, ops: list[tuple[Any, Any]]) -> None:
        super().__init__(f"{len(ops)} documents refused")
        self.ops = ops
