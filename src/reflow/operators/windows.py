"""Windows: tumbling, sliding (from shared panes), session (merging), global with a count trigger.

A window aggregate keeps one accumulator per key and *pane*. A pane is the
greatest common divisor of the window size and slide: a tumbling window is one
pane; a sliding window of 60 s every 5 s is twelve 5 s panes, and each record is
added to one pane only, not copied into twelve windows. When the watermark
passes a window's end, the panes of the window are merged and the result is
emitted. With ``allowed_lateness_ms``, a window's panes stay until
``end + lateness``; a record that arrives in that time updates the window and
its result is emitted again. Later records go to the side output ``"late"``
and are counted.

Event-time windows use the timestamp of the nearest upstream
``assign_timestamps`` (or ``timestamp=``); processing-time windows use the
injected clock.
"""

from __future__ import annotations

import collections
import heapq
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, ClassVar, Literal

from reflow.errors import GraphValidationError
from reflow.eventtime.watermarks import MAX_WATERMARK, MIN_WATERMARK
from reflow.graph.durations import DurationLike, millis
from reflow.operators.aggregations import Count, value_of
from reflow.operators.base import OperatorContext, OperatorLogic, OperatorSpec
from reflow.operators.timestamps import checked_timestamps
from reflow.state.backend import MemoryBackend, MemoryOrderedTable, OrderedTable, StateTable
from reflow.state.functions import AggregateFunction


def _count_each(mapping: dict[Any, int], iterable: Any) -> None:
    get = mapping.get
    for element in iterable:
        mapping[element] = get(element, 0) + 1


# Counter.update's C loop, applied to a plain dict (what checkpoints hold).
count_elements: Callable[[dict[Any, int], Any], None] = getattr(
    collections, "_count_elements", _count_each
)


__all__ = ["WindowAggregateOp", "WindowSpec", "Windows", "default_emit"]

# Processing-time windows are checked at most this often (and at least once a pane).
MAX_TICK_MS = 1000


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """What windows a record falls into."""

    kind: Literal["tumbling", "sliding", "cumulative", "session", "global"]
    size_ms: int = 0
    slide_ms: int = 0
    gap_ms: int = 0
    count: int = 0
    time: Literal["event", "processing"] | None = None
    """event, processing, or None: event time when timestamps are assigned upstream
    (or ``timestamp=`` is given), else processing time."""

    def __post_init__(self) -> None:
        for name in ("size_ms", "slide_ms", "gap_ms"):
            object.__setattr__(self, name, millis(getattr(self, name), f"window {name[:-3]}"))
        if self.kind in ("tumbling", "sliding", "cumulative") and self.size_ms <= 0:
            raise GraphValidationError(f"{self.kind} window: size must be > 0 ms")
        if self.kind == "sliding" and not 0 < self.slide_ms <= self.size_ms:
            raise GraphValidationError("sliding window: slide must be > 0 and <= size")
        if self.kind == "cumulative" and (
            not 0 < self.slide_ms <= self.size_ms or self.size_ms % self.slide_ms
        ):
            raise GraphValidationError(
                "cumulative window: the step must be > 0 and divide the size (a day in hours)"
            )
        if self.kind == "session" and self.gap_ms <= 0:
            raise GraphValidationError("session window: gap must be > 0 ms")
        if self.kind == "global" and self.count <= 0:
            raise GraphValidationError("global window: count trigger must be > 0")


