"""Keyed operators: rolling aggregate (seed §9.2), deduplicate, process functions with timers."""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import repeat
from typing import Any, ClassVar, Literal

from reflow.errors import GraphValidationError
from reflow.eventtime.watermarks import MAX_WATERMARK, MIN_WATERMARK
from reflow.graph.durations import millis
from reflow.operators.aggregations import Reduce, value_of
from reflow.operators.base import OperatorContext, OperatorLogic, OperatorSpec
from reflow.state.backend import MemoryBackend, OrderedTable, StateTable
from reflow.state.functions import AggregateFunction
from reflow.state.keyed import KeyedStateStore

__all__ = [
    "DeduplicateOp",
    "EarliestOp",
    "KeyedAggregateOp",
    "KeyedProcessFunction",
    "KeyedProcessOp",
    "ProcessContext",
]


def _selector(key: str | Callable[[Any], Any]) -> Callable[[Any], Any]:
    selector = value_of(key)
    assert selector is not None
    return selector


@dataclass(frozen=True, slots=True)
class KeyedAggregateOp(OperatorSpec):
    """Rolling aggregate per key (seed §9.2 ``Operators.aggregate(key, value, reduce)``).

    Each result is a dict ``{key_name: key, value_name: result}`` (so it goes to a
    CSV file or a table as it is): the names are the key's and the value's field
    names when they are given as fields (``aggregate("region", "amount", add)``
    gives ``{"region": ..., "amount": ...}``), a named function's name without a
    ``get_`` prefix, else ``key`` and ``value``; ``key_name=``/``value_name=`` set
    them, ``output=`` builds any other record from ``(key, result)``.

    ``emit="updates"`` sends a result after every record; ``"final"`` sends each
    key's result once, at the end of (bounded) input; ``"auto"`` picks final for
    bounded input and updates otherwise. ``"changelog"`` sends every change as
    Flink's changelog does: ``+I`` for a key's first result, then ``-U`` (the
    previous result, left out with ``retract=False`` for upsert sinks) and ``+U``
    (the new one) when a record changes it; a dict result gets the kind in its
    ``changelog_column``, any other result is sent as ``(kind, result)``.

    ``visible(key, result)`` (changelog only) keeps out of the output the results it
    is False for, as SQL's HAVING: a key whose new result leaves the output is
    deleted (``-D`` with the result sent before), one whose result enters it is
    inserted (``+I``); the state keeps every key.
    """

    key: str | Callable[[Any], Any]
    aggregate: AggregateFunction[Any, Any, Any]
    emit: Literal["auto", "updates", "final", "changelog"] = "auto"
    output: Callable[[Any, Any], Any] | None = None
    name: str | None = None
    parallelism: int | None = None
    key_name: str | None = None
    value_name: str | None = None
    changelog_column: str = "op"
    retract: bool = True
    visible: Callable[[Any, Any], bool] | None = None

    operator_type: ClassVar[str] = "aggregate"
    stateful: ClassVar[bool] = True

    @property
    def input_key_selector(self) -> Callable[[Any], Any]:
        return _selector(self.key)

    def build(self, ctx: OperatorContext) -> OperatorLogic:
        return _KeyedAggregateLogic(self, ctx)


def name_of(selector: Any, default: str) -> str:
    """A field's name, or a named function's (``get_region`` -> ``region``)."""
    if isinstance(selector, str):
        return selector
    name = getattr(selector, "__name__", "")
    if not name.isidentifier():  # <lambda>, partials, ...
        return default
    for prefix in ("get_", "get"):
        rest = name.removeprefix(prefix)
        if rest != name and rest.isidentifier():
            return rest[0].lower() + rest[1:]
    return name


def _named_output(spec: KeyedAggregateOp) -> Callable[[Any, Any], dict[str, Any]]:
    key_name = spec.key_name or name_of(spec.key, "key")
    value_name = spec.value_name or name_of(getattr(spec.aggregate, "of", None), "value")
    if value_name == key_name:
        value_name = "value"

    def output(key: Any, value: Any) -> dict[str, Any]:
        return {key_name: key, value_name: value}

    return output


