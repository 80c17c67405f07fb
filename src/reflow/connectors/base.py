"""The connector contract: Source/SourceReader, Sink/SinkWriter, Connector (seed §3.6, §3.8, §3.9).

A ``Source`` or ``Sink`` is a picklable spec with no I/O. At run time each
subtask asks it for a reader or writer with ``create_reader(ctx)`` /
``create_writer(ctx)``; the runtime then calls, in this order:

* reader: ``open()`` once, ``read_batch()`` until it returns ``None`` (end of
  input; an unbounded reader never does), ``close()`` once, also after a failure;
* writer: ``open()`` once, ``write(batch)`` per micro-batch, ``flush()`` at end
  of input, ``close()`` once, also after a failure.

Blocking calls (synchronous drivers, file I/O) go through ``ctx.run_blocking``,
which runs them in the executor's I/O thread pool, never on the event loop.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import enum
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import msgspec

from reflow.errors import ConnectorError
from reflow.eventtime.clock import Clock, SystemClock

__all__ = [
    "END_OF_INPUT",
    "Boundedness",
    "BufferedSinkWriter",
    "Connector",
    "ConnectorContext",
    "Refusals",
    "Sink",
    "SinkWriter",
    "Source",
    "SourceReader",
    "StagedSinkWriter",
    "read_all",
]

T = TypeVar("T")

# Records per micro-batch when the job sets no batch size. Per-batch costs
# (a channel hop, counters) vanish at ~100 records, and a batch's records stay
# small enough (~100 KB) that freeing them does not make glibc's malloc return
# memory to the OS and fault it back in for the next batch: measured on
# Nexmark Q1, 350-record batches ran 1.8x slower than 100-record ones.
DEFAULT_BATCH_SIZE = 100

# The checkpoint id of the final commit when a bounded job ends (greater than any
# real checkpoint id): sources acknowledge or commit what they read, and sinks
# commit what they hold, once every sink of the job has flushed.
END_OF_INPUT = 2**62


class Boundedness(enum.Enum):
    BOUNDED = "bounded"
    UNBOUNDED = "unbounded"


def _no_reject(record: Any, error: BaseException) -> None:
    raise error


@dataclass(frozen=True, slots=True)
class ConnectorContext:
    """What a subtask gives its reader or writer."""

    step_id: str
    subtask_index: int = 0
    parallelism: int = 1
    job_id: str = ""
    batch_size: int = DEFAULT_BATCH_SIZE
    io_pool: Executor | None = None
    reject: Callable[[Any, BaseException], None] = field(default=_no_reject)
    """Apply the error policy to a record the connector cannot parse or write."""
    checkpointing: bool = False
    """True when the job takes checkpoints: readers then acknowledge upstream only in
    ``notify_checkpoint_complete``; otherwise as soon as they return records."""
    events: dict[str, int] = field(default_factory=dict)
    """The connector's own counters (requests, retries, reconnects, bytes, ...),
    exported as ``reflow_connector_events_total{event=...}``."""
    clock: Clock = field(default_factory=SystemClock)
    """The executor's clock: waits between retries and polls run on it, so tests
    drive them with a ``ManualClock``."""

    def count(self, event: str, n: int = 1) -> None:
        """Add ``n`` to the connector counter ``event``."""
        self.events[event] = self.events.get(event, 0) + n

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the I/O thread pool and await its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.io_pool, fn, *args)


class Refusals:
    """Records a write refused (a duplicate key, a wrong type), kept while the write
    runs in the I/O pool and handed to the error policy on the event loop once it is
    done: the policy is never called from another thread, and a retried attempt's
    refusals replace those of the attempt that failed."""

    def __init__(self) -> None:
        self.items: list[tuple[Any, BaseException]] = []

    def add(self, record: Any, error: BaseException) -> None:
        self.items.append((record, error))

    def mark(self) -> int:
        """Where an attempt starts; ``forget(mark)`` drops what it refused."""
        return len(self.items)

    def forget(self, mark: int) -> None:
        del self.items[mark:]

    def hand_over(self, ctx: ConnectorContext) -> None:
        """Apply ``ctx.reject`` to each refused record (on the event loop)."""
        items, self.items = self.items, []
        for record, error in items:
            ctx.reject(record, error)


class SourceReader(abc.ABC):
    """Reads one subtask's share of a source, a micro-batch at a time."""

    async def open(self) -> None:
        """Connect and position the reader; called once before the first read."""

    @abc.abstractmethod
    async def read_batch(self) -> list[Any] | None:
        """Return the next records (maybe empty), or None at end of input."""

    async def close(self) -> None:
        """Release connections and files; called once, also after a failure."""

    def backlogged(self) -> bool:
        """True when the next ``read_batch`` returns records without waiting (they are
        already read: a backlog, a file's chunk). The subtask then advances event time
        once per ``WATERMARK_EVERY_RECORDS`` records instead of after every batch;
        False (the default) advances it after every batch."""
        return False

    async def health(self) -> tuple[bool, str] | None:
        """(connected, detail) for the health check, or None if there is nothing to check."""
        return None

    def snapshot(self) -> Any:
        """The position after the last record returned (picklable), for checkpoints.

        Called between batches, never during ``read_batch``. None means the
        reader cannot rewind: a restart then reads its input from the start.
        """
        return None

    def restore(self, position: Any) -> None:
        """Continue after ``position`` (from ``snapshot``); called before ``open``."""

    def on_checkpoint(self, checkpoint_id: int) -> None:
        """Barrier ``checkpoint_id`` passed: what was returned so far belongs to it.

        At the end of the input, after the last batch, it is called with
        ``END_OF_INPUT``."""

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """Checkpoint ``checkpoint_id`` is persisted: acknowledge its records upstream
        (message queues that redeliver unacknowledged messages).

        With ``END_OF_INPUT`` (a job whose input ended), it is called once every
        subtask of the job finished without error and every sink flushed, before
        the job reports COMPLETED and before ``close``."""