class Windows:
    """Window specs. Sizes are milliseconds (``Windows.tumbling(5 * 60_000)``), a
    ``timedelta`` or a string with its unit (``Windows.tumbling("5m")``).

    ``processing_time``: None (the default) uses event time when the stream has
    timestamps (an ``assign_timestamps`` step upstream, or ``timestamp=`` on the
    window) and processing time otherwise; True or False insists on one, and an
    event-time window without timestamps fails when the job is built."""

    @staticmethod
    def tumbling(size_ms: DurationLike, *, processing_time: bool | None = None) -> WindowSpec:
        return WindowSpec("tumbling", size_ms, size_ms, time=_time(processing_time))  # type: ignore[arg-type]

    @staticmethod
    def sliding(
        size_ms: DurationLike, slide_ms: DurationLike, *, processing_time: bool | None = None
    ) -> WindowSpec:
        return WindowSpec("sliding", size_ms, slide_ms, time=_time(processing_time))  # type: ignore[arg-type]

    @staticmethod
    def cumulative(
        size_ms: DurationLike, step_ms: DurationLike, *, processing_time: bool | None = None
    ) -> WindowSpec:
        """Flink's CUMULATE: windows that start where a tumbling window of ``size_ms``
        starts and grow by ``step_ms`` until they are that window: [0, 1h), [0, 2h),
        ..., [0, 24h), then [24h, 25h), ... (a day's running total, every hour)."""
        return WindowSpec("cumulative", size_ms, step_ms, time=_time(processing_time))  # type: ignore[arg-type]

    @staticmethod
    def session(gap_ms: DurationLike, *, processing_time: bool | None = None) -> WindowSpec:
        return WindowSpec("session", gap_ms=gap_ms, time=_time(processing_time))  # type: ignore[arg-type]

    @staticmethod
    def global_count(count: int) -> WindowSpec:
        """One window per key that fires (and restarts) every ``count`` records."""
        return WindowSpec("global", count=count)


def _time(processing: bool | None) -> Literal["event", "processing"] | None:
    if processing is None:
        return None
    return "processing" if processing else "event"


def default_emit(key: Any, start: int, end: int, value: Any) -> dict[str, Any]:
    return {"key": key, "window_start": start, "window_end": end, "value": value}


def window_result_time(result: Any) -> int:
    """A window result's event time: its window's last millisecond (``window_end -
    1``), as Flink stamps window results, so a window over windows (minutes into
    hours) puts each result in the window that holds its window."""
    return int(result["window_end"]) - 1


EmitMany = Callable[[int, int, Iterable[tuple[Any, Any]]], list[Any]]


def emit_many_of(emit: Callable[[Any, int, int, Any], Any]) -> EmitMany:
    """``emit`` for all of a window's (key, result) pairs at once: its own ``many``
    method when it has one (an emit that makes every row of a window in one loop),
    else ``emit`` called for each pair."""
    many: EmitMany | None = getattr(emit, "many", None)
    if many is not None:
        return many

    def each(start: int, end: int, pairs: Iterable[tuple[Any, Any]]) -> list[Any]:
        return [emit(key, start, end, value) for key, value in pairs]

    return each


@dataclass(frozen=True, slots=True)
class WindowAggregateOp(OperatorSpec):
    """Aggregate each key's records per window (seed §3.7.2, §9.3 ``windowAggregate``)."""

    window: WindowSpec
    key: str | Callable[[Any], Any]
    aggregate: AggregateFunction[Any, Any, Any] = field(default_factory=Count)
    timestamp: str | Callable[[Any], int] | None = None
    allowed_lateness_ms: int = 0
    emit: Callable[[Any, int, int, Any], Any] = default_emit
    name: str | None = None
    parallelism: int | None = None

    operator_type: ClassVar[str] = "window_aggregate"
    uses_event_time: ClassVar[bool] = True
    stateful: ClassVar[bool] = True
    side_outputs: ClassVar[tuple[str, ...]] = ("late",)

    def __post_init__(self) -> None:
        lateness = millis(self.allowed_lateness_ms, "allowed lateness")
        object.__setattr__(self, "allowed_lateness_ms", lateness)
        if self.allowed_lateness_ms < 0:
            raise GraphValidationError("allowed_lateness_ms must be >= 0")

    @property
    def input_key_selector(self) -> Callable[[Any], Any]:
        selector = value_of(self.key)
        assert selector is not None
        return selector

    @property
    def needs_timestamps(self) -> str | None:
        """Why the job is invalid when no step upstream assigns timestamps (an
        event-time window insisted on, without its own ``timestamp``)."""
        if self.window.time != "event" or self.window.kind == "global" or self.timestamp:
            return None
        return EVENT_TIME_WITHOUT_TIMESTAMPS

    @property
    def timestamp_extractor(self) -> Callable[[Any], int] | None:
        """How its results carry event time when it surely runs on event time (its
        own ``timestamp``, or ``time: event``): the window's last millisecond."""
        if self._stamps_results and (self.timestamp is not None or self.window.time == "event"):
            return window_result_time
        return None

    @property
    def input_timestamps(self) -> Callable[[Any], int] | None:
        """Its own ``timestamp``, which its late records carry their event time by."""
        return value_of(self.timestamp)

    @property
    def result_timestamps(self) -> Callable[[Any], int] | None:
        """How its results carry event time when it runs on event time only if the
        stream has timestamps (the graph decides: ``StreamGraph.timestamps_of``)."""
        if self._stamps_results and self.timestamp is None and self.window.time is None:
            return window_result_time
        return None

    @property
    def _stamps_results(self) -> bool:
        """Its results hold their window's end, in event time: the default result
        shape, of a time window that is not on processing time."""
        return (
            self.emit is default_emit
            and self.window.kind != "global"
            and self.window.time != "processing"
        )

    def build(self, ctx: OperatorContext) -> OperatorLogic:
        if self.window.kind == "session":
            return SessionWindowLogic(self, ctx)
        if self.window.kind == "global":
            return GlobalCountLogic(self, ctx)
        return PaneWindowLogic(self, ctx)