class _KeyedAggregateLogic(OperatorLogic):
    def __init__(self, spec: KeyedAggregateOp, ctx: OperatorContext) -> None:
        backend = ctx.state if ctx.state is not None else MemoryBackend()
        agg = spec.aggregate
        size = agg.size if agg.grows() else None  # collected lists count element by element
        self.table: StateTable = backend.table(
            ctx.step_id, ctx.subtask_index, "acc", None if size is None else lambda a: 1 + size(a)
        )
        self.key_of = spec.input_key_selector
        self.agg = agg
        self.output = spec.output or _named_output(spec)
        mode = spec.emit
        if mode == "auto":
            mode = "final" if ctx.bounded_input else "updates"
        self.updates = mode == "updates"
        self.changelog = mode == "changelog"
        self.column = spec.changelog_column
        self.retract = spec.retract
        self.visible = spec.visible
        self.reject = ctx.reject

    def _change(self, kind: str, key: Any, result: Any) -> Any:
        row = self.output(key, result)
        return {**row, self.column: kind} if isinstance(row, dict) else (kind, row)

    def process(self, batch: list[Any]) -> list[Any]:
        table, agg, key_of = self.table, self.agg, self.key_of
        changelog, updates = self.changelog, self.updates
        out = []
        keys = self.input_keys(batch)
        given = repeat(None) if keys is None else keys
        visible = self.visible
        for record, k in zip(batch, given, strict=False):
            try:
                key = key_of(record) if keys is None else k
                acc = table.get(key)
                existed = acc is not None
                before = agg.result(acc) if changelog and existed else None
                acc = agg.add(agg.create() if acc is None else acc, record)
                if visible is not None:
                    after = agg.result(acc)
                    shown = existed and visible(key, before)
                    showing = visible(key, after)
            except Exception as exc:
                self.reject(record, exc)
                continue
            table.put(key, acc)
            if updates:
                out.append(self.output(key, agg.result(acc)))
            elif visible is not None:
                if existed and after == before:
                    continue  # an unchanged result sends nothing, as in Flink
                if shown and showing:
                    if self.retract:
                        out.append(self._change("-U", key, before))
                    out.append(self._change("+U", key, after))
                elif shown:
                    out.append(self._change("-D", key, before))
                elif showing:
                    out.append(self._change("+I", key, after))
            elif changelog:
                after = agg.result(acc)
                if not existed:
                    out.append(self._change("+I", key, after))
                elif after != before:  # an unchanged result sends nothing, as in Flink
                    if self.retract:
                        out.append(self._change("-U", key, before))
                    out.append(self._change("+U", key, after))
        return out

    def finish(self) -> list[Any]:
        if self.updates or self.changelog:
            return []
        return [self.output(key, self.agg.result(acc)) for key, acc in self.table.items()]


@dataclass(frozen=True, slots=True)
class EarliestOp(OperatorSpec):
    """The earliest record of each key by event time, once (SQL's
    ``ROW_NUMBER() OVER (PARTITION BY key ORDER BY ts) = 1``).

    A key's candidate is the record with the smallest timestamp seen so far (the
    first to arrive among equal ones); it is emitted when the watermark reaches its
    timestamp, when no earlier record of the key can still come, and every later
    record of the key is dropped. A key's first record that arrives behind the
    watermark is emitted at once. Emitted keys are remembered (as Flink's
    deduplication without a state TTL).
    """

    key: str | Callable[[Any], Any]
    timestamp: str | Callable[[Any], int] | None = None
    name: str | None = None
    parallelism: int | None = None

    operator_type: ClassVar[str] = "earliest"
    stateful: ClassVar[bool] = True
    uses_event_time: ClassVar[bool] = True

    @property
    def input_key_selector(self) -> Callable[[Any], Any]:
        return _selector(self.key)

    def build(self, ctx: OperatorContext) -> OperatorLogic:
        return _EarliestLogic(self, ctx)


_EMITTED = "emitted"


