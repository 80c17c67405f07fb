"""What every data-quality rule is made of: the expectation (frozen, picklable), its
per-subtask logic, and its results (``RuleStats``)."""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from reflow.errors import ConfigError, ExecutionError, ReflowError
from reflow.graph.durations import DurationLike, millis
from reflow.operators.base import OperatorContext

if TYPE_CHECKING:
    from reflow.operators.quality.kernel import Inliner

WARN, DROP, FAIL = "warn", "drop", "fail"
ACTIONS = (WARN, DROP, FAIL)
# How long a critical rule keeps /health DEGRADED after its last violation.
DEFAULT_HOLD_MS = 5 * 60_000

MISSING: Any = type("Missing", (), {"__repr__": lambda self: "<missing>"})()
"""The value of a field a record does not have."""


class QualityViolation(Exception):
    """A record broke a rule; dead-letter entries name the rule (``rule``)."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"quality rule {rule!r}: {message}")
        self.rule = rule


class QualityError(ExecutionError):
    """A rule with action ``fail`` was broken: the job fails with it."""


@dataclass(slots=True)
class RuleStats:
    """One rule's results in one subtask (a snapshot copies them)."""

    check: str
    critical: bool
    hold_ms: int
    passed: int = 0
    failed: int = 0
    last_failed_ms: int | None = None
    value: float | None = None
    """The rule's latest measure: freshness lag (ms), volume (records in the last
    window), drift (the last window's PSI); None for other rules."""

    def copy(self) -> RuleStats:
        return RuleStats(
            self.check,
            self.critical,
            self.hold_ms,
            self.passed,
            self.failed,
            self.last_failed_ms,
            self.value,
        )

    def breached(self, now_ms: int) -> bool:
        """True while a violation is younger than ``hold_ms``."""
        return self.last_failed_ms is not None and now_ms - self.last_failed_ms < self.hold_ms

    @staticmethod
    def combine(parts: Sequence[RuleStats]) -> RuleStats:
        """The rule over several subtasks: counts summed, the latest failure, the
        largest measure."""
        first = parts[0]
        failures = [p.last_failed_ms for p in parts if p.last_failed_ms is not None]
        values = [p.value for p in parts if p.value is not None]
        return RuleStats(
            first.check,
            first.critical,
            first.hold_ms,
            sum(p.passed for p in parts),
            sum(p.failed for p in parts),
            max(failures) if failures else None,
            max(values) if values else None,
        )


# -- expectations -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Expectation(abc.ABC):
    """A named rule with an action (``warn``, ``drop`` or ``fail``)."""

    name: str
    action: str = WARN
    critical: bool = False
    hold_ms: int = DEFAULT_HOLD_MS

    check: ClassVar[str] = ""
    windowed: ClassVar[bool] = False
    """Judges windows, not records (``drop`` does not apply)."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"{self.check}: a rule needs a non-empty name")
        if self.action not in ACTIONS:
            raise ConfigError(
                f"rule {self.name!r}: unknown action {self.action!r}; use one of "
                + ", ".join(ACTIONS)
            )
        if self.windowed and self.action == DROP:
            raise ConfigError(
                f"rule {self.name!r}: {self.check} judges windows, not records, so "
                "action 'drop' does not apply; use 'warn' or 'fail'"
            )
        if self.hold_ms < 0:
            raise ConfigError(f"rule {self.name!r}: hold must be >= 0")

    @abc.abstractmethod
    def build(self, ctx: OperatorContext) -> RuleLogic:
        """The rule's logic for one subtask."""


class RuleLogic:
    """What a subtask runs for one rule."""

    tick_ms: int | None = None
    measures: ClassVar[bool] = False
    """True when ``measure()`` gives a value after each batch (freshness lag)."""

    def failures(self, batch: list[Any], columns: Columns) -> dict[int, str]:
        """Record rules: index -> message of each violating record of ``batch``."""
        return {}

    def inline(self, inliner: Inliner) -> list[str] | None:
        """Record rules: conditions on one record's fields (reflow's templates over
        ``inliner``'s names) that all hold exactly when the record passes, for the
        batch pre-check (``quality/kernel.py``); None when the rule has none."""
        return None

    def observe(self, batch: list[Any], columns: Columns) -> None:
        """Window rules: take the batch's records into their windows."""

    def close_until(self, time_ms: int) -> list[tuple[bool, float, str]]:
        """Window rules: judge the windows that end at or before ``time_ms``:
        (passed, measure, message) each."""
        return []

    def finish(self) -> list[tuple[bool, float, str]]:
        """Window rules at end of input: judge the windows still open."""
        return []

    def measure(self) -> float | None:
        """The rule's latest measure, for record rules that keep one (freshness)."""
        return None

    def advance(self, time_ms: int) -> None:
        """Record rules with windows (unique): forget windows ending before ``time_ms``."""

    def snapshot(self) -> Any:
        return None

    def restore(self, states: list[Any]) -> None:
        pass


def _get(record: Any, name: str) -> Any:
    try:
        return record[name]
    except (KeyError, TypeError, IndexError):
        return MISSING


class Columns:
    """One batch's field values and value types, computed once for all the rules of
    a step (``MISSING`` where a record has no such field)."""

    __slots__ = ("_kinds", "_values", "batch")

    def __init__(self, batch: list[Any]) -> None:
        self.batch = batch
        self._values: dict[str, list[Any]] = {}
        self._kinds: dict[str, set[type]] = {}

    def of(self, name: str) -> list[Any]:
        values = self._values.get(name)
        if values is None:
            try:
                values = [r[name] for r in self.batch]
            except (KeyError, TypeError, IndexError):
                values = [_get(r, name) for r in self.batch]
            self._values[name] = values
        return values

    def kinds(self, name: str) -> set[type]:
        """The types of the field's values (``NULL_TYPES`` members for nulls)."""
        kinds = self._kinds.get(name)
        if kinds is None:
            kinds = self._kinds[name] = set(map(type, self.of(name)))
        return kinds


NULL_TYPES = frozenset({type(None), type(MISSING)})


def is_null(value: Any) -> bool:
    return value is None or value is MISSING


def fields_of(value: str | Iterable[str], what: str) -> tuple[str, ...]:
    names = (value,) if isinstance(value, str) else tuple(value)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ConfigError(f"{what}: give one or more field names, not {value!r}")
    return names


def duration(value: DurationLike, what: str) -> int:
    try:
        ms = millis(value, what)
    except ReflowError as exc:
        raise ConfigError(str(exc)) from None
    if ms <= 0:
        raise ConfigError(f"{what}: must be > 0")
    return ms