def _timestamp(spec: WindowAggregateOp, ctx: OperatorContext) -> Callable[[Any], int] | None:
    if spec.window.time == "processing" or spec.window.kind == "global":
        return None
    ts = spec.input_timestamps or ctx.timestamp_of
    if ts is None and spec.window.time == "event":
        raise GraphValidationError(
            f"step {ctx.step_id!r}: {EVENT_TIME_WITHOUT_TIMESTAMPS}", step_id=ctx.step_id
        )
    return ts  # None: processing time, as the stream has no timestamps


EVENT_TIME_WITHOUT_TIMESTAMPS = (
    "an event-time window needs timestamps: add a timestamp step "
    "upstream (YAML: type: assign_timestamps; Python: Operators.assign_timestamps(...)), "
    "give the window its timestamp field (YAML and Python: timestamp: ts), or use "
    "processing time (YAML: window: {time: processing}; Python: processing_time=True)"
)


class _WindowLogic(OperatorLogic):
    def __init__(self, spec: WindowAggregateOp, ctx: OperatorContext) -> None:
        self.spec = spec
        self.ctx = ctx
        self.key_of = spec.input_key_selector
        self.ts_of = _timestamp(spec, ctx)
        self.agg = spec.aggregate
        self.emit = spec.emit
        self.emit_many = emit_many_of(spec.emit)
        self.lateness = spec.allowed_lateness_ms
        self.bound = MIN_WATERMARK
        """Windows ending at or before ``bound`` are complete."""
        self.backend = ctx.state if ctx.state is not None else MemoryBackend()
        self.clock = ctx.clock
        if self.ts_of is None and spec.window.kind != "global":
            step = spec.window.slide_ms or spec.window.gap_ms or 1
            self.tick_interval_ms = max(1, min(step, MAX_TICK_MS))

    def snapshot_state(self) -> Any:
        return {"bound": self.bound, "fired_until": getattr(self, "fired_until", None)}

    def restore_state(self, states: list[Any]) -> None:
        present = [s for s in states if s is not None]
        if not present:
            return
        self.bound = min(s["bound"] for s in present)
        fired = [s["fired_until"] for s in present if s["fired_until"] is not None]
        if fired and hasattr(self, "fired_until"):
            self.fired_until = min(fired)

    def _timestamps(self, batch: list[Any]) -> tuple[list[Any], list[int], list[Any] | None]:
        """The batch (less records with a bad timestamp, sent to the error policy), its
        timestamps, and its keys when the exchange computed them (None: compute them)."""
        keys = self.input_keys(batch)
        if self.ts_of is None:
            return batch, [self.clock.now_ms()] * len(batch), keys
        kept, stamps = checked_timestamps(self.ts_of, batch, self.ctx.reject)
        if keys is not None and len(kept) != len(batch):
            keys = None  # records were rejected: this batch's keys are computed again
        return kept, stamps, keys

    def _fire(self, bound: int) -> list[Any]:
        raise NotImplementedError  # pragma: no cover

    def on_watermark(self, watermark: int) -> list[Any]:
        if self.ts_of is None and watermark != MAX_WATERMARK:
            return []  # processing-time windows follow the clock, not the watermark
        # Every record with a timestamp <= watermark has arrived: windows ending at
        # or before watermark + 1 are complete.
        bound = MAX_WATERMARK if watermark == MAX_WATERMARK else watermark + 1
        self.bound = max(self.bound, bound)
        return self._fire(self.bound)

    def on_tick(self, now_ms: int) -> list[Any]:
        if self.ts_of is not None:
            return []
        self.bound = max(self.bound, now_ms)
        return self._fire(self.bound)