class Source(abc.ABC):
    """A data source spec (seed §3.6.3)."""

    name: str | None = None
    parallelism: int | None = None
    connector_type: ClassVar[str] = "source"

    @property
    def operator_type(self) -> str:
        return f"source:{self.connector_type}"

    @property
    def boundedness(self) -> Boundedness:
        return Boundedness.BOUNDED

    @property
    def bounded(self) -> bool:
        return self.boundedness is Boundedness.BOUNDED

    @property
    def is_parallel(self) -> bool:
        """True if several readers can share the input (each gets distinct records)."""
        return False

    @abc.abstractmethod
    def create_reader(self, ctx: ConnectorContext) -> SourceReader:
        """A reader for subtask ``ctx.subtask_index`` of ``ctx.parallelism``."""


class SinkWriter(abc.ABC):
    """Writes one subtask's records to the external system."""

    typed_rows: bool = False
    """True when ``write`` takes typed rows (the msgspec Structs a declared schema
    decodes into) as they are, encoding them itself (JSON lines, JSON messages);
    other writers are given each typed row as the dict of its columns."""

    async def open(self) -> None:
        """Connect; called once before the first write."""

    @abc.abstractmethod
    async def write(self, batch: list[Any]) -> None:
        """Accept a micro-batch; may buffer it."""

    async def flush(self) -> None:
        """Make everything accepted so far durable; called at end of input."""

    async def close(self) -> None:
        """Release connections and files; called once, also after a failure."""

    async def health(self) -> tuple[bool, str] | None:
        """(connected, detail) for the health check, or None if there is nothing to check."""
        return None

    async def pre_commit(self, checkpoint_id: int) -> Any:
        """A checkpoint barrier arrived: make what came before it ready to commit.

        Returns picklable state stored in the checkpoint (e.g. staged rows or
        pending files). At-least-once writers flush and return None.
        """
        await self.flush()
        return None

    async def commit(self, checkpoint_id: int) -> None:
        """Checkpoint ``checkpoint_id`` is complete: make its pre-committed data visible."""

    async def restore(self, states: list[Any]) -> None:
        """After a restart: finish the commits of the restored checkpoint's states.

        Must be idempotent: the data may already be committed.
        """

    async def adopt(self, states: list[Any]) -> None:
        """After a rescale: the states of the old subtasks, whose commits subtask 0
        finishes (``restore``). Take from them what this writer must not reuse (file
        part numbers, ...); never commit them. Default: nothing."""


