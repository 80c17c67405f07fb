"""Record rules: each judges every record of a batch (schema, not_null, range,
in_set, regex, freshness)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from reflow.errors import ConfigError
from reflow.graph.durations import DurationLike
from reflow.operators.base import OperatorContext
from reflow.operators.quality.base import (
    MISSING,
    NULL_TYPES,
    Columns,
    Expectation,
    RuleLogic,
    duration,
    fields_of,
    is_null,
)
from reflow.operators.quality.kernel import Inliner
from reflow.operators.quality.patterns import Pattern

_NUMBERS = frozenset({int, float})

# schema ------------------------------------------------------------

_TYPES: Mapping[str, tuple[type, ...]] = {
    "string": (str,),
    "str": (str,),
    "int": (int,),
    "integer": (int,),
    "float": (float,),
    "number": (int, float),
    "bool": (bool,),
    "boolean": (bool,),
    "list": (list, tuple),
    "array": (list, tuple),
    "dict": (dict,),
    "object": (dict,),
    "bytes": (bytes,),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class SchemaRule(Expectation):
    types: Mapping[str, str] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    check: ClassVar[str] = "schema"

    def __post_init__(self) -> None:
        Expectation.__post_init__(self)
        for name, type_name in self.types.items():
            if type_name not in _TYPES:
                raise ConfigError(
                    f"rule {self.name!r}: field {name!r} has unknown type {type_name!r}; "
                    "use one of " + ", ".join(sorted(_TYPES))
                )
        if not self.types and not self.required:
            raise ConfigError(f"rule {self.name!r}: schema needs 'types' or 'required'")

    def build(self, ctx: OperatorContext) -> RuleLogic:
        return _SchemaLogic(self)


class _SchemaLogic(RuleLogic):
    def __init__(self, rule: SchemaRule) -> None:
        self.required = rule.required
        self.types = [(f, NULL_TYPES.union(_TYPES[t]), t) for f, t in rule.types.items()]

    def inline(self, inliner: Inliner) -> list[str]:
        conditions = [inliner.not_null(name) for name in self.required]
        for name, allowed, _ in self.types:
            conditions.append(inliner.typed(name, allowed - NULL_TYPES))
        return conditions

    def failures(self, batch: list[Any], columns: Columns) -> dict[int, str]:
        bad: dict[int, str] = {}
        for name in self.required:
            if NULL_TYPES.isdisjoint(columns.kinds(name)):
                continue
            for i, v in enumerate(columns.of(name)):
                if is_null(v):
                    bad.setdefault(i, f"required field {name!r} is {v!r}")
        for name, allowed, type_name in self.types:
            if columns.kinds(name).issubset(allowed):
                continue
            for i, v in enumerate(columns.of(name)):
                if not is_null(v) and type(v) not in allowed:
                    bad.setdefault(
                        i, f"field {name!r} is {type(v).__name__} {v!r:.60}, not {type_name}"
                    )
        return bad


def schema(
    types: Mapping[str, str] | None = None,
    *,
    required: Iterable[str] = (),
    name: str = "schema",
    **options: Any,
) -> SchemaRule:
    """Fields of ``types`` (``{"price": "number", ...}``) have that type when not
    null; ``required`` fields are present and not null."""
    return SchemaRule(
        name=name,
        types=dict(types or {}),
        required=tuple(required),
        **options,
    )


# not_null ------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class NotNullRule(Expectation):
    fields: tuple[str, ...]
    check: ClassVar[str] = "not_null"

    def build(self, ctx: OperatorContext) -> RuleLogic:
        return _NotNullLogic(self.fields)


class _NotNullLogic(RuleLogic):
    def __init__(self, fields: tuple[str, ...]) -> None:
        self.fields = fields

    def inline(self, inliner: Inliner) -> list[str]:
        return [inliner.not_null(name) for name in self.fields]

    def failures(self, batch: list[Any], columns: Columns) -> dict[int, str]:
        bad: dict[int, str] = {}
        for name in self.fields:
            if NULL_TYPES.isdisjoint(columns.kinds(name)):
                continue
            for i, v in enumerate(columns.of(name)):
                if is_null(v):
                    bad.setdefault(i, f"{name!r} is {'missing' if v is MISSING else 'null'}")
        return bad


def not_null(*fields: str, name: str | None = None, **options: Any) -> NotNullRule:
    """Each of ``fields`` is present and not None."""
    names = fields_of(fields, "not_null")
    return NotNullRule(name=name or f"not_null:{','.join(names)}", fields=names, **options)


# range ------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RangeRule(Expectation):
    field: str
    min: float | None = None
    max: float | None = None
    check: ClassVar[str] = "range"

    def __post_init__(self) -> None:
        Expectation.__post_init__(self)
        for bound in (self.min, self.max):
            if bound is not None and (
                isinstance(bound, bool) or not isinstance(bound, int | float)
            ):
                raise ConfigError(f"rule {self.name!r}: min and max are numbers, not {bound!r}")
        if self.min is None and self.max is None:
            raise ConfigError(f"rule {self.name!r}: range needs 'min', 'max' or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ConfigError(f"rule {self.name!r}: min {self.min} is above max {self.max}")

    def build(self, ctx: OperatorContext) -> RuleLogic:
        return _RangeLogic(self)


class _RangeLogic(RuleLogic):
    def __init__(self, rule: RangeRule) -> None:
        self.name = rule.field
        self.low = -math.inf if rule.min is None else rule.min
        self.high = math.inf if rule.max is None else rule.max

    def inline(self, inliner: Inliner) -> list[str]:
        value = inliner.field(self.name)
        low, high = inliner.bind(self.low), inliner.bind(self.high)
        # An int or a float (not bool, which the exact check calls not a number),
        # within the bounds; NaN fails both comparisons.
        # (two comparisons, not one chained: each compares and jumps in one step)
        within = f"{low} <= {value} and {value} <= {high}"
        return [
            inliner.typed(self.name, _NUMBERS),
            f"{value} is None or {within}" if inliner.nullable(self.name) else within,
        ]

    def failures(self, batch: list[Any], columns: Columns) -> dict[int, str]:
        values = columns.of(self.name)
        low, high = self.low, self.high
        kinds = columns.kinds(self.name)
        if kinds.issubset(_NUMBERS) and low <= min(values) and max(values) <= high:
            if float not in kinds:
                return {}
            total = sum(values)
            if total == total:  # no NaN (nor inf - inf): every value is in range
                return {}
        bad: dict[int, str] = {}
        for i, v in enumerate(values):
            if is_null(v):
                continue
            if isinstance(v, bool) or not isinstance(v, int | float):
                bad[i] = f"{self.name!r} is {v!r:.60}, not a number"
            elif v != v:
                bad[i] = f"{self.name!r} is NaN"
            elif v < low:
                bad[i] = f"{self.name!r} = {v!r} is below the minimum {low}"
            elif v > high:
                bad[i] = f"{self.name!r} = {v!r} is above the maximum {high}"
        return bad


def in_range(
    field: str,
    *,
    min: float | None = None,
    max: float | None = None,
    name: str | None = None,
    **options: Any,
) -> RangeRule:
    """``field`` is a number within [min, max] (nulls pass: use ``not_null`` too)."""
    return RangeRule(name=name or f"range:{field}", field=field, min=min, max=max, **options)


# in_set ------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class InSetRule(Expectation):
    field: str
    values: frozenset[Any]
    check: ClassVar[str] = "in_set"

    def __post_init__(self) -> None:
        Expectation.__post_init__(self)
        if not self.values:
            raise ConfigError(f"rule {self.name!r}: in_set needs a non-empty 'values' list")

    def build(self, ctx: OperatorContext) -> RuleLogic:
        return _InSetLogic(self.field, self.values)


class _InSetLogic(RuleLogic):
    def __init__(self, name: str, allowed: frozenset[Any]) -> None:
        self.name = name
        self.allowed = allowed | {None, MISSING}

    def inline(self, inliner: Inliner) -> list[str]:
        return [f"{inliner.field(self.name)} in {inliner.bind(self.allowed)}"]

    def failures(self, batch: list[Any], columns: Columns) -> dict[int, str]:
        values = columns.of(self.name)
        allowed = self.allowed
        try:
            if allowed.issuperset(values):
                return {}
        except TypeError:
            pass  # an unhashable value: look one by one
        bad: dict[int, str] = {}
        for i, v in enumerate(values):
            try:
                ok = v in allowed
            except TypeError:
                ok = False
            if not ok:
                bad[i] = f"{self.name!r} = {v!r:.60} is not one of the allowed values"
        return bad


def in_set(
    field: str, values: Iterable[Any], *, name: str | None = None, **options: Any
) -> InSetRule:
    """``field`` is one of ``values`` (nulls pass)."""
    return InSetRule(
        name=name or f"in_set:{field}", field=field, values=frozenset(values), **options
    )


# regex ------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RegexRule(Expectation):
    field: str
    pattern: str
    check: ClassVar[str] = "regex"

    def __post_init__(self) -> None:
        Expectation.__post_init__(self)
        Pattern(self.pattern, self.name)  # refuse a bad pattern when the job is built

    def build(self, ctx: OperatorContext) -> RuleLogic:
        return _RegexLogic(self.field, Pattern(self.pattern, self.name))


class _RegexLogic(RuleLogic):
    def __init__(self, name: str, pattern: Pattern) -> None:
        self.name = name
        self.pattern = pattern

    def inline(self, inliner: Inliner) -> list[str] | None:
        if not self.pattern.batched:
            return None
        values = inliner.column(self.name)
        inliner.after(f"{inliner.bind(self.pattern.all_match)}({values})")
        return []

    def failures(self, batch: list[Any], columns: Columns) -> dict[int, str]:
        values = columns.of(self.name)
        if self.pattern.all_match(values):
            return {}
        matches = self.pattern.matches
        bad: dict[int, str] = {}
        for i, v in enumerate(values):
            if type(v) is not str:
                if not is_null(v):
                    bad[i] = f"{self.name!r} is {type(v).__name__} {v!r:.60}, not a string"
            elif not matches(v):
                bad[i] = f"{self.name!r} = {v!r:.60} does not match the pattern"
        return bad


def matches(field: str, pattern: str, *, name: str | None = None, **options: Any) -> RegexRule:
    """``field`` is a string that ``pattern`` (RE2 syntax) matches whole (nulls pass)."""
    return RegexRule(name=name or f"regex:{field}", field=field, pattern=pattern, **options)


# freshness ------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class FreshnessRule(Expectation):
    max_lag_ms: int
    field: str | None = None
    check: ClassVar[str] = "freshness"

    def build(self, ctx: OperatorContext) -> RuleLogic:
        stamp: Callable[[Any], Any]
        if self.field is not None:
            name = self.field

            def stamp(record: Any) -> Any:
                return record[name]

        elif ctx.timestamp_of is not None:
            stamp = ctx.timestamp_of
        else:
            raise ConfigError(
                f"rule {self.name!r}: freshness needs event times: give 'field' (epoch "
                "milliseconds) or assign timestamps before this step"
            )
        return _FreshnessLogic(self, stamp, ctx)


class _FreshnessLogic(RuleLogic):
    measures = True

    def __init__(
        self, rule: FreshnessRule, stamp: Callable[[Any], Any], ctx: OperatorContext
    ) -> None:
        self.max_lag = rule.max_lag_ms
        self.stamp = stamp
        self.clock = ctx.clock
        self.lag_ms: float | None = None

    def failures(self, batch: list[Any], columns: Columns) -> dict[int, str]:
        now = self.clock.now_ms()
        stamp = self.stamp
        try:
            oldest = min(stamp(r) for r in batch)
            self.lag_ms = now - oldest
            if now - oldest <= self.max_lag:
                return {}
        except (KeyError, TypeError, IndexError, ValueError):
            pass
        bad: dict[int, str] = {}
        for i, record in enumerate(batch):
            try:
                lag = now - stamp(record)
            except (KeyError, TypeError, IndexError, ValueError) as exc:
                bad[i] = f"no event time ({type(exc).__name__}: {exc})"
                continue
            if lag > self.max_lag:
                bad[i] = (
                    f"event time lags {lag / 1000:.3f} s behind, over {self.max_lag / 1000:g} s"
                )
        return bad

    def measure(self) -> float | None:
        return self.lag_ms


def fresh(
    *, max_lag: DurationLike, field: str | None = None, name: str | None = None, **options: Any
) -> FreshnessRule:
    """Each record's event time is at most ``max_lag`` behind the clock (its
    timestamp from ``field``, epoch ms, or from the stream's timestamp assigner)."""
    return FreshnessRule(
        name=name or "freshness",
        max_lag_ms=duration(max_lag, "freshness: max_lag"),
        field=field,
        **options,
    )