class PaneWindowLogic(_WindowLogic):
    """Tumbling, sliding and cumulative windows over panes of gcd(size, slide).

    A window ends every ``slide``; it starts ``size`` before its end, or, cumulative,
    where the tumbling window of ``size`` around it starts (``_start``)."""

    def __init__(self, spec: WindowAggregateOp, ctx: OperatorContext) -> None:
        super().__init__(spec, ctx)
        window = spec.window
        self.size = window.size_ms
        self.slide = window.slide_ms or window.size_ms
        self.pane = math.gcd(self.size, self.slide)
        self.cumulative = window.kind == "cumulative" and self.slide < self.size
        size = self.agg.size if self.agg.grows() else None  # collected lists
        self.panes: OrderedTable = self.backend.ordered_table(
            ctx.step_id,
            ctx.subtask_index,
            "panes",
            None if size is None else lambda acc: 1 + size(acc),
        )
        self.fired_until = MIN_WATERMARK
        self.fast = (
            isinstance(self.panes, MemoryOrderedTable)
            and type(self.agg) is Count
            and self.lateness == 0
            and not self.cumulative
        )

    def _start(self, end: int) -> int:
        """The start of the window that ends at ``end``."""
        if self.cumulative:
            return (end - 1) - (end - 1) % self.size
        return end - self.size

    def process(self, batch: list[Any]) -> list[Any]:
        batch, stamps, keys = self._timestamps(batch)
        if self.fast:
            self._count_fast(batch, stamps, keys)
            return []
        pane, slide, size = self.pane, self.slide, self.size
        horizon = self.bound - self.lateness
        fired_until = self.fired_until
        key_of, table, agg = self.key_of, self.panes, self.agg
        late: list[Any] = []
        refire: set[tuple[Any, int]] = set()
        given = repeat(None) if keys is None else keys
        cumulative = self.cumulative
        for record, ts, k in zip(batch, stamps, given, strict=False):
            if cumulative:
                if ts - ts % size + size <= horizon:
                    late.append(record)
                    continue
            else:
                reach = ts + size
                if reach - reach % slide <= horizon:  # its last window is past the lateness
                    late.append(record)
                    continue
            start = ts - ts % pane
            try:  # a record without its key or value goes to the error policy
                key = key_of(record) if keys is None else k
                acc = table.get(start, key)
                acc = agg.add(agg.create() if acc is None else acc, record)
            except Exception as exc:
                self.ctx.reject(record, exc)
                continue
            table.put(start, key, acc)
            if self.lateness:
                end = ts - ts % slide + slide
                while end <= fired_until and self._start(end) <= ts:
                    refire.add((key, end))  # a fired window within the lateness changed
                    end += slide
        if late:
            self.ctx.emit_side("late", late)
        return [self._result(key, end) for key, end in sorted(refire, key=lambda ke: ke[1])]

    def _count_fast(self, batch: list[Any], stamps: list[int], keys: list[Any] | None) -> None:
        # Memory backend, count, no lateness: dict arithmetic only. Entries are
        # accounted per batch (a handful of open panes), not per record.
        table = self.panes
        assert isinstance(table, MemoryOrderedTable)
        by_time = table.by_time
        pane, slide, size = self.pane, self.slide, self.size
        bound = self.bound
        if stamps and min(stamps) < bound:  # some may be late: check each
            keep = []
            late = []
            for i, ts in enumerate(stamps):
                reach = ts + size
                if reach - reach % slide <= bound:
                    late.append(batch[i])
                else:
                    keep.append(i)
            if late:
                self.ctx.emit_side("late", late)
            batch = [batch[i] for i in keep]
            stamps = [stamps[i] for i in keep]
            if keys is not None:
                keys = [keys[i] for i in keep]
        before = sum(map(len, by_time.values()))
        key_of = self.key_of
        if keys is None and batch:
            try:
                keys = list(map(key_of, batch))
            except Exception:  # a record without its key: one by one, to the policy
                keys = None
        if keys is not None and stamps:
            low, high = min(stamps), max(stamps)
            start = low - low % pane
            if high - high % pane == start:  # the whole batch in one pane (usual)
                bucket = by_time.get(start)
                if bucket is None:
                    bucket = by_time[start] = {}
                    heapq.heappush(table.heap, start)
                done = _count_keys(bucket, keys)
                while done < len(keys):  # an unhashable key stopped the count there
                    self.ctx.reject(batch[done], TypeError(f"unhashable key {keys[done]!r}"))
                    done += 1
                    done += _count_keys(bucket, keys[done:])
                batch, stamps, keys = [], [], []
        if keys is None:
            for record, ts in zip(batch, stamps, strict=True):
                start = ts - ts % pane
                bucket = by_time.get(start)
                if bucket is None:
                    bucket = by_time[start] = {}
                    heapq.heappush(table.heap, start)
                try:
                    key = key_of(record)
                    bucket[key] = bucket.get(key, 0) + 1
                except Exception as exc:
                    self.ctx.reject(record, exc)
        else:  # the keys the exchange computed
            for record, ts, key in zip(batch, stamps, keys, strict=True):
                start = ts - ts % pane
                bucket = by_time.get(start)
                if bucket is None:
                    bucket = by_time[start] = {}
                    heapq.heappush(table.heap, start)
                try:
                    bucket[key] = bucket.get(key, 0) + 1
                except Exception as exc:
                    self.ctx.reject(record, exc)
        table.budget.entries += sum(map(len, by_time.values())) - before
        if table.budget.entries > table.budget.limit:
            table.budget.entries -= 1
            table.budget.grow(table.where)

    def _result(self, key: Any, end: int) -> Any:
        agg = self.agg
        acc = None
        first = self._start(end)
        for start in range(first, end, self.pane):
            part = self.panes.get(start, key)
            if part is not None:
                acc = part if acc is None else agg.merge(acc, part)
        return self.emit(key, first, end, agg.result(acc if acc is not None else agg.create()))

    def _fire(self, bound: int) -> list[Any]:
        out: list[Any] = []
        table, agg, emit_many = self.panes, self.agg, self.emit_many
        size, slide, pane, lateness = self.size, self.slide, self.pane, self.lateness
        # Counts of tumbling windows in memory: a window is one pane, its counts as kept.
        one_pane = self.fast and pane == size
        while True:
            first = table.min_time()
            if first is None:
                break
            end = first - first % slide + slide
            if self.fired_until != MIN_WATERMARK:
                end = max(end, self.fired_until + slide)
            if end > bound:
                break
            start = self._start(end)
            if one_pane:
                assert isinstance(table, MemoryOrderedTable)
                counts = table.by_time.get(start)
                if counts:
                    out += emit_many(start, end, counts.items())
            else:
                merged: dict[Any, Any] = {}
                for t, key, acc in table.items_until(end - 1):
                    if t < start:
                        continue
                    previous = merged.get(key)
                    merged[key] = acc if previous is None else agg.merge(previous, acc)
                result = agg.result
                out += emit_many(start, end, [(k, result(acc)) for k, acc in merged.items()])
            self.fired_until = end
            # Drop the panes that no later window needs and that are past the lateness.
            unneeded = self._start(end + slide)
            if lateness:
                unneeded = min(unneeded, self._start(bound - lateness - pane + 1))
            table.drop_until(unneeded - 1)
        return out


