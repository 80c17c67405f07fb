"""Timestamp assignment and watermark generation (the start of event time)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from reflow.errors import GraphValidationError
from reflow.eventtime.watermarks import MIN_WATERMARK, WatermarkStrategy
from reflow.operators.aggregations import value_of
from reflow.operators.base import OperatorContext, OperatorLogic, OperatorSpec

__all__ = ["AssignTimestampsOp", "checked_timestamps"]

# How often a generator checks for idleness when it has an idle timeout.
IDLE_CHECK_FRACTION = 4


def _bad_timestamp(ts: Any) -> ValueError | None:
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        return ValueError(
            f"timestamp {ts!r} is not a number of epoch milliseconds "
            f"({type(ts).__name__}); convert it in the timestamp function"
        )
    if not math.isfinite(ts):
        return ValueError(f"timestamp {ts!r} is not finite (NaN or infinite)")
    return None


def _no_timestamp(exc: LookupError | AttributeError) -> ValueError:
    what = f"field {exc.args[0]!r} missing" if isinstance(exc, KeyError) and exc.args else exc
    return ValueError(
        f"no event time in the record ({type(exc).__name__}: {what}): the stream's "
        "timestamp field or expression cannot read it; a step that reshaped the records "
        "can keep the field, or assign timestamps again after it"
    )


def checked_timestamps(
    extract: Callable[[Any], Any], batch: list[Any], reject: Callable[[Any, BaseException], None]
) -> tuple[list[Any], list[Any]]:
    """``batch`` and its timestamps, less the records whose timestamp is missing, not a
    number, NaN or infinite — those go to ``reject`` (the job's error policy).

    The common case costs one ``sum``: NaN and infinity poison it, and None or a
    string make it raise, which sends the batch through the per-record check.
    """
    try:
        stamps = list(map(extract, batch))
        total = sum(stamps)
        if math.isfinite(total):
            return batch, stamps
    except Exception:
        pass
    good: list[Any] = []
    good_stamps: list[Any] = []
    for record in batch:
        try:
            ts = extract(record)
        except (KeyError, AttributeError, IndexError) as exc:  # no such field
            reject(record, _no_timestamp(exc))
            continue
        except Exception as exc:
            reject(record, exc)
            continue
        problem = _bad_timestamp(ts)
        if problem is not None:
            reject(record, problem)
            continue
        good.append(record)
        good_stamps.append(ts)
    return good, good_stamps


class _AssignerLogic(OperatorLogic):
    generates_watermarks = True

    def __init__(self, spec: AssignTimestampsOp, ctx: OperatorContext) -> None:
        self.extract = spec.timestamp_extractor
        self.strategy = spec.strategy
        self.clock = ctx.clock
        self.reject = ctx.reject
        self.max_ts = MIN_WATERMARK
        self.advanced = MIN_WATERMARK
        self.is_idle = False
        self.input_waiting_since: int | None = None
        """Set by the runtime while the subtask waits for input (not while it pushes)."""
        idle = spec.strategy.idle_timeout_ms
        # Bounded inputs end with a final watermark: idleness and the wall-clock
        # advance apply to unbounded inputs only, so a replay gives the same
        # windows however fast or slow it is read.
        if idle and not ctx.bounded_input:
            self.tick_interval_ms = max(1, idle // IDLE_CHECK_FRACTION)

    def process(self, batch: list[Any]) -> list[Any]:
        batch, stamps = checked_timestamps(self.extract, batch, self.reject)
        newest = max(stamps, default=MIN_WATERMARK)
        if newest > self.max_ts:
            self.max_ts = newest
        if batch:
            self.is_idle = False
        return batch

    def snapshot_state(self) -> Any:
        return (self.max_ts, self.advanced)

    def restore_state(self, states: list[Any]) -> None:
        # After a rescale, the smallest progress is the safe one.
        present = [s for s in states if s is not None]
        if present:
            self.max_ts = min(s[0] for s in present)
            self.advanced = min(s[1] for s in present)

    def current_watermark(self) -> int | None:
        if self.max_ts == MIN_WATERMARK and self.advanced == MIN_WATERMARK:
            return None
        own = self.max_ts - self.strategy.max_out_of_orderness_ms - 1
        return max(own, self.advanced)

    def on_tick(self, now_ms: int) -> list[Any]:
        idle = self.strategy.idle_timeout_ms
        waiting = self.input_waiting_since
        if not idle or waiting is None:
            return []
        quiet = now_ms - waiting
        if quiet < idle:
            return []
        if self.strategy.wall_clock_advance and self.max_ts != MIN_WATERMARK:
            # Idle: event time moves on with the clock, from the last record's time,
            # so that the open windows close although no new record arrives.
            pushed = self.max_ts - self.strategy.max_out_of_orderness_ms - 1 + quiet
            self.advanced = max(self.advanced, pushed)
        else:
            # Idle without a clock advance: downstream stops waiting for this input.
            self.is_idle = True
        return []


@dataclass(frozen=True, slots=True)
class AssignTimestampsOp(OperatorSpec):
    """Read each record's event time and generate watermarks (records pass unchanged).

    ``timestamp`` is a field name or a function giving epoch milliseconds.
    A record whose timestamp cannot be read goes to the error policy.
    """

    timestamp: str | Callable[[Any], int]
    strategy: WatermarkStrategy = field(default_factory=WatermarkStrategy)
    name: str | None = None
    parallelism: int | None = None

    operator_type: ClassVar[str] = "assign_timestamps"

    def __post_init__(self) -> None:
        if not (isinstance(self.timestamp, str) or callable(self.timestamp)):
            raise GraphValidationError(
                "Operators.assign_timestamps needs a field name or a function of the record"
            )

    @property
    def timestamp_extractor(self) -> Callable[[Any], int]:
        extractor = value_of(self.timestamp)
        assert extractor is not None
        return extractor

    def build(self, ctx: OperatorContext) -> OperatorLogic:
        return _AssignerLogic(self, ctx)
