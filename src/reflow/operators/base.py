"""What every operator is made of: a frozen *spec* that *builds* its runtime logic.

A spec is picklable data with no I/O (it may travel to other processes).
``spec.build(ctx)`` returns an ``OperatorLogic``, the mutable per-subtask
object the runtime calls with micro-batches of records. Inside a chain the
runtime calls one logic after another as plain function calls.
"""

from __future__ import annotations

import abc
import keyword
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

import orjson

from reflow.eventtime.clock import Clock, SystemClock
from reflow.state.backend import MemoryBackend, StateBackend
from reflow.state.keyed import KeyedStateStore

__all__ = [
    "KeyedBatch",
    "Operator",
    "OperatorContext",
    "OperatorLogic",
    "OperatorSpec",
    "RejectFn",
    "is_plain_identifier",
    "is_row",
]

IN = TypeVar("IN")
OUT = TypeVar("OUT")

RejectFn = Callable[[Any, BaseException], None]
"""Called with a record a user function rejected and the exception; applies the
error policy (raise, count and log, or dead-letter)."""


def is_plain_identifier(name: str) -> bool:
    """A name that generated source may hold as an attribute (``row.name``): ASCII
    letters, digits and underscores, not a keyword, not starting with ``_``."""
    return (
        name.isascii()
        and name.isidentifier()
        and not keyword.iskeyword(name)
        and not name.startswith("_")
    )


def decoded_key(name: str) -> str:
    """``name`` as the very str object reflow's JSON decoding (orjson) gives records
    for that key. orjson keeps one object per short key for every document it
    decodes, so a record's dict holds this object, and a lookup by it matches on
    identity instead of comparing characters: about a quarter of a field read in a
    generated loop. Any other record reads the same by it (equal strings)."""
    try:
        decoded = orjson.loads(orjson.dumps({name: None}))
    except (orjson.JSONEncodeError, orjson.JSONDecodeError):  # a lone surrogate
        return name
    (key,) = decoded
    return key if key == name else name


def is_row(record: Any) -> bool:
    """A typed row: a declared schema's record, whose columns are attributes and
    which reads like a dict of them (``reflow/connectors/typed.py``)."""
    return bool(getattr(type(record), "__reflow_row__", False))


class KeyedBatch(list[Any]):
    """A batch that crossed a hash exchange, with each record's key beside it.

    The sending router computes every key to pick the receiving subtask; it hands
    the keys over in ``keys`` (same order as the records), so the keyed operator
    at the other end does not call the key selector a second time.
    """

    __slots__ = ("keys",)

    def __init__(self) -> None:
        super().__init__()
        self.keys: list[Any] = []


def _no_side_output(tag: str, records: list[Any]) -> None:
    raise RuntimeError(f"side output {tag!r} is not available here")


def _count_only(record: Any, error: BaseException) -> None:
    raise error


def _no_source(payload: Any) -> Awaitable[list[Any]]:
    raise RuntimeError("reading a source from an operator is not available here")


@dataclass(frozen=True, slots=True)
class OperatorContext:
    """What a subtask tells its operator logic when building it."""

    step_id: str
    subtask_index: int
    parallelism: int
    reject: RejectFn
    job_id: str = ""
    clock: Clock = field(default_factory=SystemClock)
    state: StateBackend | None = None
    """The job's state backend; keyed operators open their tables in it."""
    timestamp_of: Callable[[Any], int] | None = None
    """The event-time timestamp of a record, from the nearest upstream assigner."""
    emit_side: Callable[[str, list[Any]], None] = _no_side_output
    """Send records to a side output (e.g. "late") of this step."""
    load_source: Callable[[Any], Awaitable[list[Any]]] = _no_source
    """Read a whole bounded source (a Source or connector spec), for lookups."""
    bounded_input: bool = True
    """True when every source upstream is bounded (the job ends by itself)."""
    dead_letter: RejectFn = _count_only
    """Set a record aside whatever the step's error policy: to the job's dead-letter
    output, or counted and logged when it has none (quality rules' ``drop``)."""
    quality: dict[str, Any] = field(default_factory=dict)
    """Where a quality step keeps each rule's results (read by the metrics)."""

    def keyed_state(self) -> KeyedStateStore:
        """This step's keyed state in this subtask (memory backend if none is set)."""
        backend = self.state if self.state is not None else MemoryBackend()
        return KeyedStateStore(backend, self.step_id, self.subtask_index, self.clock)