def _count_keys(bucket: dict[Any, int], keys: list[Any]) -> int:
    """Add one to ``bucket[key]`` for each key, in one C-level loop; the number of
    keys counted, which stops short at the first key that cannot be hashed."""
    try:
        count_elements(bucket, keys)
        return len(keys)
    except TypeError:
        for index, key in enumerate(keys):
            try:
                hash(key)
            except TypeError:
                return index
        raise


class SessionWindowLogic(_WindowLogic):
    """Gap-based sessions per key, merged as records bridge them."""

    def __init__(self, spec: WindowAggregateOp, ctx: OperatorContext) -> None:
        super().__init__(spec, ctx)
        self.gap = spec.window.gap_ms
        agg = self.agg
        weigh = None
        if agg.grows():  # collected lists count against the entry cap, element by element
            size = agg.size

            def weigh(sessions: list[list[Any]]) -> int:
                return 1 + sum(size(session[2]) for session in sessions)

        self.sessions: StateTable = self.backend.table(
            ctx.step_id, ctx.subtask_index, "sessions", weigh
        )
        self.timers: OrderedTable = self.backend.ordered_table(
            ctx.step_id, ctx.subtask_index, "ends"
        )

    def process(self, batch: list[Any]) -> list[Any]:
        batch, stamps, keys = self._timestamps(batch)
        late: list[Any] = []
        refire: list[Any] = []
        agg, gap = self.agg, self.gap
        given = repeat(None) if keys is None else keys
        for record, ts, k in zip(batch, stamps, given, strict=False):
            if ts + gap + self.lateness <= self.bound:
                late.append(record)
                continue
            start, end = ts, ts + gap
            try:
                key = self.key_of(record) if keys is None else k
                sessions: list[list[Any]] = self.sessions.get(key) or []
                touched = [s for s in sessions if s[0] < end and start < s[1]]
                # The record joins the first session it touches in place (no copy of
                # a collected list per record); only sessions it bridges are merged.
                acc = agg.add(touched[0][2] if touched else agg.create(), record)
            except Exception as exc:
                self.ctx.reject(record, exc)
                continue
            kept = [s for s in sessions if not (s[0] < end and start < s[1])]
            for i, (s_start, s_end, s_acc, _) in enumerate(touched):
                self.timers.delete(s_end, key)
                start, end = min(start, s_start), max(end, s_end)
                if i:
                    acc = agg.merge(acc, s_acc)
            merged = [start, end, acc, False]
            kept.append(merged)
            if end <= self.bound:
                refire.append(self.emit(key, start, end, agg.result(acc)))
                merged[3] = True
                self.timers.put(end + self.lateness, key, None)
            else:
                self.timers.put(end, key, None)
            self.sessions.put(key, kept)
        if late:
            self.ctx.emit_side("late", late)
        return refire

    def _fire(self, bound: int) -> list[Any]:
        out: list[Any] = []
        lateness = self.lateness
        for _, key, _ in self.timers.pop_until(bound):
            sessions = self.sessions.get(key)
            if not sessions:
                continue
            kept = []
            for session in sessions:
                start, end, acc, fired = session
                if end > bound:
                    kept.append(session)  # still open
                elif not fired:
                    out.append(self.emit(key, start, end, self.agg.result(acc)))
                    if lateness:
                        session[3] = True
                        self.timers.put(end + lateness, key, None)
                        kept.append(session)
                elif end + lateness > bound:
                    kept.append(session)  # fired, still within the allowed lateness
            if kept:
                self.sessions.put(key, kept)
            else:
                self.sessions.delete(key)
        return out


