"""Rules over windows of records: ``unique`` (a record rule that remembers a
window's keys), ``volume`` and ``drift`` (judged when their window closes)."""

from __future__ import annotations

import abc
import bisect
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from reflow.errors import ConfigError
from reflow.eventtime.watermarks import MAX_WATERMARK
from reflow.graph.durations import DurationLike
from reflow.operators.base import OperatorContext
from reflow.operators.quality.base import (
    Columns,
    Expectation,
    RuleLogic,
    duration,
    fields_of,
)

# Empty windows a volume rule judges at most per watermark step (a far jump
# after a long outage is reported as one count of empty windows, not a loop).
MAX_EMPTY_WINDOWS = 10_000


class _Windows:
    """Where a record's window starts: by event time when the step sees timestamps,
    else by the processing clock."""

    def __init__(self, ctx: OperatorContext, size_ms: int) -> None:
        self.size = size_ms
        self.timestamp_of = ctx.timestamp_of
        self.clock = ctx.clock

    @property
    def event_time(self) -> bool:
        return self.timestamp_of is not None

    def starts(self, batch: list[Any]) -> list[int]:
        size = self.size
        if self.timestamp_of is None:
            now = self.clock.now_ms()
            return [now - now % size] * len(batch)
        stamp = self.timestamp_of
        return [(t := stamp(r)) - t % size for r in batch]


# unique ------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class UniqueRule(Expectation):
    fields: tuple[str, ...]
    window_ms: int
    check: ClassVar[str] = "unique"

    def build(self, ctx: OperatorContext) -> RuleLogic:
        return _UniqueLogic(self.fields, _Windows(ctx, self.window_ms))


class _UniqueLogic(RuleLogic):
    def __init__(self, fields: tuple[str, ...], windows: _Windows) -> None:
        self.fields = fields
        self.windows = windows
        self.seen: dict[int, set[Any]] = {}
        self.tick_ms = None if windows.event_time else windows.size

    def failures(self, batch: list[Any], columns: Columns) -> dict[int, str]:
        if len(self.fields) == 1:
            keys = columns.of(self.fields[0])
        else:
            keys = list(zip(*(columns.of(f) for f in self.fields), strict=True))
        bad: dict[int, str] = {}
        seen = self.seen
        size = self.windows.size
        for i, (start, key) in enumerate(zip(self.windows.starts(batch), keys, strict=True)):
            window = seen.get(start)
            if window is None:
                window = seen[start] = set()
            try:
                if key in window:
                    bad[i] = (
                        f"{'/'.join(self.fields)} = {key!r:.60} came before in window "
                        f"[{start}, {start + size})"
                    )
                else:
                    window.add(key)
            except TypeError:
                bad[i] = f"{'/'.join(self.fields)} = {key!r:.60} cannot be compared (unhashable)"
        return bad

    def advance(self, time_ms: int) -> None:
        size = self.windows.size
        for start in [s for s in self.seen if s + size <= time_ms]:
            del self.seen[start]

    def snapshot(self) -> Any:
        return {start: list(keys) for start, keys in self.seen.items()}

    def restore(self, states: list[Any]) -> None:
        for state in states:
            for start, keys in (state or {}).items():
                self.seen.setdefault(start, set()).update(
                    tuple(k) if isinstance(k, list) else k for k in keys
                )


def unique(
    *fields: str, window: DurationLike, name: str | None = None, **options: Any
) -> UniqueRule:
    """No two records of a ``window`` (tumbling; event time when the stream has
    timestamps, else processing time) have the same values of ``fields``."""
    names = fields_of(fields, "unique")
    return UniqueRule(
        name=name or f"unique:{','.join(names)}",
        fields=names,
        window_ms=duration(window, "unique: window"),
        **options,
    )


# window rules: volume and drift ------------------------------------------------------------