class OperatorLogic(abc.ABC):
    """Runtime side of one operator in one subtask.

    The runtime calls ``process`` with each micro-batch in arrival order, then
    ``finish`` once at end of input, then ``close``. ``process`` returns the
    output batch (possibly empty). When ``is_async`` is true the runtime awaits
    ``process_async`` instead; when ``blocking`` is true it runs ``process`` in
    the compute thread pool, off the event loop.
    """

    is_async: ClassVar[bool] = False
    blocking: bool = False
    generates_watermarks: ClassVar[bool] = False
    """True for timestamp assigners: the runtime reads ``current_watermark()``."""
    is_idle: bool = False
    """For watermark generators: no input for the idle timeout (excluded from the minimum)."""
    input_waiting_since: int | None = None
    """For watermark generators: since when (clock ms) the subtask waits for input."""
    tick_interval_ms: int | None = None
    """Set when the logic needs ``on_tick`` calls (processing time, timers, idleness)."""
    keys_from_input: bool = False
    """Set by the runtime when every input is hash-partitioned by this logic's own
    key: the keys of a ``KeyedBatch`` input may be used instead of recomputing them."""

    def input_keys(self, batch: list[Any]) -> list[Any] | None:
        """The keys the exchange computed for ``batch``, when usable, else None."""
        if self.keys_from_input and type(batch) is KeyedBatch:
            return batch.keys
        return None

    def process(self, batch: list[Any]) -> list[Any]:
        raise NotImplementedError  # pragma: no cover - async logics override process_async

    async def process_async(self, batch: list[Any]) -> list[Any]:
        return self.process(batch)

    def finish(self) -> list[Any]:
        """Records to emit at end of input (stateful operators flush here)."""
        return []

    def on_watermark(self, watermark: int) -> list[Any]:
        """The input's event time reached ``watermark``; return records that fire."""
        return []

    def on_tick(self, now_ms: int) -> list[Any]:
        """Processing time reached ``now_ms`` (every ``tick_interval_ms``)."""
        return []

    def current_watermark(self) -> int | None:
        """For watermark generators: the watermark to send downstream now."""
        return None

    def snapshot_state(self) -> Any:
        """State kept outside the keyed state backend, for a checkpoint (picklable)."""
        return None

    def restore_state(self, states: list[Any]) -> None:
        """Restore from the snapshots of one or (after a rescale) several old subtasks."""

    def partition_key(self, table: str, key: Any) -> Any:
        """The record key a keyed-state entry belongs to (for redistribution on rescale)."""
        return key

    def close(self) -> None:
        """Release resources; called once, also after a failure."""


class OperatorSpec(abc.ABC):
    """A picklable, validated description of an operator; ``build`` makes its logic."""

    operator_type: ClassVar[str] = "operator"
    stateful: ClassVar[bool] = False
    uses_event_time: ClassVar[bool] = False
    """True if the operator acts on watermarks (windows, timers, joins)."""

    @property
    def is_stateful(self) -> bool:
        return self.stateful

    @abc.abstractmethod
    def build(self, ctx: OperatorContext) -> OperatorLogic:
        """Return a fresh runtime logic for one subtask."""


class Operator(OperatorSpec, Generic[IN, OUT]):
    """Base class for user-defined operators (seed §8.2).

    Subclass it and implement ``apply``, which receives the records of one
    micro-batch and returns (or yields) the output records. Set ``name`` and
    ``parallelism`` as class or instance attributes if you like.

    Example:
        >>> from reflow.operators import Operator
        >>> class Normalize(Operator[str, str]):
        ...     def apply(self, records):
        ...         for r in records:
        ...             if r.strip():
        ...                 yield r.strip().lower()
        >>> from reflow.testing import TestingSource, TestingSink, run_job
        >>> from reflow import Job
        >>> sink = TestingSink()
        >>> _ = run_job(Job.builder().source(TestingSource([" A", "", "b "]))
        ...     .transform(Normalize()).sink(sink).build())
        >>> sink.records
        ['a', 'b']

    If ``apply`` raises and the step's error policy is not ``fail``, the
    batch is replayed record by record to isolate the bad record, so keep
    ``apply`` free of side effects or idempotent.
    """

    operator_type: ClassVar[str] = "custom"
    name: str | None = None
    parallelism: int | None = None

    @abc.abstractmethod
    def apply(self, records: Iterable[IN]) -> Iterable[OUT]:
        """Transform the records of one micro-batch."""

    def build(self, ctx: OperatorContext) -> OperatorLogic:
        from reflow.operators.stateless import CustomLogic

        return CustomLogic(self.apply, ctx)
