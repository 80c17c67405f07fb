"""Over aggregates (SQL's ``AGG(...) OVER (PARTITION BY k ORDER BY ts <frame>)``):
every record comes out once, with the aggregates of its key's records in a frame
that ends at it, in event-time order.

As in Flink, a record is held until the watermark passes its timestamp, when no
earlier record of its key can still arrive; then the key's records are taken in
time order (records of equal time in arrival order). A record that arrives behind
the watermark is late: it goes to the ``late`` side output (counted on the step),
as a window's late records do.

Frames:

- ``rows``: the ``preceding`` records before it and itself (all records before
  it with ``preceding=None``, ``UNBOUNDED PRECEDING``);
- ``range``: the records whose time is within ``preceding`` ms before its own,
  itself and every record of the same time (its peers, which get the same
  values); all records up to its time with ``preceding=None``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import repeat
from typing import Any, ClassVar, Literal

from reflow.errors import GraphValidationError
from reflow.eventtime.watermarks import MIN_WATERMARK
from reflow.operators.aggregations import value_of
from reflow.operators.base import OperatorContext, OperatorLogic, OperatorSpec
from reflow.state.backend import MemoryBackend, OrderedTable, StateTable
from reflow.state.functions import AggregateFunction

__all__ = ["OverAggregateOp"]


@dataclass(frozen=True, slots=True)
class OverAggregateOp(OperatorSpec):
    """Each record with the aggregates of its key's frame (see the module text).

    ``arguments(record)`` is what ``aggregate`` adds of a record (the record itself
    by default); it is taken once per record, when the record arrives (a record it
    fails on goes to the error policy), and frames keep it instead of the record.
    ``emit(record, result)`` makes the output record from a record and
    ``aggregate``'s result over its frame.

    A record whose value ``aggregate.add`` raises on goes to the error policy alone
    (``add`` must raise before it changes the accumulator). ``aggregate`` also takes
    values out: ``retract(acc, value, size, values)`` removes ``value`` from ``acc``,
    given the frame's size and its values after the removal (``values()``, for what
    cannot be taken out, such as the frame's MIN); so each frame keeps a running
    accumulator, and a record costs the values entering and leaving it.
    """

    key: str | Callable[[Any], Any]
    aggregate: AggregateFunction[Any, Any, Any]
    emit: Callable[[Any, Any], Any]
    arguments: Callable[[Any], Any] | None = None
    frame: Literal["rows", "range"] = "range"
    preceding: int | None = None
    """Records (``rows``) or milliseconds (``range``) before the current one; None
    for all of them (UNBOUNDED PRECEDING)."""
    timestamp: str | Callable[[Any], int] | None = None
    name: str | None = None
    parallelism: int | None = None

    operator_type: ClassVar[str] = "over-aggregate"
    stateful: ClassVar[bool] = True
    uses_event_time: ClassVar[bool] = True
    side_outputs: ClassVar[tuple[str, ...]] = ("late",)

    def __post_init__(self) -> None:
        if not callable(getattr(self.aggregate, "retract", None)):
            raise GraphValidationError(
                "an over aggregate's function must take values out of a frame too: "
                "retract(acc, value, size, values)"
            )
        if self.frame not in ("rows", "range"):
            raise GraphValidationError(f"an over frame is 'rows' or 'range', not {self.frame!r}")
        if self.preceding is not None and (
            isinstance(self.preceding, bool)
            or not isinstance(self.preceding, int)
            or self.preceding < 0
        ):
            raise GraphValidationError(
                f"an over frame's preceding is a whole number >= 0 or None (unbounded), "
                f"not {self.preceding!r}"
            )

    @property
    def input_key_selector(self) -> Callable[[Any], Any]:
        selector = value_of(self.key)
        assert selector is not None
        return selector

    def build(self, ctx: OperatorContext) -> OperatorLogic:
        return _OverLogic(self, ctx)


class _OverLogic(OperatorLogic):
    def __init__(self, spec: OverAggregateOp, ctx: OperatorContext) -> None:
        backend = ctx.state if ctx.state is not None else MemoryBackend()
        # (time, key) -> the key's (record, arguments) of that time, in arrival order
        self.pending: OrderedTable = backend.ordered_table(ctx.step_id, ctx.subtask_index, "due")
        # key -> its frame: ([(time, arguments), ...], their accumulator) for bounded
        # frames, (the accumulator of every record so far,) for unbounded ones
        self.frames: StateTable = backend.table(
            ctx.step_id, ctx.subtask_index, "frame", weigh=_frame_size
        )
        self.key_of = spec.input_key_selector
        ts_of = value_of(spec.timestamp) or ctx.timestamp_of
        if ts_of is None:
            raise GraphValidationError(
                f"step {ctx.step_id!r}: an over aggregate needs event time: a timestamp "
                "field, or assign_timestamps upstream"
            )
        self.ts_of = ts_of
        self.agg = spec.aggregate
        self.retract: Callable[..., Any] = spec.aggregate.retract  # type: ignore[attr-defined]
        self.arguments = spec.arguments
        self.emit = spec.emit
        self.rows = spec.frame == "rows"
        self.preceding = spec.preceding
        self.watermark = MIN_WATERMARK
        self.ctx = ctx

    def snapshot_state(self) -> Any:
        return {"watermark": self.watermark}

    def restore_state(self, states: list[Any]) -> None:
        present = [s["watermark"] for s in states if s is not None]
        if present:
            self.watermark = min(present)

    def process(self, batch: list[Any]) -> list[Any]:
        append, watermark, arguments = self.pending.append, self.watermark, self.arguments
        key_of, ts_of = self.key_of, self.ts_of
        late: list[Any] = []
        keys = self.input_keys(batch)
        given = repeat(None) if keys is None else keys
        for record, k in zip(batch, given, strict=False):
            try:
                key = key_of(record) if keys is None else k
                ts = ts_of(record)
                if ts <= watermark:  # a record of its time may already have left
                    late.append(record)
                    continue
                entry = (record, record if arguments is None else arguments(record))
            except Exception as exc:
                self.ctx.reject(record, exc)
                continue
            try:
                append(ts, key, entry)
            except TypeError as exc:  # an unhashable key (state errors end the job)
                self.ctx.reject(record, exc)
        if late:
            self.ctx.emit_side("late", late)
        return []

    def on_watermark(self, watermark: int) -> list[Any]:
        self.watermark = max(self.watermark, watermark)
        out: list[Any] = []
        advance = self._advance if self.preceding is None else self._slide
        for ts, key, entries in self.pending.pop_until(watermark):
            made = len(out)
            try:
                advance(ts, key, entries, out)
            except Exception as exc:  # the key's records of this time are rejected
                del out[made:]
                for record, _ in entries:
                    self.ctx.reject(record, exc)
        return out

    def _advance(self, ts: int, key: Any, entries: list[tuple[Any, Any]], out: list[Any]) -> None:
        """The output of ``entries`` (the key's records and arguments at ``ts``) onto
        ``out``, its unbounded frame (one accumulator of everything so far) moved on
        past them."""
        agg, emit = self.agg, self.emit
        frame = self.frames.get(key)
        acc = agg.create() if frame is None else frame[0]
        kept = []
        for record, value in entries:
            if (added := self._add(acc, record, value)) is None:
                continue
            acc = added
            if self.rows:
                out.append(emit(record, agg.result(acc)))
            else:
                kept.append(record)
        if kept:
            result = agg.result(acc)
            out += [emit(record, result) for record in kept]
        self.frames.put(key, (acc,))

    def _slide(self, ts: int, key: Any, entries: list[tuple[Any, Any]], out: list[Any]) -> None:
        """``_advance`` for a bounded frame: (its values, their running accumulator),
        the values (time, arguments) oldest first."""
        agg, emit, preceding, retract = self.agg, self.emit, self.preceding, self.retract
        assert preceding is not None
        add, result, reject = agg.add, agg.result, self.ctx.reject
        held: deque[tuple[int, Any]]
        frame = self.frames.get(key)
        if frame is None:
            held, acc = deque(), agg.create()
        else:
            held, acc = frame
        size = len(held)
        left: list[tuple[int, Any]] = []

        def values() -> Iterator[Any]:
            return (value for _, value in held)

        try:
            if self.rows:
                bound = preceding + 1
                for record, value in entries:
                    try:
                        acc = add(acc, value)
                    except Exception as exc:  # the aggregate changed nothing
                        reject(record, exc)
                        continue
                    held.append((ts, value))
                    if len(held) > bound:
                        gone = held.popleft()
                        left.append(gone)
                        acc = retract(acc, gone[1], len(held), values)
                    out.append(emit(record, result(acc)))
            else:
                kept = []
                for record, value in entries:
                    try:
                        acc = add(acc, value)
                    except Exception as exc:
                        reject(record, exc)
                        continue
                    held.append((ts, value))
                    kept.append(record)
                if kept:
                    low = ts - preceding
                    while held[0][0] < low:
                        gone = held.popleft()
                        left.append(gone)
                        acc = retract(acc, gone[1], len(held), values)
                    now = result(acc)
                    out += [emit(record, now) for record in kept]
        except Exception:
            # What failed leaves the frame as it was. Everything ever held, in order,
            # is what left and what is held now: the frame was its first ``size``,
            # and its accumulator is made again from them.
            was = [*left, *held][:size]
            held.clear()
            held.extend(was)
            acc = agg.create()
            for value in values():
                acc = agg.add(acc, value)
            self.frames.put(key, (held, acc))
            raise
        self.frames.put(key, (held, acc))

    def _add(self, acc: Any, record: Any, value: Any) -> Any:
        """``acc`` with ``value`` added, or None when it cannot take it (text into a
        SUM): the record goes to the error policy and ``acc`` is as it was (the
        aggregate's ``add`` fails before it changes anything)."""
        try:
            return self.agg.add(acc, value)
        except Exception as exc:
            self.ctx.reject(record, exc)
            return None


def _frame_size(frame: Any) -> int:
    """State entries a frame counts for: its values."""
    if type(frame[0]) is deque:  # (values, accumulator) of a bounded frame
        return len(frame[0])
    return 1  # (accumulator,) of an unbounded frame
