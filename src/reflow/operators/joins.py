"""Joins: window join and interval join of two keyed streams; lookup enrichment from a source.

The two-input joins read one stream of tagged records ``(0, left)`` /
``(1, right)`` (the fluent API tags and unions the inputs for you), keyed by
the left or right key, so both sides of a key meet in one subtask and the
watermark is the minimum of both inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from reflow.errors import GraphValidationError
from reflow.eventtime.watermarks import MAX_WATERMARK, MIN_WATERMARK
from reflow.graph.durations import millis
from reflow.operators.aggregations import value_of
from reflow.operators.base import OperatorContext, OperatorLogic, OperatorSpec, is_row
from reflow.state.backend import MemoryBackend, OrderedTable, StateTable

__all__ = ["IntervalJoinOp", "LookupJoinOp", "WindowJoinOp", "tagged"]

LEFT, RIGHT = 0, 1


def _fn(of: str | Callable[[Any], Any]) -> Callable[[Any], Any]:
    selector = value_of(of)
    assert selector is not None
    return selector


def tagged(left: Callable[[Any], Any], right: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A function of a tagged record ``(side, record)`` that applies the side's function."""

    def pick(item: tuple[int, Any]) -> Any:
        side, record = item
        return left(record) if side == LEFT else right(record)

    return pick


def default_join(left: Any, right: Any) -> Any:
    """Two dicts (or typed rows) merged, the left's fields winning; else the pair."""
    if (isinstance(left, dict) or is_row(left)) and (isinstance(right, dict) or is_row(right)):
        return {**right, **left}
    return (left, right)


@dataclass(frozen=True, slots=True)
class _TwoInputJoin(OperatorSpec):
    left_key: str | Callable[[Any], Any]
    right_key: str | Callable[[Any], Any]
    left_timestamp: str | Callable[[Any], int]
    right_timestamp: str | Callable[[Any], int]
    join: Callable[[Any, Any], Any] = default_join
    name: str | None = None
    parallelism: int | None = None

    stateful: ClassVar[bool] = True

    @property
    def input_key_selector(self) -> Callable[[Any], Any]:
        return tagged(_fn(self.left_key), _fn(self.right_key))

    @property
    def timestamp_of(self) -> Callable[[Any], int]:
        return tagged(_fn(self.left_timestamp), _fn(self.right_timestamp))


@dataclass(frozen=True, slots=True)
class WindowJoinOp(_TwoInputJoin):
    """Pairs of left and right records with equal keys in the same tumbling window."""

    size_ms: int = 60_000

    operator_type: ClassVar[str] = "window_join"
    uses_event_time: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "size_ms", millis(self.size_ms, "window join size"))
        if self.size_ms <= 0:
            raise GraphValidationError("window join: size must be > 0 ms")

    def build(self, ctx: OperatorContext) -> OperatorLogic:
        return _WindowJoinLogic(self, ctx)


class _WindowJoinLogic(OperatorLogic):
    def __init__(self, spec: WindowJoinOp, ctx: OperatorContext) -> None:
        backend = ctx.state if ctx.state is not None else MemoryBackend()
        self.buffers: OrderedTable = backend.ordered_table(ctx.step_id, ctx.subtask_index, "wj")
        self.key_of = spec.input_key_selector
        self.ts_of = spec.timestamp_of
        self.size = spec.size_ms
        self.join = spec.join
        self.ctx = ctx
        self.bound = MIN_WATERMARK

    def process(self, batch: list[Any]) -> list[Any]:
        late = []
        for item in batch:
            ts = self.ts_of(item)
            end = ts - ts % self.size + self.size
            if end <= self.bound:
                late.append(item[1])
                continue
            slot = (self.key_of(item), item[0])
            records = self.buffers.get(end, slot) or []
            records.append(item[1])
            self.buffers.put(end, slot, records)
        if late:
            self.ctx.emit_side("late", late)
        return []

    def partition_key(self, table: str, key: Any) -> Any:
        return key[0]  # entries are keyed (record key, side)

    def snapshot_state(self) -> Any:
        return self.bound

    def restore_state(self, states: list[Any]) -> None:
        present = [s for s in states if s is not None]
        if present:
            self.bound = min(present)

    def on_watermark(self, watermark: int) -> list[Any]:
        self.bound = MAX_WATERMARK if watermark == MAX_WATERMARK else watermark + 1
        windows: dict[tuple[int, Any], list[list[Any]]] = {}
        for end, (key, side), records in self.buffers.pop_until(self.bound):
            windows.setdefault((end, key), [[], []])[side].extend(records)
        out: list[Any] = []
        for (_, _), (lefts, rights) in sorted(windows.items(), key=lambda kv: kv[0][0]):
            out.extend(self.join(left, right) for left in lefts for right in rights)
        return out