class _WindowRule(RuleLogic):
    """Keeps per-window data; windows are judged in order when time passes them."""

    def __init__(self, windows: _Windows) -> None:
        self.windows = windows
        self.open: dict[int, Any] = {}
        self.next_start: int | None = None
        self.tick_ms = None if windows.event_time else windows.size

    def observe(self, batch: list[Any], columns: Columns) -> None:
        starts = self.windows.starts(batch)
        if self.next_start is None and starts:
            self.next_start = min(starts)
        self.add(batch, starts, columns)

    @abc.abstractmethod
    def add(self, batch: list[Any], starts: list[int], columns: Columns) -> None: ...

    @abc.abstractmethod
    def judge(self, start: int, data: Any) -> tuple[bool, float, str] | None: ...

    def close_until(self, time_ms: int) -> list[tuple[bool, float, str]]:
        size = self.windows.size
        start = self.next_start
        if start is None:
            return []
        if time_ms >= MAX_WATERMARK:  # end of input: up to the last window with data
            if not self.open:
                return []
            time_ms = max(self.open) + size
        results = []
        judged = 0
        while start + size <= time_ms:
            if judged >= MAX_EMPTY_WINDOWS and not any(s >= start for s in self.open):
                start = time_ms - time_ms % size  # skip the rest of a long gap
                break
            verdict = self.judge(start, self.open.pop(start, None))
            if verdict is not None:
                results.append(verdict)
            judged += 1
            start += size
        self.next_start = start
        return results

    def finish(self) -> list[tuple[bool, float, str]]:
        return self.close_until(MAX_WATERMARK)

    def snapshot(self) -> Any:
        return {"open": dict(self.open), "next": self.next_start}

    def restore(self, states: list[Any]) -> None:
        starts = [s["next"] for s in states if s and s.get("next") is not None]
        self.next_start = min(starts) if starts else None
        for state in states:
            for start, data in (state or {}).get("open", {}).items():
                self.merge(start, data)

    @abc.abstractmethod
    def merge(self, start: int, data: Any) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class VolumeRule(Expectation):
    window_ms: int
    min: int | None = None
    max: int | None = None
    baseline: int | None = None
    """Judge against the mean of this many previous windows."""
    tolerance: float = 0.5
    """With ``baseline``: the allowed relative difference from the mean."""
    check: ClassVar[str] = "volume"
    windowed: ClassVar[bool] = True

    def __post_init__(self) -> None:
        Expectation.__post_init__(self)
        if self.min is None and self.max is None and self.baseline is None:
            raise ConfigError(f"rule {self.name!r}: volume needs 'min', 'max' or 'baseline'")
        if self.baseline is not None and self.baseline < 1:
            raise ConfigError(f"rule {self.name!r}: baseline is a number of windows >= 1")
        if self.tolerance <= 0:
            raise ConfigError(f"rule {self.name!r}: tolerance must be > 0")

    def build(self, ctx: OperatorContext) -> RuleLogic:
        return _VolumeLogic(self, _Windows(ctx, self.window_ms))


class _VolumeLogic(_WindowRule):
    def __init__(self, rule: VolumeRule, windows: _Windows) -> None:
        super().__init__(windows)
        self.rule = rule
        self.history: deque[int] = deque(maxlen=rule.baseline or 1)

    def add(self, batch: list[Any], starts: list[int], columns: Columns) -> None:
        counts = self.open
        if starts[0] == starts[-1] and not self.windows.event_time:
            counts[starts[0]] = counts.get(starts[0], 0) + len(starts)
            return
        for start in starts:
            counts[start] = counts.get(start, 0) + 1

    def merge(self, start: int, data: Any) -> None:
        self.open[start] = self.open.get(start, 0) + data

    def judge(self, start: int, data: Any) -> tuple[bool, float, str] | None:
        rule = self.rule
        count = data or 0
        span = f"window [{start}, {start + self.windows.size})"
        problems = []
        if rule.min is not None and count < rule.min:
            problems.append(f"{count} records in {span}, fewer than {rule.min}")
        if rule.max is not None and count > rule.max:
            problems.append(f"{count} records in {span}, more than {rule.max}")
        if rule.baseline is not None:
            full = len(self.history) == self.history.maxlen
            mean = sum(self.history) / len(self.history) if self.history else 0.0
            self.history.append(count)
            if not full:
                if not problems:
                    return None  # the baseline is still filling
            elif abs(count - mean) > rule.tolerance * mean:
                problems.append(
                    f"{count} records in {span}, {abs(count - mean) / max(mean, 1e-9):.0%} off "
                    f"the mean {mean:.1f} of the previous {rule.baseline} windows "
                    f"(tolerance {rule.tolerance:.0%})"
                )
        return (not problems, float(count), "; ".join(problems))

    def snapshot(self) -> Any:
        state = _WindowRule.snapshot(self)
        state["history"] = list(self.history)
        return state

    def restore(self, states: list[Any]) -> None:
        _WindowRule.restore(self, states)
        for state in states[:1]:
            self.history.extend((state or {}).get("history", ()))