def rows_as_dicts(batch: list[Any]) -> list[Any]:
    """``batch`` with each typed row (msgspec Struct) as the dict of its columns;
    the batch itself when it holds none."""
    if not any(issubclass(kind, msgspec.Struct) for kind in set(map(type, batch))):
        return batch
    asdict = msgspec.structs.asdict
    return [asdict(r) if isinstance(r, msgspec.Struct) else r for r in batch]


class Sink(abc.ABC):
    """A data sink spec (seed §3.8.3)."""

    name: str | None = None
    parallelism: int | None = None
    connector_type: ClassVar[str] = "sink"
    supports_batch: ClassVar[bool] = True
    supports_transaction: ClassVar[bool] = False

    @property
    def operator_type(self) -> str:
        return f"sink:{self.connector_type}"

    @abc.abstractmethod
    def create_writer(self, ctx: ConnectorContext) -> SinkWriter:
        """A writer for subtask ``ctx.subtask_index`` of ``ctx.parallelism``."""

    def written_target(self) -> str | None:
        """What this sink writes that no other sink of a job may write too (a file
        path: two writers of one file write over each other); None: it can be
        shared (a topic, a table)."""
        return None


class BufferedSinkWriter(SinkWriter):
    """A writer that sends batches of ``batch_size`` records, at least every ``flush_interval``.

    Subclasses implement ``write_records``, called with the lock held, in order.
    A timer flushes a partial buffer after ``flush_interval`` seconds, so a
    quiet stream still reaches the sink (seed §6.2 ``batchSize``/``flushInterval``).
    """

    def __init__(self, batch_size: int, flush_interval: float | None) -> None:
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self._buffer: list[Any] = []
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None
        self._timer_error: BaseException | None = None

    @abc.abstractmethod
    async def write_records(self, records: list[Any]) -> None:
        """Send ``records`` to the external system."""

    async def open(self) -> None:
        if self.flush_interval:
            self._timer = asyncio.create_task(self._flush_periodically(self.flush_interval))

    async def _flush_periodically(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.flush()
            except Exception as exc:  # surfaced by the next write()
                self._timer_error = exc
                return

    async def write(self, batch: list[Any]) -> None:
        if self._timer_error is not None:
            raise self._timer_error
        self._buffer.extend(batch)
        if len(self._buffer) >= self.batch_size:
            async with self._lock:
                while len(self._buffer) >= self.batch_size:
                    chunk = self._buffer[: self.batch_size]
                    del self._buffer[: self.batch_size]
                    await self.write_records(chunk)

    async def flush(self) -> None:
        # A timed flush that failed took its records out of the buffer: the next
        # flush (a checkpoint's pre-commit) fails too, or the checkpoint would complete
        # past records that were never written.
        if self._timer_error is not None:
            raise self._timer_error
        async with self._lock:
            if self._buffer:
                chunk, self._buffer = self._buffer, []
                await self.write_records(chunk)

    async def close(self) -> None:
        """Stop the timer and send what is still buffered: a job stopped (cancel,
        Ctrl-C, SIGTERM) or failed elsewhere has processed these records, and an
        at-least-once sink must not lose them. (Exactly-once writers keep their
        uncommitted records elsewhere and leave them to the next checkpoint.)"""
        await cancel_and_wait(self._timer)
        self._timer = None
        if not self._buffer:
            return
        async with self._lock:
            chunk, self._buffer = self._buffer, []
            try:
                await self.write_records(chunk)
            except Exception as exc:
                raise ConnectorError(
                    f"{len(chunk)} records buffered in the sink could not be written when it "
                    f"closed: {exc!r}"
                ) from exc


class StagedSinkWriter(BufferedSinkWriter):
    """A BufferedSinkWriter that, with ``exactly_once``, keeps each checkpoint's records
    (they are stored in the checkpoint) and writes them with ``commit_records`` when
    the checkpoint completes; a restart writes the restored checkpoints' records
    again, so ``commit_records`` must not write a checkpoint twice (a marker, a
    deduplication token, or writes that can be repeated). At-least-once, it is a
    plain BufferedSinkWriter."""

    def __init__(self, batch_size: int, flush_interval: float | None, exactly_once: bool) -> None:
        super().__init__(batch_size, None if exactly_once else flush_interval)
        self.exactly_once = exactly_once
        self.current: list[Any] = []
        self.staged: dict[int, list[Any]] = {}
        self.subtask = 0
        self.closed = False

    @abc.abstractmethod
    async def commit_records(self, subtask: int, checkpoint_id: int, records: list[Any]) -> None:
        """Write the records of ``checkpoint_id`` from ``subtask``, unless already written."""

    async def write(self, batch: list[Any]) -> None:
        if self.exactly_once:
            self.current.extend(batch)
        else:
            await super().write(batch)

    async def pre_commit(self, checkpoint_id: int) -> Any:
        if not self.exactly_once:
            await self.flush()
            return None
        records, self.current = self.current, []
        self.staged[checkpoint_id] = records
        return (self.subtask, checkpoint_id, records)

    async def commit(self, checkpoint_id: int) -> None:
        if self.closed:
            # A notice that reached a writer of a failed attempt after it closed: the
            # records are in the checkpoint, and the restore of the next attempt
            # commits them.
            return
        for staged in sorted(c for c in self.staged if c <= checkpoint_id):
            await self.commit_records(self.subtask, staged, self.staged[staged])
            del self.staged[staged]  # only once written: a cancelled commit is redone

    async def restore(self, states: list[Any]) -> None:
        if self.exactly_once:
            for subtask, checkpoint_id, records in states:
                await self.commit_records(subtask, checkpoint_id, records)

    async def close(self) -> None:
        self.closed = True
        await super().close()

    async def flush(self) -> None:
        if not self.exactly_once:
            await super().flush()
            return
        # End of input: everything not yet committed, as the final commit.
        await self.commit(END_OF_INPUT)
        records, self.current = self.current, []
        await self.commit_records(self.subtask, END_OF_INPUT, records)


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel a helper task (a flush timer) and wait until it has stopped."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Connector(abc.ABC):
    """A named factory of sources and sinks for one external system (seed §3.9.3).

    Registered under the entry-point group ``reflow.connectors``; ``options``
    are the keyword options of ``Connectors.<type>(...)`` or the ``config:``
    block of a YAML job. ``validate_config`` raises ConnectorConfigError naming
    the option and the fix, before any I/O.
    """

    type: ClassVar[str]
    description: ClassVar[str] = ""

    @abc.abstractmethod
    def create_source(self, options: Mapping[str, Any]) -> Source:
        """A Source for ``options``; raises ConnectorConfigError if they are wrong."""

    @abc.abstractmethod
    def create_sink(self, options: Mapping[str, Any]) -> Sink:
        """A Sink for ``options``; raises ConnectorConfigError if they are wrong."""

    @abc.abstractmethod
    def validate_config(self, options: Mapping[str, Any], role: str) -> None:
        """Check ``options`` for ``role`` ('source' or 'sink')."""

    @abc.abstractmethod
    def config_descriptor(self) -> Any:
        """The options this connector takes (a ConfigDescriptor)."""

    def written_target(self, options: Mapping[str, Any]) -> str | None:
        """``Sink.written_target`` of the sink ``options`` make (None: shareable)."""
        return None


async def read_all(reader: SourceReader) -> list[Any]:
    """Open ``reader``, read it to the end of its input and close it; every record."""
    records: list[Any] = []
    await reader.open()
    try:
        while (batch := await reader.read_batch()) is not None:
            records.extend(batch)
    finally:
        await reader.close()
    return records