class _EarliestLogic(OperatorLogic):
    def __init__(self, spec: EarliestOp, ctx: OperatorContext) -> None:
        backend = ctx.state if ctx.state is not None else MemoryBackend()
        self.first: StateTable = backend.table(ctx.step_id, ctx.subtask_index, "first")
        self.due: OrderedTable = backend.ordered_table(ctx.step_id, ctx.subtask_index, "due")
        self.key_of = spec.input_key_selector
        ts_of = value_of(spec.timestamp) or ctx.timestamp_of
        if ts_of is None:
            raise GraphValidationError(
                f"step {ctx.step_id!r}: the earliest record per key needs event time: "
                "a timestamp field, or assign_timestamps upstream"
            )
        self.ts_of = ts_of
        self.watermark = MIN_WATERMARK
        self.reject = ctx.reject

    def snapshot_state(self) -> Any:
        return {"watermark": self.watermark}

    def restore_state(self, states: list[Any]) -> None:
        present = [s["watermark"] for s in states if s is not None]
        if present:
            self.watermark = min(present)

    def process(self, batch: list[Any]) -> list[Any]:
        out = []
        first, due, watermark = self.first, self.due, self.watermark
        keys = self.input_keys(batch)
        given = repeat(None) if keys is None else keys
        for record, k in zip(batch, given, strict=False):
            try:
                key = self.key_of(record) if keys is None else k
                ts = self.ts_of(record)
                held = first.get(key)
            except Exception as exc:
                self.reject(record, exc)
                continue
            if held == _EMITTED:
                continue  # a later record of a key already emitted
            if ts <= watermark:  # behind the watermark: no earlier record can come
                if held is not None:
                    due.delete(held[0], key)
                first.put(key, _EMITTED)
                out.append(record)  # a held candidate is later: it is not yet due
                continue
            if held is None or ts < held[0]:
                if held is not None:
                    due.delete(held[0], key)
                first.put(key, (ts, record))
                due.put(ts, key, None)
        return out

    def on_watermark(self, watermark: int) -> list[Any]:
        self.watermark = max(self.watermark, watermark)
        out = []
        for _, key, _ in self.due.pop_until(watermark):
            held = self.first.get(key)
            if held is not None and held != _EMITTED:
                out.append(held[1])
                self.first.put(key, _EMITTED)
        return out


@dataclass(frozen=True, slots=True)
class DeduplicateOp(OperatorSpec):
    """Keep the first record of each key within ``ttl_ms`` (None: forever).

    With ``timestamp`` (or an upstream assigner) the TTL counts in event time,
    else in processing time on the injected clock.
    """

    key: str | Callable[[Any], Any]
    ttl_ms: int | None = None
    timestamp: str | Callable[[Any], int] | None = None
    event_time: bool = True
    name: str | None = None
    parallelism: int | None = None

    operator_type: ClassVar[str] = "deduplicate"
    stateful: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.ttl_ms is not None:
            object.__setattr__(self, "ttl_ms", millis(self.ttl_ms, "deduplicate TTL"))

    @property
    def input_key_selector(self) -> Callable[[Any], Any]:
        return _selector(self.key)

    def build(self, ctx: OperatorContext) -> OperatorLogic:
        return _DedupLogic(self, ctx)


class _DedupLogic(OperatorLogic):
    def __init__(self, spec: DeduplicateOp, ctx: OperatorContext) -> None:
        backend = ctx.state if ctx.state is not None else MemoryBackend()
        self.seen: StateTable = backend.table(ctx.step_id, ctx.subtask_index, "seen")
        self.key_of = spec.input_key_selector
        self.ttl = spec.ttl_ms
        self.ts_of = (value_of(spec.timestamp) or ctx.timestamp_of) if spec.event_time else None
        self.clock = ctx.clock
        self.reject = ctx.reject

    def process(self, batch: list[Any]) -> list[Any]:
        out = []
        seen, key_of, ttl = self.seen, self.key_of, self.ttl
        now = self.clock.now_ms()
        keys = self.input_keys(batch)
        given = repeat(None) if keys is None else keys
        for record, k in zip(batch, given, strict=False):
            try:
                key = key_of(record) if keys is None else k
                when = now if self.ts_of is None else self.ts_of(record)
                first = seen.get(key)
            except Exception as exc:
                self.reject(record, exc)
                continue
            if first is not None and (ttl is None or when - first < ttl):
                continue  # a duplicate within the time-to-live
            seen.put(key, when)
            out.append(record)
        return out


class ProcessContext:
    """What a KeyedProcessFunction sees for the current record or timer."""

    def __init__(self, logic: _ProcessLogic) -> None:
        self._logic = logic
        self.timestamp: int | None = None

    @property
    def key(self) -> Any:
        return self._logic.store.current_key

    @property
    def state(self) -> KeyedStateStore:
        """Keyed state of the current key (value_state, list_state, map_state, ...)."""
        return self._logic.store

    @property
    def current_watermark(self) -> int:
        return self._logic.watermark

    def current_processing_time(self) -> int:
        return self._logic.clock.now_ms()

    def register_event_time_timer(self, time: int) -> None:
        """Call ``on_timer`` for the current key once the watermark reaches ``time``."""
        self._logic.event_timers.put(time, self.key, None)

    def register_processing_time_timer(self, time: int) -> None:
        """Call ``on_timer`` for the current key once the clock reaches ``time``."""
        self._logic.processing_timers.put(time, self.key, None)

    def delete_event_time_timer(self, time: int) -> None:
        self._logic.event_timers.delete(time, self.key)

    def delete_processing_time_timer(self, time: int) -> None:
        self._logic.processing_timers.delete(time, self.key)

    def output(self, tag: str, record: Any) -> None:
        """Send ``record`` to the side output ``tag``."""
        self._logic.ctx.emit_side(tag, [record])