def volume(
    *,
    window: DurationLike,
    min: int | None = None,
    max: int | None = None,
    baseline: int | None = None,
    tolerance: float = 0.5,
    name: str | None = None,
    **options: Any,
) -> VolumeRule:
    """Records per ``window`` within [min, max], and/or within ``tolerance`` of the
    mean of the previous ``baseline`` windows. Empty windows count as 0."""
    return VolumeRule(
        name=name or "volume",
        window_ms=duration(window, "volume: window"),
        min=min,
        max=max,
        baseline=baseline,
        tolerance=tolerance,
        **options,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class DriftRule(Expectation):
    field: str
    window_ms: int
    threshold: float = 0.2
    """PSI above this is a drift (0.1: small shift, 0.2: significant, by convention)."""
    bins: int = 10
    reference_windows: int = 1
    """The first this many windows make the reference distribution."""
    min_records: int = 50
    """Windows with fewer values are not judged."""
    check: ClassVar[str] = "drift"
    windowed: ClassVar[bool] = True

    def __post_init__(self) -> None:
        Expectation.__post_init__(self)
        if self.threshold <= 0 or self.bins < 2 or self.reference_windows < 1:
            raise ConfigError(
                f"rule {self.name!r}: drift needs threshold > 0, bins >= 2 and "
                "reference_windows >= 1"
            )

    def build(self, ctx: OperatorContext) -> RuleLogic:
        return _DriftLogic(self, _Windows(ctx, self.window_ms))


def psi(reference: Sequence[float], edges: Sequence[float], values: Sequence[float]) -> float:
    """The population stability index of ``values`` against ``reference``, both
    binned by ``edges`` (sum over bins of (a - e) * ln(a / e), shares floored at 1e-4)."""
    bins = len(edges) + 1

    def shares(data: Sequence[float]) -> list[float]:
        counts = [0] * bins
        for v in data:
            counts[bisect.bisect_right(edges, v)] += 1
        total = len(data)
        return [max(c / total, 1e-4) for c in counts]

    expected, actual = shares(reference), shares(values)
    return sum((a - e) * math.log(a / e) for a, e in zip(actual, expected, strict=True))


class _DriftLogic(_WindowRule):
    def __init__(self, rule: DriftRule, windows: _Windows) -> None:
        super().__init__(windows)
        self.rule = rule
        self.reference: list[float] = []
        self.reference_windows = 0
        self.edges: list[float] | None = None

    def add(self, batch: list[Any], starts: list[int], columns: Columns) -> None:
        values = columns.of(self.rule.field)
        for start, v in zip(starts, values, strict=True):
            if isinstance(v, int | float) and not isinstance(v, bool) and v == v:
                window = self.open.get(start)
                if window is None:
                    window = self.open[start] = []
                window.append(float(v))

    def merge(self, start: int, data: Any) -> None:
        self.open.setdefault(start, []).extend(data)

    def judge(self, start: int, data: Any) -> tuple[bool, float, str] | None:
        rule = self.rule
        values = data or []
        if self.edges is None:
            self.reference.extend(values)
            self.reference_windows += 1
            enough = len(self.reference) >= rule.min_records
            if self.reference_windows >= rule.reference_windows and enough:
                ordered = sorted(self.reference)
                cut = [ordered[len(ordered) * i // rule.bins] for i in range(1, rule.bins)]
                self.edges = sorted(set(cut))
            return None
        if len(values) < rule.min_records:
            return None
        index = psi(self.reference, self.edges, values)
        span = f"window [{start}, {start + self.windows.size})"
        if index > rule.threshold:
            return (
                False,
                index,
                f"{rule.field!r} drifted in {span}: PSI {index:.3f} over {rule.threshold:g} "
                f"against the reference ({len(values)} values)",
            )
        return (True, index, "")

    def snapshot(self) -> Any:
        state = _WindowRule.snapshot(self)
        state.update(reference=self.reference, windows=self.reference_windows, edges=self.edges)
        return state

    def restore(self, states: list[Any]) -> None:
        _WindowRule.restore(self, states)
        for state in states[:1]:
            if state:
                self.reference = list(state.get("reference", []))
                self.reference_windows = state.get("windows", 0)
                self.edges = state.get("edges")


def drift(
    field: str,
    *,
    window: DurationLike,
    threshold: float = 0.2,
    bins: int = 10,
    reference_windows: int = 1,
    min_records: int = 50,
    name: str | None = None,
    **options: Any,
) -> DriftRule:
    """The distribution of numeric ``field`` per ``window`` stays within PSI
    ``threshold`` of the first ``reference_windows`` windows' distribution."""
    return DriftRule(
        name=name or f"drift:{field}",
        field=field,
        window_ms=duration(window, "drift: window"),
        threshold=threshold,
        bins=bins,
        reference_windows=reference_windows,
        min_records=min_records,
        **options,
    )
