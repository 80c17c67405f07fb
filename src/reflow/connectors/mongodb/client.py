"""Connecting to MongoDB, health probes, and ``_id`` ranges across BSON types."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import uuid
from typing import Any

from reflow.connectors.base import ConnectorContext
from reflow.errors import ConnectorError
from reflow.masking import mask_credentials

__all__ = ["after", "before", "connect", "health", "is_transient", "masked", "reason"]

# A health probe that takes longer than this counts as "not connected".
HEALTH_TIMEOUT_SECONDS = 3.0


def masked(url: str) -> str:
    return mask_credentials(url)


def reason(exc: BaseException) -> str:
    """The first line of a driver error, without pymongo's topology description."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.split(", Timeout:")[0].split(" (configured timeouts")[0]


def connect(options: Any, role: str) -> Any:
    """A pymongo client for ``options.url`` that has answered a ping, or ConnectorError
    naming the connector, the masked address and the fix."""
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    timeout_ms = int(options.connect_timeout * 1000)
    try:
        client: Any = MongoClient(
            options.url,
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
            appname="reflow",
            tz_aware=True,
        )
    except (PyMongoError, ValueError) as exc:
        raise ConnectorError(
            f"mongodb {role}: the url {masked(options.url)} is not usable: {reason(exc)}. "
            "Fix the 'url' option (mongodb://[user:password@]host:port/...)"
        ) from exc
    try:
        client.admin.command("ping")
    except PyMongoError as exc:
        client.close()
        raise ConnectorError(
            f"mongodb {role}: cannot connect to {masked(options.url)}: {reason(exc)}. Check "
            "the 'url' option and that the MongoDB server is running and reachable"
        ) from exc
    return client


# A cursor the server no longer has (it restarted, or the cursor timed out while the
# job was backpressured): a reader opens a new one at its position.
CURSOR_GONE = frozenset({43, 237})  # CursorNotFound, CursorKilled


def is_transient(exc: BaseException) -> bool:
    """A connection-level error that a retry (after a reconnect) may cure."""
    from pymongo.errors import ConnectionFailure, OperationFailure

    if isinstance(exc, ConnectionFailure):  # AutoReconnect, NotPrimary, timeouts, ...
        return True
    return isinstance(exc, OperationFailure) and bool(
        exc.has_error_label("TransientTransactionError")
        or exc.has_error_label("RetryableWriteError")
        or exc.code in CURSOR_GONE
    )


async def health(client: Any, ctx: ConnectorContext, url: str) -> tuple[bool, str] | None:
    """Connected if the server answers a ping within ``HEALTH_TIMEOUT_SECONDS``."""
    if client is None:
        return None
    try:
        await asyncio.wait_for(
            ctx.run_blocking(client.admin.command, "ping"), HEALTH_TIMEOUT_SECONDS
        )
    except Exception as exc:
        return False, f"cannot reach {masked(url)}: {reason(exc)}"
    return True, f"connected to {masked(url)}"


# BSON types in MongoDB's sort order (an _id is never an array). A range on _id
# written as {$gt: v} only matches values of v's type; the types sorting after it
# are added with $type, so a range covers every _id whatever its type.
_TYPE_ORDER = [
    ["minKey"],
    ["null"],
    ["int", "long", "double", "decimal"],
    ["string", "symbol"],
    ["object"],
    ["binData"],
    ["objectId"],
    ["bool"],
    ["date"],
    ["timestamp"],
    ["regex"],
    ["maxKey"],
]


def _bracket(value: Any) -> int:
    from bson import Binary, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp

    checks: list[tuple[Any, int]] = [
        (MinKey, 0),
        (type(None), 1),
        (bool, 7),  # before int: bool is an int in Python
        (int | float | Int64 | Decimal128, 2),
        (str, 3),
        (dict, 4),
        (bytes | Binary | uuid.UUID, 5),
        (ObjectId, 6),
        (dt.datetime, 8),
        (Timestamp, 9),
        (Regex | re.Pattern, 10),
        (MaxKey, 11),
    ]
    for kind, index in checks:
        if isinstance(value, kind):
            return index
    raise ConnectorError(f"mongodb source: cannot order an _id of type {type(value).__name__}")


def _types(brackets: list[list[str]]) -> list[str]:
    return [name for bracket in brackets for name in bracket]


def after(value: Any, inclusive: bool = False) -> dict[str, Any]:
    """A filter on ``_id`` for every value sorting after ``value`` (or equal, inclusive)."""
    index = _bracket(value)
    same = {"_id": {"$gte" if inclusive else "$gt": value}}
    later = _types(_TYPE_ORDER[index + 1 :])
    return {"$or": [same, {"_id": {"$type": later}}]} if later else same


def before(value: Any) -> dict[str, Any]:
    """A filter on ``_id`` for every value sorting before ``value``."""
    index = _bracket(value)
    same = {"_id": {"$lt": value}}
    earlier = _types(_TYPE_ORDER[:index])
    return {"$or": [same, {"_id": {"$type": earlier}}]} if earlier else same