class KeyedProcessFunction(abc.ABC):
    """Per-key logic with state and timers (Flink's KeyedProcessFunction).

    ``process_element`` is called per record, ``on_timer`` when a registered
    timer fires; both return (or yield) output records.
    """

    side_outputs: ClassVar[tuple[str, ...]] = ()

    def open(self, ctx: ProcessContext) -> None:
        """Called once per subtask before the first record."""

    @abc.abstractmethod
    def process_element(self, record: Any, ctx: ProcessContext) -> Iterable[Any] | None: ...

    def on_timer(self, timestamp: int, ctx: ProcessContext) -> Iterable[Any] | None:
        return None


@dataclass(frozen=True, slots=True)
class KeyedProcessOp(OperatorSpec):
    """Run a KeyedProcessFunction per key."""

    function: KeyedProcessFunction
    key: str | Callable[[Any], Any]
    timestamp: str | Callable[[Any], int] | None = None
    timer_tick_ms: int = 100
    name: str | None = None
    parallelism: int | None = None

    operator_type: ClassVar[str] = "process"
    uses_event_time: ClassVar[bool] = True
    stateful: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not isinstance(self.function, KeyedProcessFunction):
            raise GraphValidationError(
                "Operators.process needs a KeyedProcessFunction subclass instance"
            )

    @property
    def side_outputs(self) -> tuple[str, ...]:
        return self.function.side_outputs

    @property
    def input_key_selector(self) -> Callable[[Any], Any]:
        return _selector(self.key)

    def build(self, ctx: OperatorContext) -> OperatorLogic:
        return _ProcessLogic(self, ctx)


class _ProcessLogic(OperatorLogic):
    def __init__(self, spec: KeyedProcessOp, ctx: OperatorContext) -> None:
        self.ctx = ctx
        self.fn = spec.function
        backend = ctx.state if ctx.state is not None else MemoryBackend()
        self.store = KeyedStateStore(backend, ctx.step_id, ctx.subtask_index, ctx.clock)
        self.event_timers: OrderedTable = backend.ordered_table(
            ctx.step_id, ctx.subtask_index, "et"
        )
        self.processing_timers: OrderedTable = backend.ordered_table(
            ctx.step_id, ctx.subtask_index, "pt"
        )
        self.key_of = spec.input_key_selector
        self.ts_of = value_of(spec.timestamp) or ctx.timestamp_of
        self.clock = ctx.clock
        self.watermark = MIN_WATERMARK
        self.tick_interval_ms = spec.timer_tick_ms
        self.pctx = ProcessContext(self)
        self.opened = False

    def process(self, batch: list[Any]) -> list[Any]:
        if not self.opened:
            self.fn.open(self.pctx)
            self.opened = True
        out: list[Any] = []
        keys = self.input_keys(batch)
        given = repeat(None) if keys is None else keys
        for record, k in zip(batch, given, strict=False):
            try:
                self.store.current_key = self.key_of(record) if keys is None else k
                self.pctx.timestamp = None if self.ts_of is None else self.ts_of(record)
                produced = self.fn.process_element(record, self.pctx)
                if produced is not None:
                    out.extend(produced)
            except Exception as exc:
                self.ctx.reject(record, exc)
        return out

    def _timers(self, table: OrderedTable, bound: int) -> list[Any]:
        out: list[Any] = []
        while True:
            due = table.pop_until(bound)
            if not due:
                return out
            for time, key, _ in due:
                self.store.current_key = key
                self.pctx.timestamp = time
                produced = self.fn.on_timer(time, self.pctx)
                if produced is not None:
                    out.extend(produced)

    def on_watermark(self, watermark: int) -> list[Any]:
        self.watermark = watermark
        return self._timers(self.event_timers, watermark)

    def snapshot_state(self) -> Any:
        return self.watermark

    def restore_state(self, states: list[Any]) -> None:
        present = [s for s in states if s is not None]
        if present:
            self.watermark = min(present)

    def on_tick(self, now_ms: int) -> list[Any]:
        return self._timers(self.processing_timers, now_ms)

    def finish(self) -> list[Any]:
        return self._timers(self.processing_timers, MAX_WATERMARK)


def reduce_aggregate(
    fn: Callable[[Any, Any], Any], value: str | Callable[[Any], Any] | None
) -> AggregateFunction[Any, Any, Any]:
    return Reduce(fn, value)