@dataclass(frozen=True, slots=True)
class IntervalJoinOp(_TwoInputJoin):
    """Pairs where right.ts lies in [left.ts + lower_ms, left.ts + upper_ms], equal keys.

    ``outer`` ``"left"``/``"right"``/``"full"`` also emits each record of that side
    that joined nothing, as ``join(record, None)`` / ``join(None, record)``, once the
    watermark passes the last time a partner could have (Flink's outer interval
    join); in an outer join a key that is None (or a tuple holding None) joins
    nothing, as SQL's NULL. ``condition(joined)`` must also hold for a pair to join
    (SQL's other ON conditions: they decide what counts as a match).
    """

    lower_ms: int = 0
    upper_ms: int = 0
    outer: Literal["inner", "left", "right", "full"] = "inner"
    condition: Callable[[Any], bool] | None = None

    operator_type: ClassVar[str] = "interval_join"
    uses_event_time: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "lower_ms", millis(self.lower_ms, "interval join lower bound"))
        object.__setattr__(self, "upper_ms", millis(self.upper_ms, "interval join upper bound"))
        if self.lower_ms > self.upper_ms:
            raise GraphValidationError("interval join: lower bound must be <= upper bound")
        if self.outer not in ("inner", "left", "right", "full"):
            raise GraphValidationError(
                f"interval join: outer must be inner, left, right or full, not {self.outer!r}"
            )

    def build(self, ctx: OperatorContext) -> OperatorLogic:
        return _IntervalJoinLogic(self, ctx)


def _null_key(key: Any) -> bool:
    return key is None or (type(key) is tuple and None in key)


class _IntervalJoinLogic(OperatorLogic):
    """Each side's records per key as ``(ts, record)``, or ``(ts, record, joined)`` in
    an outer join, until the watermark passes the last time a partner could come."""

    def __init__(self, spec: IntervalJoinOp, ctx: OperatorContext) -> None:
        backend = ctx.state if ctx.state is not None else MemoryBackend()
        self.sides: StateTable = backend.table(ctx.step_id, ctx.subtask_index, "ij")
        self.expiry: OrderedTable = backend.ordered_table(ctx.step_id, ctx.subtask_index, "ij-exp")
        self.key_of = spec.input_key_selector
        self.ts_of = spec.timestamp_of
        self.lower, self.upper = spec.lower_ms, spec.upper_ms
        self.join = spec.join
        self.condition = spec.condition
        self.ctx = ctx
        self.tracking = spec.outer != "inner"
        self.padded = (spec.outer in ("left", "full"), spec.outer in ("right", "full"))

    def _pad(self, side: int, record: Any) -> Any:
        return self.join(record, None) if side == LEFT else self.join(None, record)

    def process(self, batch: list[Any]) -> list[Any]:
        out: list[Any] = []
        lower, upper, join, condition = self.lower, self.upper, self.join, self.condition
        tracking = self.tracking
        for item in batch:
            side, record = item
            ts = self.ts_of(item)
            key = self.key_of(item)
            if tracking and _null_key(key):  # NULL joins nothing
                if self.padded[side]:
                    out.append(self._pad(side, record))
                continue
            other = self.sides.get((key, 1 - side)) or []
            joined = False
            marked = False
            for index, entry in enumerate(other):
                if side == LEFT:
                    if not ts + lower <= entry[0] <= ts + upper:
                        continue
                    row = join(record, entry[1])
                else:
                    if not entry[0] + lower <= ts <= entry[0] + upper:
                        continue
                    row = join(entry[1], record)
                if condition is not None:
                    try:
                        if not condition(row):
                            continue
                    except Exception as exc:  # the pair goes to the error policy
                        self.ctx.reject(row, exc)
                        continue
                out.append(row)
                joined = True
                if tracking and not entry[2]:
                    other[index] = (entry[0], entry[1], True)
                    marked = True
            if marked:
                self.sides.put((key, 1 - side), other)
            mine = self.sides.get((key, side)) or []
            mine.append((ts, record, joined) if tracking else (ts, record))
            self.sides.put((key, side), mine)
            self.expiry.put(ts + upper if side == LEFT else ts - lower, (key, side), None)
        return out

    def partition_key(self, table: str, key: Any) -> Any:
        return key[0]  # entries are keyed (record key, side)

    def on_watermark(self, watermark: int) -> list[Any]:
        out: list[Any] = []
        for _, (key, side), _ in self.expiry.pop_until(watermark):
            entries = self.sides.get((key, side)) or []
            if side == LEFT:
                alive = [e for e in entries if e[0] + self.upper > watermark]
            else:
                alive = [e for e in entries if e[0] - self.lower > watermark]
            if self.tracking and self.padded[side] and len(alive) < len(entries):
                kept = {id(e) for e in alive}
                out.extend(self._pad(side, e[1]) for e in entries if id(e) not in kept and not e[2])
            if alive:
                self.sides.put((key, side), alive)
            else:
                self.sides.delete((key, side))
        return out


