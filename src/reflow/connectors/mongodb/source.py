"""Reading a collection by ``_id`` ranges, and following its change stream."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import logging
from typing import Any

from reflow.connectors.base import ConnectorContext, SourceReader
from reflow.connectors.messaging import IdleClock
from reflow.connectors.mongodb.client import (
    after,
    before,
    connect,
    health,
    is_transient,
    masked,
    reason,
)
from reflow.connectors.retry import retry
from reflow.errors import ConnectorError

__all__ = ["ChangeStreamReader", "ScanReader", "change_record"]

logger = logging.getLogger(__name__)

# Where the subtasks of a parallel scan agree on their _id cuts.
SPLITS_COLLECTION = "reflow_scan_splits"
# Cuts older than this are recomputed by the next run of the same job and step.
SPLITS_MAX_AGE = dt.timedelta(hours=1)
# Reconnects of a reader after the server went away, waiting 0.5 s doubled each time
# (up to 30 s): about 3 minutes in all, then the job fails and restarts from its
# last checkpoint.
RECONNECT_RETRIES = 8
RECONNECT_BACKOFF_SECONDS = 0.5


class _Reader(SourceReader):
    """What both readers share: the client, health, reconnecting with backoff."""

    def __init__(self, options: Any, ctx: ConnectorContext) -> None:
        self.options = options
        self.ctx = ctx
        self.client: Any = None
        self.collection: Any = None

    async def _connect(self) -> None:
        self.client = await self.ctx.run_blocking(connect, self.options, "source")
        self.collection = self.client[self.options.database][self.options.collection]

    async def _with_reconnect(self, read: Any, what: str) -> Any:
        """``read()`` in the I/O pool; after a connection error, ``self._reset()`` and
        again, with backoff; then ConnectorError naming the server."""

        async def reset(error: BaseException) -> None:
            self.ctx.count("reconnects")
            await self.ctx.run_blocking(self._reset)

        def give_up(exc: BaseException, retries: int) -> BaseException:
            if not is_transient(exc):
                return ConnectorError(f"mongodb source: {what} failed: {reason(exc)}")
            return ConnectorError(
                f"mongodb source: {what} on {masked(self.options.url)} failed after "
                f"{retries} retries: {reason(exc)}"
            )

        return await retry(
            self.ctx,
            lambda: self.ctx.run_blocking(read),
            what=what,
            retries=RECONNECT_RETRIES,
            first_delay=RECONNECT_BACKOFF_SECONDS,
            retry_on=is_transient,
            before_retry=reset,
            give_up=give_up,
        )

    def _reset(self) -> None:
        """Drop the open cursor or stream (the next read reopens it at the position)."""

    async def health(self) -> tuple[bool, str] | None:
        return await health(self.client, self.ctx, self.options.url)

    async def close(self) -> None:
        if self.client is not None:
            await self.ctx.run_blocking(self._close_blocking)
            self.client = None

    def _close_blocking(self) -> None:
        self._reset()
        self.client.close()


class ScanReader(_Reader):
    """Subtask ``i`` of ``n`` reads the ``_id`` range ``[cut[i-1], cut[i])`` in ``_id``
    order; its position is the last ``_id`` returned."""

    def __init__(self, options: Any, ctx: ConnectorContext) -> None:
        super().__init__(options, ctx)
        self.cuts: list[Any] | None = None
        self.started = False  # a record was returned: ``last`` holds its _id
        self.last: Any = None
        self.finished = False
        self.cursor: Any = None
        projection = options.projection
        # The position is the _id: read it even when the projection leaves it out.
        self.drop_id = projection is not None and not projection.get("_id", True)
        self.projection = {**projection, "_id": 1} if self.drop_id else projection

    def snapshot(self) -> Any:
        return {
            "cuts": self.cuts,
            "started": self.started,
            "last": self.last,
            "finished": self.finished,
        }

    def restore(self, position: Any) -> None:
        self.cuts = position["cuts"]
        self.started = bool(position["started"])
        self.last = position["last"]
        self.finished = bool(position["finished"])

    async def open(self) -> None:
        await self._connect()
        if self.cuts is None and self.ctx.parallelism > 1:
            self.cuts = await self.ctx.run_blocking(self._agree_cuts)

    def _sample_cuts(self) -> list[Any]:
        """``_id`` values splitting the (filtered) collection into ``parallelism`` parts."""
        parts = self.ctx.parallelism
        where = self.options.filter or {}
        # The cuts only balance the parts: a whole collection's size comes from its
        # metadata (count_documents would read every document).
        total = (
            self.collection.count_documents(where)
            if where
            else self.collection.estimated_document_count()
        )
        cuts: list[Any] = []
        for k in range(1, parts):
            found = list(
                self.collection.find(where, {"_id": 1})
                .sort("_id", 1)
                .skip(k * total // parts)
                .limit(1)
            )
            if found and (not cuts or found[0]["_id"] != cuts[-1]):
                cuts.append(found[0]["_id"])
        return cuts

    def _agree_cuts(self) -> list[Any]:
        """The cuts every subtask of this run uses: the first subtask to arrive stores
        its sample; the others read it (cuts of an earlier run are replaced)."""
        from pymongo.errors import DuplicateKeyError

        splits = self.client[self.options.database][SPLITS_COLLECTION]
        key = (
            f"{self.ctx.job_id}/{self.ctx.step_id}/{self.options.collection}/{self.ctx.parallelism}"
        )
        now = dt.datetime.now(dt.UTC)
        if splits.find_one({"_id": key, "created": {"$gt": now - SPLITS_MAX_AGE}}) is None:
            cuts = self._sample_cuts()
            splits.update_one(
                {"_id": key, "created": {"$lte": now - SPLITS_MAX_AGE}},
                {"$set": {"cuts": cuts, "created": now}},
            )
            # Another subtask may have stored its cuts first: then those are used.
            with contextlib.suppress(DuplicateKeyError):
                splits.insert_one({"_id": key, "cuts": cuts, "created": now})
        stored = splits.find_one({"_id": key})
        return list(stored["cuts"])

    def _filter(self) -> dict[str, Any]:
        parts: list[dict[str, Any]] = []
        if self.options.filter:
            parts.append(self.options.filter)
        if self.cuts is not None:
            index = self.ctx.subtask_index
            if index > 0:
                if index - 1 >= len(self.cuts):
                    return {"$expr": False}  # fewer distinct cuts than subtasks
                parts.append(after(self.cuts[index - 1], inclusive=True))
            if index < len(self.cuts):
                parts.append(before(self.cuts[index]))
        if self.started:
            parts.append(after(self.last))
        if not parts:
            return {}
        return parts[0] if len(parts) == 1 else {"$and": parts}

    def _reset(self) -> None:
        if self.cursor is not None:
            self.cursor.close()
            self.cursor = None

    def _fetch(self) -> list[Any] | None:
        if self.finished:
            return None
        size = self.options.batch_size
        if self.cursor is None:
            self.cursor = self.collection.find(
                self._filter(), self.projection, sort=[("_id", 1)], batch_size=size
            )
        docs = list(itertools.islice(self.cursor, size))
        if not docs:
            self.finished = True
            self._reset()
            return None
        self.started = True
        self.last = docs[-1]["_id"]
        if self.drop_id:
            for doc in docs:
                del doc["_id"]
        return docs

    async def read_batch(self) -> list[Any] | None:
        records: list[Any] | None = await self._with_reconnect(
            self._fetch, f"reading {self.options.database}.{self.options.collection}"
        )
        return records


def change_record(event: dict[str, Any]) -> dict[str, Any]:
    """A change event as a record (its resume token and internals left out)."""
    operation = event["operationType"]
    if operation == "invalidate":
        raise ConnectorError(
            "mongodb source: the change stream was invalidated (the collection was dropped "
            "or renamed) and cannot continue; start a new job with 'start_at' after the event"
        )
    update = event.get("updateDescription") or {}
    namespace = event.get("ns") or {}
    cluster_time = event.get("clusterTime")
    return {
        "operation": operation,
        "_id": (event.get("documentKey") or {}).get("_id"),
        "document": event.get("fullDocument"),
        "updated_fields": update.get("updatedFields"),
        "removed_fields": update.get("removedFields"),
        "cluster_time": None if cluster_time is None else cluster_time.as_datetime(),
        "namespace": f"{namespace.get('db')}.{namespace.get('coll')}",
    }


def _operation_time(start_at: dt.datetime | float) -> Any:
    from bson import Timestamp

    if isinstance(start_at, dt.datetime):
        moment = start_at if start_at.tzinfo else start_at.replace(tzinfo=dt.UTC)
        seconds = moment.timestamp()
    else:
        seconds = float(start_at)
    return Timestamp(int(seconds), 0)


class ChangeStreamReader(_Reader):
    """Follows the collection's change stream; the position is the resume token."""

    def __init__(self, options: Any, ctx: ConnectorContext) -> None:
        super().__init__(options, ctx)
        self.token: Any = None
        self.stream: Any = None
        self.idle = IdleClock(options.stop_when_idle)

    def snapshot(self) -> Any:
        return self.token

    def restore(self, position: Any) -> None:
        self.token = position

    async def open(self) -> None:
        await self._connect()
        if self.ctx.subtask_index == 0:
            # Open now: events from here on belong to the job (its position is known
            # before the first event, so a checkpoint taken before any event still
            # resumes from here).
            await self._with_reconnect(self._ensure_stream, "opening the change stream")

    def _ensure_stream(self) -> None:
        if self.stream is not None:
            return
        opts = self.options
        kwargs: dict[str, Any] = {
            "batch_size": opts.batch_size,
            "max_await_time_ms": int(opts.max_await * 1000),
        }
        if opts.full_document != "default":
            kwargs["full_document"] = opts.full_document
        if self.token is not None:
            kwargs["resume_after"] = self.token
        elif opts.start_at is not None:
            kwargs["start_at_operation_time"] = _operation_time(opts.start_at)
        self.stream = self.collection.watch(opts.pipeline or [], **kwargs)
        self.token = self.stream.resume_token

    def _reset(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None

    def _poll(self) -> list[Any]:
        self._ensure_stream()
        records: list[Any] = []
        while len(records) < self.options.batch_size:
            event = self.stream.try_next()
            if event is None:
                break
            records.append(change_record(event))
        token = self.stream.resume_token
        if token is not None:
            self.token = token
        return records

    async def read_batch(self) -> list[Any] | None:
        if self.ctx.subtask_index != 0:
            return None  # one stream per collection: one subtask reads it
        records: list[Any] = await self._with_reconnect(
            self._poll, f"following {self.options.database}.{self.options.collection}"
        )
        if records:
            self.idle.busy()
            self.ctx.count("change_events", len(records))
            return records
        if self.idle.expired():
            return None
        return []
