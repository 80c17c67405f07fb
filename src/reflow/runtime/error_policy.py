"""Applying a job's error policy to rejected records: fail, skip-and-count, dead-letter.

Nothing is dropped silently: a skipped record is counted and logged (the
first ``LOG_FIRST`` per step, then every ``LOG_EVERY``-th, plus a summary at the
end); a dead-lettered one is also written to the dead-letter sink with its
step_id and error.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any

import msgspec
import orjson

from reflow.connectors.base import SinkWriter
from reflow.errors import RecordRejectedError
from reflow.graph.job import ErrorMode
from reflow.runtime.metrics import StepMetrics

__all__ = ["DeadLetterOutput", "RecordErrorHandler"]

logger = logging.getLogger(__name__)

# Log every rejected record at first, then only a sample, so a flood of bad
# input cannot flood the log; counters always see every record.
LOG_FIRST = 10
LOG_EVERY = 1000

# Characters of a rejected record shown in a dead-letter entry's log line.
PREVIEW_CHARS = 200


class DeadLetterOutput:
    """The job's dead-letter sink writer, shared by every subtask."""

    def __init__(self, writer: SinkWriter, restored: list[Any] | None = None) -> None:
        self.writer = writer
        self.pending: list[dict[str, Any]] = []
        self._lock = asyncio.Lock()
        self.written = 0
        self.restored = restored or []
        """The writer's states in the checkpoint the job restarts from."""

    async def open(self) -> None:
        if self.restored:
            await self.writer.restore(self.restored)
        await self.writer.open()

    async def pre_commit(self, checkpoint_id: int) -> Any:
        """Part of a subtask's snapshot: the dead letters of the records before its
        barrier written and made durable (the writer's pre-commit), since a restart
        from this checkpoint does not read those records again; the writer's state
        (restored on a restart: a file goes on where it was, not from empty).

        An exactly-once writer stages a checkpoint's output once; one shared by the
        subtasks cannot, so it is left to publish at the end of the job."""
        if getattr(self.writer, "exactly_once", False):
            return None
        async with self._lock:
            await self._write_pending()
            return await self.writer.pre_commit(checkpoint_id)

    async def drain(self) -> None:
        """Write pending entries; called by subtasks after each batch."""
        if not self.pending:
            return
        async with self._lock:
            await self._write_pending()

    async def _write_pending(self) -> None:
        """(Lock held) write the entries pending now."""
        entries, self.pending = self.pending, []
        if entries:
            await self.writer.write(entries)
            self.written += len(entries)


class RecordErrorHandler:
    """The ``reject(record, error)`` callback of one step in one subtask."""

    def __init__(
        self,
        job_id: str,
        step_id: str,
        mode: ErrorMode,
        metrics: StepMetrics,
        dead_letters: DeadLetterOutput | None,
    ) -> None:
        self.job_id = job_id
        self.step_id = step_id
        self.mode = mode
        self.metrics = metrics
        self.dead_letters = dead_letters

    def __call__(self, record: Any, error: BaseException) -> None:
        if self.mode is ErrorMode.FAIL:
            raise RecordRejectedError(self.step_id, record, error) from error
        metrics = self.metrics
        metrics.rejected += 1
        count = metrics.rejected
        if count <= LOG_FIRST or count % LOG_EVERY == 0:
            shown = _text(repr(record))
            if len(shown) > PREVIEW_CHARS:
                shown = shown[:PREVIEW_CHARS] + "..."
            # (the error's text escaped too: a stream that cannot write a lone
            # surrogate would otherwise make the log call itself fail the step)
            logger.warning(
                "job %s step %s subtask %d: %s record #%d (%s: %s): %s",
                self.job_id,
                self.step_id,
                metrics.subtask,
                "dead-lettered" if self.mode is ErrorMode.DEAD_LETTER else "skipped",
                count,
                type(error).__name__,
                _text(str(error)),
                shown,
                extra={"job_id": self.job_id, "step_id": self.step_id},
            )
        if self.mode is ErrorMode.DEAD_LETTER and self.dead_letters is not None:
            metrics.dead_lettered += 1
            entry = {
                "job_id": self.job_id,
                "step_id": self.step_id,
                "subtask": metrics.subtask,
                "error_type": type(error).__name__,
                "error": _text(str(error)),
                "record": _jsonable(record),
                "time": time.time(),
            }
            rule = getattr(error, "rule", None)
            if isinstance(rule, str):
                entry["rule"] = rule
            self.dead_letters.pending.append(entry)


def _jsonable(record: Any) -> Any:
    """The record as a dead-letter entry holds it: as it is when JSON can hold it;
    else with what it cannot replaced (an object by its repr, a lone surrogate
    escaped, an int beyond 64 bits as text), keeping the record's shape, so that a
    dead-letter sink can write every entry whatever made the record fail. A typed
    row (a declared schema's msgspec Struct) or a dataclass is held as the object
    of its fields."""
    if isinstance(record, bytes):
        return record.decode("utf-8", "replace")
    fields = _fields(record)
    if fields is not None:
        record = fields
    if isinstance(record, str | int | float | bool | list | dict) or record is None:
        try:
            orjson.dumps(record)
        except TypeError:  # (orjson's JSONEncodeError)
            return _held(record, 0)
        return record
    return _text(repr(record))


def _fields(record: Any) -> dict[str, Any] | None:
    """A Struct's or a dataclass's fields by name (None for other records)."""
    try:
        if isinstance(record, msgspec.Struct):
            return msgspec.structs.asdict(record)
        if dataclasses.is_dataclass(record) and not isinstance(record, type):
            return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
    except Exception:  # a field that cannot be read: the record's repr then
        return None
    return None


def _held(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return _text(value)
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else str(value)
    if depth < _DEPTH and isinstance(value, dict):
        return {
            _text(k) if isinstance(k, str) else _text(repr(k)): _held(v, depth + 1)
            for k, v in value.items()
        }
    if depth < _DEPTH and isinstance(value, list | tuple):
        return [_held(v, depth + 1) for v in value]
    fields = _fields(value) if depth < _DEPTH else None
    if fields is not None:
        return _held(fields, depth + 1)
    return _text(repr(value))  # (repr shows a cycle as [...])


_DEPTH = 32


def _text(text: str) -> str:
    """``text`` with what UTF-8 cannot hold (lone surrogates) escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