@dataclass(frozen=True, slots=True)
class LookupJoinOp(OperatorSpec):
    """Enrich records from a lookup source (a SQL table or any bounded source), cached.

    The source is read whole into a cache keyed by ``lookup_key`` and read again
    after ``cache_ttl_ms``. ``on_missing``: ``keep`` emits ``join(record, None)``,
    ``drop`` leaves the record out (counted as records in minus records out),
    ``reject`` sends it to the error policy.
    """

    source: Any
    key: str | Callable[[Any], Any]
    lookup_key: str | Callable[[Any], Any]
    join: Callable[[Any, Any], Any] | None = None
    cache_ttl_ms: int | None = 60_000
    on_missing: Literal["keep", "drop", "reject"] = "keep"
    name: str | None = None
    parallelism: int | None = None

    operator_type: ClassVar[str] = "lookup"

    def __post_init__(self) -> None:
        if self.cache_ttl_ms is not None:
            object.__setattr__(self, "cache_ttl_ms", millis(self.cache_ttl_ms, "cache TTL"))

    def build(self, ctx: OperatorContext) -> OperatorLogic:
        return _LookupLogic(self, ctx)


def _enrich(record: Any, match: Any) -> Any:
    if match is None:
        return record
    return default_join(record, match)


class _LookupLogic(OperatorLogic):
    is_async = True

    def __init__(self, spec: LookupJoinOp, ctx: OperatorContext) -> None:
        self.spec = spec
        self.ctx = ctx
        self.key_of = _fn(spec.key)
        self.lookup_key_of = _fn(spec.lookup_key)
        self.join = spec.join or _enrich
        self.cache: dict[Any, Any] | None = None
        self.loaded_at = 0
        self.loads = 0

    async def _refresh(self) -> None:
        now = self.ctx.clock.now_ms()
        ttl = self.spec.cache_ttl_ms
        if self.cache is not None and (ttl is None or now - self.loaded_at < ttl):
            return
        records = await self.ctx.load_source(self.spec.source)
        self.cache = {self.lookup_key_of(r): r for r in records}
        self.loaded_at = now
        self.loads += 1

    async def process_async(self, batch: list[Any]) -> list[Any]:
        await self._refresh()
        cache = self.cache
        assert cache is not None
        out = []
        missing = self.spec.on_missing
        for record in batch:
            try:
                match = cache.get(self.key_of(record))
            except Exception as exc:
                self.ctx.reject(record, exc)
                continue
            if match is None:
                if missing == "drop":
                    continue
                if missing == "reject":
                    self.ctx.reject(
                        record, LookupError(f"no lookup match for {self.key_of(record)!r}")
                    )
                    continue
            out.append(self.join(record, match))
        return out
