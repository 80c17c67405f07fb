"""The quality step: runs a list of expectations on its input, keeps their
results for the metrics, and acts on violations (warn, drop, fail)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from reflow.errors import ConfigError
from reflow.operators.base import OperatorContext, OperatorLogic, OperatorSpec
from reflow.operators.quality.base import (
    DROP,
    FAIL,
    Columns,
    Expectation,
    QualityError,
    QualityViolation,
    RuleLogic,
    RuleStats,
    duration,
    fields_of,
)
from reflow.operators.quality.kernel import Inliner, precheck
from reflow.operators.quality.records import (
    fresh,
    in_range,
    in_set,
    matches,
    not_null,
    schema,
)
from reflow.operators.quality.windows import (
    drift,
    unique,
    volume,
)

logger = logging.getLogger(__name__)

# Violations logged per rule at first, then one in LOG_EVERY (counters see all).
LOG_FIRST = 10
LOG_EVERY = 1000

# the step ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QualityOp(OperatorSpec):
    """Checks its input against ``expectations`` and passes it on (without the
    records a ``drop`` rule took out)."""

    expectations: tuple[Expectation, ...]
    name: str | None = None
    parallelism: int | None = None

    operator_type: ClassVar[str] = "quality"
    uses_event_time: ClassVar[bool] = True
    """Windowed rules follow watermarks when the stream has timestamps."""

    def __post_init__(self) -> None:
        if not self.expectations:
            raise ConfigError("a quality step needs at least one expectation")
        names = [e.name for e in self.expectations]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(
                f"quality rule names must differ within a step: {', '.join(twice)} "
                "given more than once (set 'name' on each)"
            )

    def build(self, ctx: OperatorContext) -> OperatorLogic:
        return QualityLogic(self, ctx)


@dataclass(slots=True)
class _Rule:
    expectation: Expectation
    logic: RuleLogic
    stats: RuleStats


class QualityLogic(OperatorLogic):
    def __init__(self, spec: QualityOp, ctx: OperatorContext) -> None:
        self.ctx = ctx
        self.clock = ctx.clock
        self.rules: list[_Rule] = []
        for expectation in spec.expectations:
            stats = RuleStats(expectation.check, expectation.critical, expectation.hold_ms)
            ctx.quality[expectation.name] = stats
            self.rules.append(_Rule(expectation, expectation.build(ctx), stats))
        self.record_rules = [r for r in self.rules if not r.expectation.windowed]
        self.window_rules = [r for r in self.rules if r.expectation.windowed]
        self.measured = [r for r in self.record_rules if r.logic.measures]
        # The rules the batch pre-check covers, and the ones it does not.
        self.inlined = [r for r in self.record_rules if r.logic.inline(Inliner()) is not None]
        self.not_inlined = [r for r in self.record_rules if r not in self.inlined]
        # Type conditions first (schema): later ones need not test a type again.
        first = sorted(self.inlined, key=lambda r: r.expectation.check != "schema")
        self.precheck = precheck([r.logic.inline for r in first])
        ticks = [r.logic.tick_ms for r in self.rules if r.logic.tick_ms]
        self.tick_interval_ms = max(min(ticks) // 4, 10) if ticks else None

    def process(self, batch: list[Any]) -> list[Any]:
        if not batch:
            return batch
        size = len(batch)
        rules = self.record_rules
        if self.precheck is not None and self.precheck(batch):
            for rule in self.inlined:
                rule.stats.passed += size
            rules = self.not_inlined
        columns = Columns(batch)
        dropped: set[int] = set()
        for rule in rules:
            bad = rule.logic.failures(batch, columns)
            stats = rule.stats
            if not bad:
                stats.passed += size
                continue
            stats.passed += size - len(bad)
            stats.failed += len(bad)
            stats.last_failed_ms = self.clock.now_ms()
            self._violated(rule, bad, batch, dropped)
        for rule in self.measured:
            rule.stats.value = rule.logic.measure()
        for rule in self.window_rules:
            rule.logic.observe(batch, columns)
        if not dropped:
            return batch
        return [r for i, r in enumerate(batch) if i not in dropped]

    def _violated(
        self, rule: _Rule, bad: dict[int, str], batch: list[Any], dropped: set[int]
    ) -> None:
        expectation, stats = rule.expectation, rule.stats
        first = stats.failed - len(bad)
        for n, (i, message) in enumerate(bad.items(), start=first + 1):
            record = batch[i]
            if expectation.action == FAIL:
                raise QualityError(
                    f"step {self.ctx.step_id!r}: quality rule {expectation.name!r} "
                    f"({expectation.check}) failed: {message}; record: {record!r:.200}. "
                    "Fix the input, or set the rule's action to 'warn' or 'drop'",
                    step_id=self.ctx.step_id,
                )
            if expectation.action == DROP:
                if i not in dropped:
                    dropped.add(i)
                    self.ctx.dead_letter(record, QualityViolation(expectation.name, message))
            elif n <= LOG_FIRST or n % LOG_EVERY == 0:
                self._log(expectation, n, message, record)

    def _log(self, expectation: Expectation, n: int, message: str, record: Any = None) -> None:
        logger.warning(
            "job %s step %s subtask %d: quality rule %s (%s) violation #%d: %s%s",
            self.ctx.job_id,
            self.ctx.step_id,
            self.ctx.subtask_index,
            expectation.name,
            expectation.check,
            n,
            message,
            "" if record is None else f"; record: {record!r:.200}",
            extra={
                "job_id": self.ctx.job_id,
                "step_id": self.ctx.step_id,
                "event": "QUALITY_VIOLATION",
                "rule": expectation.name,
                "check": expectation.check,
                "critical": expectation.critical,
            },
        )

    def _judged(self, rule: _Rule, verdicts: list[tuple[bool, float, str]]) -> None:
        stats = rule.stats
        for passed, measure, message in verdicts:
            stats.value = measure
            if passed:
                stats.passed += 1
                continue
            stats.failed += 1
            stats.last_failed_ms = self.clock.now_ms()
            if rule.expectation.action == FAIL:
                raise QualityError(
                    f"step {self.ctx.step_id!r}: quality rule {rule.expectation.name!r} "
                    f"({rule.expectation.check}) failed: {message}. Fix the input, or set "
                    "the rule's action to 'warn'",
                    step_id=self.ctx.step_id,
                )
            self._log(rule.expectation, stats.failed, message)

    def _time_passed(self, time_ms: int) -> None:
        for rule in self.record_rules:
            rule.logic.advance(time_ms)
        for rule in self.window_rules:
            self._judged(rule, rule.logic.close_until(time_ms))

    def on_watermark(self, watermark: int) -> list[Any]:
        if self.ctx.timestamp_of is not None:
            self._time_passed(watermark)
        return []

    def on_tick(self, now_ms: int) -> list[Any]:
        if self.ctx.timestamp_of is None:
            self._time_passed(now_ms)
        return []

    def finish(self) -> list[Any]:
        for rule in self.window_rules:
            self._judged(rule, rule.logic.finish())
        return []

    def snapshot_state(self) -> Any:
        return {r.expectation.name: r.logic.snapshot() for r in self.rules}

    def restore_state(self, states: list[Any]) -> None:
        for rule in self.rules:
            rule.logic.restore([s.get(rule.expectation.name) for s in states if s])


# -- from a job file ---------------------------------------------------------------------------

_BUILDERS: Mapping[str, Callable[..., Expectation]] = {
    "schema": schema,
    "not_null": not_null,
    "range": in_range,
    "in_set": in_set,
    "regex": matches,
    "unique": unique,
    "freshness": fresh,
    "volume": volume,
    "drift": drift,
}
CHECKS = tuple(_BUILDERS)


def expectation_of(check: str, options: Mapping[str, Any]) -> Expectation:
    """The expectation a job file's ``quality:`` entry describes (``check`` and its
    options, already validated for types by the job file's model)."""
    builder = _BUILDERS.get(check)
    if builder is None:
        raise ConfigError(f"unknown check {check!r}; use one of " + ", ".join(CHECKS))
    given = dict(options)
    if "hold" in given:
        given["hold_ms"] = duration(given.pop("hold"), "hold")
    if check in ("not_null", "unique"):
        names = given.pop("fields", None) or given.pop("field", None)
        return builder(*fields_of(names or (), check), **given)
    try:
        return builder(**given)
    except TypeError as exc:
        raise ConfigError(f"{check}: {exc}") from None
