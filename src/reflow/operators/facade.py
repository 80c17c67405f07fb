"""``Operators``: the seed's factory of built-in operators (§3.7, §9)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from reflow.eventtime.watermarks import WatermarkStrategy
from reflow.graph.durations import DurationLike, millis
from reflow.operators.aggregations import Count, Reduce
from reflow.operators.joins import LookupJoinOp
from reflow.operators.keyed import (
    DeduplicateOp,
    KeyedAggregateOp,
    KeyedProcessFunction,
    KeyedProcessOp,
)
from reflow.operators.stateless import (
    DEFAULT_ASYNC_CONCURRENCY,
    FilterOp,
    FlatMapOp,
    KeyByOp,
    MapOp,
    UnionOp,
)
from reflow.operators.timestamps import AssignTimestampsOp
from reflow.operators.windows import WindowAggregateOp, Windows, WindowSpec, default_emit
from reflow.state.functions import AggregateFunction

Key = str | Callable[[Any], Any]

__all__ = ["Operators"]


class Operators:
    """Factories of the built-in operators.

    User functions may be plain or ``async def``. Async ones run with at most
    ``concurrency`` calls in flight per subtask; ``ordered=False`` lets results
    leave in completion order. ``blocking=True`` runs a plain function in the
    compute thread pool, off the event loop (for CPU-heavy or blocking code).

    Example:
        >>> from reflow import Job, Operators
        >>> from reflow.testing import TestingSource, TestingSink, run_job
        >>> sink = TestingSink()
        >>> job = (Job.builder()
        ...     .source(TestingSource(range(6)))
        ...     .transform(Operators.map(lambda x: x * 10))
        ...     .transform(Operators.filter(lambda x: x % 20 == 0))
        ...     .sink(sink)
        ...     .build())
        >>> run_job(job).status.value
        'COMPLETED'
        >>> sink.records
        [0, 20, 40]
    """

    @staticmethod
    def map(
        fn: Callable[[Any], Any],
        *,
        name: str | None = None,
        parallelism: int | None = None,
        concurrency: int = DEFAULT_ASYNC_CONCURRENCY,
        ordered: bool = True,
        blocking: bool = False,
    ) -> MapOp:
        """Apply ``fn`` to every record."""
        return MapOp(fn, name, parallelism, concurrency, ordered, blocking)

    @staticmethod
    def filter(
        predicate: Callable[[Any], Any],
        *,
        name: str | None = None,
        parallelism: int | None = None,
        concurrency: int = DEFAULT_ASYNC_CONCURRENCY,
        ordered: bool = True,
        blocking: bool = False,
    ) -> FilterOp:
        """Keep the records for which ``predicate`` is truthy."""
        return FilterOp(predicate, name, parallelism, concurrency, ordered, blocking)

    @staticmethod
    def flat_map(
        fn: Callable[[Any], Iterable[Any]],
        *,
        name: str | None = None,
        parallelism: int | None = None,
        concurrency: int = DEFAULT_ASYNC_CONCURRENCY,
        ordered: bool = True,
        blocking: bool = False,
    ) -> FlatMapOp:
        """Emit every record of the iterable ``fn(record)`` returns."""
        return FlatMapOp(fn, name, parallelism, concurrency, ordered, blocking)

    @staticmethod
    def key_by(
        key_selector: Callable[[Any], Any],
        *,
        name: str | None = None,
        parallelism: int | None = None,
    ) -> KeyByOp:
        """Route records by key: equal keys reach the same downstream subtask."""
        return KeyByOp(key_selector, name, parallelism)

    @staticmethod
    def union(*, name: str | None = None, parallelism: int | None = None) -> UnionOp:
        """Merge several inputs into one stream; connect every input to it."""
        return UnionOp(name, parallelism)

    # -- event time and keyed state -------------------------------------------------------

    @staticmethod
    def assign_timestamps(
        timestamp: str | Callable[[Any], int],
        *,
        max_out_of_orderness_ms: DurationLike = 0,
        idle_timeout_ms: DurationLike | None = None,
        wall_clock_advance: bool = True,
        name: str | None = None,
        parallelism: int | None = None,
    ) -> AssignTimestampsOp:
        """Event time from a field or function (epoch ms); bounded-out-of-orderness watermarks."""
        strategy = WatermarkStrategy.bounded_out_of_orderness(
            max_out_of_orderness_ms,
            idle_timeout_ms=idle_timeout_ms,
            wall_clock_advance=wall_clock_advance,
        )
        return AssignTimestampsOp(timestamp, strategy, name, parallelism)

    windows: type[Windows] = Windows

    @staticmethod
    def window_aggregate(
        window: WindowSpec | DurationLike,
        key: Key,
        aggregate: AggregateFunction[Any, Any, Any] | None = None,
        *,
        timestamp: str | Callable[[Any], int] | None = None,
        allowed_lateness_ms: DurationLike = 0,
        emit: Callable[[Any, int, int, Any], Any] = default_emit,
        name: str | None = None,
        parallelism: int | None = None,
    ) -> WindowAggregateOp:
        """Aggregate per key and window (seed §9.3). A window given as a duration (ms,
        ``timedelta(minutes=5)``, ``"5m"``) is a tumbling window of that size, as the
        seed's ``windowAggregate(Duration.ofMinutes(5), ...)``."""
        spec = window if isinstance(window, WindowSpec) else Windows.tumbling(window)
        return WindowAggregateOp(
            spec,
            key,
            aggregate or Count(),
            timestamp,
            millis(allowed_lateness_ms, "allowed lateness"),
            emit,
            name,
            parallelism,
        )

    @staticmethod
    def aggregate(
        key: Key,
        value: str | Callable[[Any], Any] | None = None,
        reduce: Callable[[Any, Any], Any] | None = None,
        *,
        aggregate: AggregateFunction[Any, Any, Any] | None = None,
        emit: str = "auto",
        output: Callable[[Any, Any], Any] | None = None,
        name: str | None = None,
        parallelism: int | None = None,
        key_name: str | None = None,
        value_name: str | None = None,
        changelog_column: str = "op",
        retract: bool = True,
        visible: Callable[[Any, Any], bool] | None = None,
    ) -> KeyedAggregateOp:
        """Rolling aggregate per key (seed §9.2), emitting ``{key_name: key,
        value_name: result}`` dicts (names from the fields or functions given);
        ``emit="changelog"`` adds the change's kind (``+I``/``-U``/``+U``) in
        ``changelog_column``; with it, ``visible(key, result)`` keeps results out as
        SQL's HAVING does (``-D`` when a key leaves; see ``KeyedAggregateOp``).

        ``Operators.aggregate(Orders::getRegion, Orders::getAmount, Double::sum)`` in
        the seed is ``Operators.aggregate("region", "amount", operator.add)`` here,
        emitting ``{"region": ..., "amount": ...}``.
        """
        if aggregate is None:
            if reduce is None:
                raise ValueError("Operators.aggregate needs reduce=... or aggregate=...")
            aggregate = Reduce(reduce, value)
        return KeyedAggregateOp(
            key,
            aggregate,
            emit,  # type: ignore[arg-type]
            output,
            name,
            parallelism,
            key_name,
            value_name,
            changelog_column,
            retract,
            visible,
        )

    @staticmethod
    def deduplicate(
        key: Key,
        *,
        ttl_ms: DurationLike | None = None,
        timestamp: str | Callable[[Any], int] | None = None,
        event_time: bool = True,
        name: str | None = None,
        parallelism: int | None = None,
    ) -> DeduplicateOp:
        """Keep the first record per key within ``ttl_ms``."""
        ttl = None if ttl_ms is None else millis(ttl_ms, "deduplicate TTL")
        return DeduplicateOp(key, ttl, timestamp, event_time, name, parallelism)

    @staticmethod
    def process(
        function: KeyedProcessFunction,
        key: Key,
        *,
        timestamp: str | Callable[[Any], int] | None = None,
        name: str | None = None,
        parallelism: int | None = None,
    ) -> KeyedProcessOp:
        """A KeyedProcessFunction with keyed state and timers."""
        return KeyedProcessOp(function, key, timestamp, name=name, parallelism=parallelism)

    @staticmethod
    def lookup(
        source: Any,
        key: Key,
        lookup_key: Key,
        *,
        join: Callable[[Any, Any], Any] | None = None,
        cache_ttl_ms: DurationLike | None = 60_000,
        on_missing: str = "keep",
        name: str | None = None,
        parallelism: int | None = None,
    ) -> LookupJoinOp:
        """Enrich records from a lookup source (e.g. ``Connectors.sql(table=...)``), cached."""
        return LookupJoinOp(
            source,
            key,
            lookup_key,
            join,
            None if cache_ttl_ms is None else millis(cache_ttl_ms, "cache TTL"),
            on_missing,  # type: ignore[arg-type]
            name,
            parallelism,
        )


# The seed's spellings (§9.1-§9.3): Operators.windowAggregate(...), flatMap, keyBy, ...
Operators.windowAggregate = Operators.window_aggregate  # type: ignore[attr-defined]
Operators.flatMap = Operators.flat_map  # type: ignore[attr-defined]
Operators.keyBy = Operators.key_by  # type: ignore[attr-defined]
Operators.assignTimestamps = Operators.assign_timestamps  # type: ignore[attr-defined]