class GlobalCountLogic(_WindowLogic):
    """One window per key that fires every ``count`` records; partial windows fire at the end."""

    def __init__(self, spec: WindowAggregateOp, ctx: OperatorContext) -> None:
        super().__init__(spec, ctx)
        self.count = spec.window.count
        size = self.agg.size if self.agg.grows() else None
        self.accs: StateTable = self.backend.table(
            ctx.step_id,
            ctx.subtask_index,
            "global",
            None if size is None else lambda entry: 1 + size(entry[0]),
        )
        self.fired = 0

    def process(self, batch: list[Any]) -> list[Any]:
        out = []
        agg = self.agg
        keys = self.input_keys(batch)
        given = repeat(None) if keys is None else keys
        for record, k in zip(batch, given, strict=False):
            try:
                key = self.key_of(record) if keys is None else k
                entry = self.accs.get(key)
                acc, n = (agg.create(), 0) if entry is None else entry
                acc, n = agg.add(acc, record), n + 1
            except Exception as exc:
                self.ctx.reject(record, exc)
                continue
            if n >= self.count:
                out.append(self.emit(key, self.fired, self.fired + n, agg.result(acc)))
                self.accs.delete(key)
            else:
                self.accs.put(key, (acc, n))
        return out

    def on_watermark(self, watermark: int) -> list[Any]:
        if watermark != MAX_WATERMARK:
            return []
        out = [self.emit(key, 0, n, self.agg.result(acc)) for key, (acc, n) in self.accs.items()]
        for key, _ in list(self.accs.items()):
            self.accs.delete(key)
        return out

    def on_tick(self, now_ms: int) -> list[Any]:
        return []
