"""The typed fluent API: ``Flow`` -> ``Stream[T]`` -> ``KeyedStream[K, V]``.

Each call adds a node to a StreamGraph; ``Flow.to_job()`` compiles it.

Example:
    >>> from reflow import Flow
    >>> from reflow.testing import TestingSource, TestingSink, run_job
    >>> flow = Flow("words")
    >>> out = TestingSink()
    >>> (flow.source(TestingSource(["a b", "c"]))
    ...     .flat_map(str.split)
    ...     .map(str.upper)
    ...     .sink(out))
    >>> _ = run_job(flow.to_job())
    >>> out.records
    ['A', 'B', 'C']
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, Unpack, overload

from reflow.api.builders import StreamGraphBuilder
from reflow.graph.durations import DurationLike, millis
from reflow.graph.job import (
    CheckpointConfig,
    ErrorMode,
    ErrorPolicy,
    Job,
    JobConfig,
    JobType,
    ResourceSettings,
)
from reflow.graph.partitioning import Partitioning
from reflow.graph.stream_graph import Overflow, StreamGraph
from reflow.operators.aggregations import Count, Reduce, value_of
from reflow.operators.base import OperatorSpec
from reflow.operators.facade import Operators
from reflow.operators.joins import IntervalJoinOp, WindowJoinOp, default_join
from reflow.operators.keyed import KeyedProcessFunction
from reflow.operators.quality import Expectation, QualityOp
from reflow.operators.windows import WindowSpec, default_emit
from reflow.state.functions import AggregateFunction

if TYPE_CHECKING:
    from reflow.runtime.base import ExecutorSettings, JobResult

__all__ = ["Flow", "KeyedStream", "Stream", "WindowedStream"]

T = TypeVar("T")
U = TypeVar("U")
K = TypeVar("K")
V = TypeVar("V")


class Flow:
    """A job under construction in the fluent style."""

    def __init__(
        self,
        name: str = "flow",
        *,
        parallelism: int | None = None,
        chaining: bool = True,
        error_policy: ErrorPolicy | None = None,
        batch_size: int | None = None,
    ) -> None:
        self.name = name
        self._builder = StreamGraphBuilder(name)
        if parallelism is not None:
            self._builder.parallelism(parallelism)
        self._config = JobConfig(
            parallelism=parallelism,
            chaining=chaining,
            error_policy=error_policy or ErrorPolicy(),
            batch_size=batch_size,
        )
        self._ids: set[str] = set()

    def _step_id(self, given: str | None, payload: Any, default: str) -> str:
        """A unique step id: ``given``, else the payload's name, else ``default`` (numbered)."""
        if given is not None:
            self._ids.add(given)
            return given
        base = str(getattr(payload, "name", None) or default).replace("_", "-")
        candidate, n = base, 1
        while candidate in self._ids:
            n += 1
            candidate = f"{base}-{n}"
        self._ids.add(candidate)
        return candidate

    def source(self, source: Any, *, id: str | None = None) -> Stream[Any]:
        """Start a stream from a Source or a ``Connectors.<name>(...)`` spec."""
        step_id = self._step_id(id, source, "source")
        self._builder.add_source(step_id, source)
        return Stream(self, step_id)

    def to_stream_graph(self) -> StreamGraph:
        return self._builder.build()

    def run(self, settings: ExecutorSettings | None = None) -> JobResult:
        """Compile and run the flow to its end (``reflow.run(self.to_job())``); raises
        JobFailedError, naming the step and the cause, when the job fails."""
        from reflow.runtime.runner import run

        return run(self.to_job(), settings)

    async def run_async(self, settings: ExecutorSettings | None = None) -> JobResult:
        """``run`` for code already in an event loop: ``await flow.run_async()``."""
        from reflow.runtime.runner import run_async

        return await run_async(self.to_job(), settings)

    def resources(self, **settings: Unpack[ResourceSettings]) -> Flow:
        """The job's own thread pools and buffers (seed §10.4); see JobConfig."""
        from dataclasses import replace

        self._config = replace(self._config, **settings)
        return self

    def checkpointing(self, path: str, interval_ms: DurationLike = 60_000, **options: Any) -> Flow:
        """Take a checkpoint every ``interval_ms`` (ms, a timedelta or "1m") into the
        folder ``path`` (as ``Job.builder().checkpointing``)."""
        from dataclasses import replace

        interval = millis(interval_ms, "checkpoint interval")
        self._config = replace(self._config, checkpoint=CheckpointConfig(path, interval, **options))
        return self

    def error_policy(self, policy: ErrorPolicy | ErrorMode | str, dead_letter: Any = None) -> Flow:
        """The job's error policy: an ErrorPolicy, or a mode ("fail", "skip",
        "dead-letter" with ``dead_letter``, a sink), as ``Job.builder().error_policy``."""
        from dataclasses import replace

        if not isinstance(policy, ErrorPolicy):
            policy = ErrorPolicy(ErrorMode(policy), dead_letter=dead_letter)
        self._config = replace(self._config, error_policy=policy)
        return self

    def to_job(self, *, job_id: str | None = None, job_type: JobType | None = None) -> Job:
        """Validate, compile and return the Job."""
        graph = self.to_stream_graph()
        job_graph = graph.to_job_graph(
            chaining=self._config.chaining, default_parallelism=self._config.parallelism
        )
        return Job(job_graph, job_id=job_id, name=self.name, job_type=job_type, config=self._config)


class Stream(Generic[T]):
    """A stream of records of type ``T`` leaving step ``step_id``."""

    def __init__(
        self,
        flow: Flow,
        step_id: str,
        partitioning: Partitioning | None = None,
        overflow: Overflow = Overflow.BUFFER,
        timestamp: Callable[[Any], int] | None = None,
    ) -> None:
        self.flow = flow
        self.step_id = step_id
        self._partitioning = partitioning
        self._overflow = overflow
        self._timestamp = timestamp

    def _then(self, operator: OperatorSpec, id: str | None, default: str) -> str:
        step_id = self.flow._step_id(id, operator, default)
        self.flow._builder.add_operator(step_id, operator)
        self._connect(step_id)
        return step_id

    def _next(self, step_id: str) -> Stream[Any]:
        return Stream(self.flow, step_id, timestamp=self._timestamp)

    def _connect(self, target: str, side_output: str | None = None) -> None:
        self.flow._builder.connect(
            self.step_id,
            target,
            partitioning=self._partitioning,
            overflow=self._overflow,
            side_output=side_output,
        )

    @overload
    def map(
        self, fn: Callable[[T], Awaitable[U]], *, id: str | None = None, **options: Any
    ) -> Stream[U]: ...

    @overload
    def map(self, fn: Callable[[T], U], *, id: str | None = None, **options: Any) -> Stream[U]: ...

    def map(self, fn: Callable[[T], Any], *, id: str | None = None, **options: Any) -> Stream[Any]:
        """``fn(record)`` for every record; ``fn`` may be ``async def``."""
        return self._next(self._then(Operators.map(fn, **options), id, "map"))

    def filter(
        self, predicate: Callable[[T], Any], *, id: str | None = None, **options: Any
    ) -> Stream[T]:
        """Keep the records for which ``predicate`` is truthy."""
        return self._next(self._then(Operators.filter(predicate, **options), id, "filter"))

    @overload
    def flat_map(
        self, fn: Callable[[T], Awaitable[Iterable[U]]], *, id: str | None = None, **options: Any
    ) -> Stream[U]: ...

    @overload
    def flat_map(
        self, fn: Callable[[T], Iterable[U]], *, id: str | None = None, **options: Any
    ) -> Stream[U]: ...

    def flat_map(
        self, fn: Callable[[T], Any], *, id: str | None = None, **options: Any
    ) -> Stream[Any]:
        """Every record of the iterable ``fn(record)`` returns (``fn`` may be
        ``async def``)."""
        return self._next(self._then(Operators.flat_map(fn, **options), id, "flat-map"))

    def key_by(
        self, key_selector: Callable[[T], K] | str, *, id: str | None = None, **options: Any
    ) -> KeyedStream[K, T]:
        """Partition by key (a function or a field name): equal keys meet in one subtask."""
        selector = value_of(key_selector)
        assert selector is not None
        step = self._then(Operators.key_by(selector, **options), id, "key-by")
        keyed = KeyedStream(self.flow, step, selector, self._timestamp)
        keyed.key_name = key_selector if isinstance(key_selector, str) else None
        return keyed

    def union(self, *others: Stream[T], id: str | None = None) -> Stream[T]:
        """Merge this stream with ``others``."""
        step = self._then(Operators.union(), id, "union")
        for other in others:
            other._connect(step)
        return self._next(step)

    def expect(
        self,
        *expectations: Expectation,
        id: str | None = None,
        parallelism: int | None = None,
    ) -> Stream[T]:
        """Check the records against data-quality ``expectations``
        (``reflow.operators.quality``: not_null, in_range, in_set, matches, schema,
        unique, fresh, volume, drift); each counts, drops to the dead-letter output or
        fails the job, by its action."""
        op = QualityOp(tuple(expectations), parallelism=parallelism)
        return self._next(self._then(op, id, "quality"))

    def transform(self, operator: OperatorSpec, *, id: str | None = None) -> Stream[Any]:
        """Add any operator spec, built-in or user-defined (``reflow.Operator``)."""
        return self._next(self._then(operator, id, operator.operator_type))

    def assign_timestamps(
        self,
        timestamp: str | Callable[[T], int],
        *,
        max_out_of_orderness_ms: DurationLike = 0,
        idle_timeout_ms: DurationLike | None = None,
        wall_clock_advance: bool = True,
        id: str | None = None,
    ) -> Stream[T]:
        """Event time (epoch ms) from a field or function, and watermarks behind it."""
        op = Operators.assign_timestamps(
            timestamp,
            max_out_of_orderness_ms=max_out_of_orderness_ms,
            idle_timeout_ms=idle_timeout_ms,
            wall_clock_advance=wall_clock_advance,
        )
        step = self._then(op, id, "timestamps")
        return Stream(self.flow, step, timestamp=op.timestamp_extractor)

    def _tag(self, side: int) -> Stream[Any]:
        return self.map(
            lambda record: (side, record), id=self.flow._step_id(None, None, f"tag-{side}")
        )

    def _two_input(
        self, other: Stream[Any], op: OperatorSpec, id: str | None, default: str
    ) -> Stream[Any]:
        left, right = self._tag(0), other._tag(1)
        step = left._then(op, id, default)
        right._connect(step)
        return Stream(self.flow, step)

    def _timestamps(
        self,
        other: Stream[Any],
        left: str | Callable[[Any], int] | None,
        right: str | Callable[[Any], int] | None,
    ) -> tuple[Any, Any]:
        left = left or self._timestamp
        right = right or other._timestamp
        if left is None or right is None:
            raise ValueError(
                "a join needs event time on both inputs: assign_timestamps(...) on each, "
                "or pass left_timestamp=/right_timestamp="
            )
        return left, right

    def window_join(
        self,
        other: Stream[Any],
        left_key: str | Callable[[Any], Any],
        right_key: str | Callable[[Any], Any],
        size_ms: DurationLike,
        *,
        join: Callable[[Any, Any], Any] | None = None,
        left_timestamp: str | Callable[[Any], int] | None = None,
        right_timestamp: str | Callable[[Any], int] | None = None,
        id: str | None = None,
    ) -> Stream[Any]:
        """Pairs of this and ``other`` with equal keys in the same tumbling window."""
        lt, rt = self._timestamps(other, left_timestamp, right_timestamp)
        op = WindowJoinOp(
            left_key,
            right_key,
            lt,
            rt,
            join=join or default_join,
            size_ms=millis(size_ms, "window join size"),
        )
        return self._two_input(other, op, id, "window-join")

    def interval_join(
        self,
        other: Stream[Any],
        left_key: str | Callable[[Any], Any],
        right_key: str | Callable[[Any], Any],
        lower_ms: DurationLike,
        upper_ms: DurationLike,
        *,
        join: Callable[[Any, Any], Any] | None = None,
        left_timestamp: str | Callable[[Any], int] | None = None,
        right_timestamp: str | Callable[[Any], int] | None = None,
        outer: Literal["inner", "left", "right", "full"] = "inner",
        condition: Callable[[Any], bool] | None = None,
        id: str | None = None,
    ) -> Stream[Any]:
        """Pairs where other.ts is in [ts + lower_ms, ts + upper_ms], equal keys (and
        ``condition(joined)`` holds). ``outer="left"|"right"|"full"`` also emits the
        records of that side that joined nothing, as ``join(record, None)`` /
        ``join(None, record)``, once the watermark passes their interval."""
        lt, rt = self._timestamps(other, left_timestamp, right_timestamp)
        op = IntervalJoinOp(
            left_key,
            right_key,
            lt,
            rt,
            join=join or default_join,
            lower_ms=millis(lower_ms, "interval join lower bound"),
            upper_ms=millis(upper_ms, "interval join upper bound"),
            outer=outer,
            condition=condition,
        )
        return self._two_input(other, op, id, "interval-join")

    def lookup(
        self,
        source: Any,
        key: str | Callable[[Any], Any],
        lookup_key: str | Callable[[Any], Any],
        *,
        id: str | None = None,
        **options: Any,
    ) -> Stream[Any]:
        """Enrich each record from a cached lookup source (a SQL table, a file, ...)."""
        return self._next(
            self._then(Operators.lookup(source, key, lookup_key, **options), id, "lookup")
        )

    def late(self, *, id: str | None = None) -> Stream[Any]:
        """The records that came too late for this step's windows (its "late" side output)."""
        step = self.flow._step_id(id, None, f"{self.step_id}-late")
        self.flow._builder.add_operator(step, Operators.union())
        self._connect(step, side_output="late")
        return Stream(self.flow, step)

    def apply(self, fn: Callable[[Stream[T]], Stream[U]] | OperatorSpec) -> Stream[Any]:
        """Apply a user-defined operator, or a function composing several steps."""
        if isinstance(fn, OperatorSpec):
            return self.transform(fn)
        return fn(self)

    def rebalance(self) -> Stream[T]:
        """Spread the next step's input round robin over its subtasks."""
        return Stream(self.flow, self.step_id, Partitioning.REBALANCE, self._overflow)

    def broadcast(self) -> Stream[T]:
        """Send every record to every subtask of the next step."""
        return Stream(self.flow, self.step_id, Partitioning.BROADCAST, self._overflow)

    def on_overflow(self, overflow: Overflow | str) -> Stream[T]:
        """The overflow strategy (seed §10.3) of the edge to the next step."""
        return Stream(self.flow, self.step_id, self._partitioning, Overflow(overflow))

    def sink(self, sink: Any, *, id: str | None = None) -> None:
        """End the stream in a Sink or a ``Connectors.<name>(...)`` spec."""
        step_id = self.flow._step_id(id, sink, "sink")
        self.flow._builder.add_sink(step_id, sink)
        self._connect(step_id)


class KeyedStream(Stream[V], Generic[K, V]):
    """A stream partitioned by ``key_selector``: the next edge is HASH."""

    def __init__(
        self,
        flow: Flow,
        step_id: str,
        key_selector: Callable[[V], K],
        timestamp: Callable[[Any], int] | None = None,
    ) -> None:
        super().__init__(flow, step_id, timestamp=timestamp)
        self.key_selector = key_selector
        self.key_name: str | None = None
        """The key's field name, when keyed by one (names the key in aggregates)."""

    def window(self, window: WindowSpec) -> WindowedStream[K, V]:
        """Group each key's records into windows (``Windows.tumbling(...)``, ...)."""
        return WindowedStream(self, window)

    def reduce(
        self,
        fn: Callable[[Any, Any], Any],
        *,
        value: str | Callable[[Any], Any] | None = None,
        emit: str = "auto",
        id: str | None = None,
    ) -> Stream[dict[str, Any]]:
        """Rolling reduce per key: ``{key: ..., value: ...}`` (named after the key field
        and ``value`` when they are fields) per update, or finals on bounded input."""
        return self.aggregate(Reduce(fn, value), emit=emit, id=id)

    def aggregate(
        self,
        aggregate: AggregateFunction[Any, Any, Any],
        *,
        emit: str = "auto",
        output: Callable[[Any, Any], Any] | None = None,
        key_name: str | None = None,
        value_name: str | None = None,
        changelog_column: str = "op",
        retract: bool = True,
        visible: Callable[[Any, Any], bool] | None = None,
        id: str | None = None,
    ) -> Stream[Any]:
        """Rolling aggregate per key (seed §9.2): ``{key_name: key, value_name: result}``
        dicts (see ``Operators.aggregate``; ``emit="changelog"`` sends +I/-U/+U rows,
        and -D when ``visible`` turns False for a key)."""
        op = Operators.aggregate(
            self.key_selector,
            aggregate=aggregate,
            emit=emit,
            output=output,
            key_name=key_name or self.key_name,
            value_name=value_name,
            changelog_column=changelog_column,
            retract=retract,
            visible=visible,
        )
        return self._next(self._then(op, id, "aggregate"))

    def deduplicate(
        self, *, ttl_ms: DurationLike | None = None, event_time: bool = True, id: str | None = None
    ) -> Stream[V]:
        """The first record of each key within ``ttl_ms``."""
        op = Operators.deduplicate(
            self.key_selector, ttl_ms=ttl_ms, timestamp=self._timestamp, event_time=event_time
        )
        return self._next(self._then(op, id, "deduplicate"))

    def process(self, function: KeyedProcessFunction, *, id: str | None = None) -> Stream[Any]:
        """Run a KeyedProcessFunction (state and timers) per key."""
        op = Operators.process(function, self.key_selector, timestamp=self._timestamp)
        return self._next(self._then(op, id, "process"))


class WindowedStream(Generic[K, V]):
    """A keyed stream grouped into windows; ``aggregate`` ends the grouping."""

    def __init__(self, keyed: KeyedStream[K, V], window: WindowSpec) -> None:
        self.keyed = keyed
        self.window = window

    def aggregate(
        self,
        aggregate: AggregateFunction[Any, Any, Any] | None = None,
        *,
        allowed_lateness_ms: DurationLike = 0,
        emit: Callable[[Any, int, int, Any], Any] = default_emit,
        id: str | None = None,
    ) -> Stream[Any]:
        """Aggregate each key's records per window; ``.late()`` on the result gives late records."""
        op = Operators.window_aggregate(
            self.window,
            self.keyed.key_selector,
            aggregate or Count(),
            timestamp=self.keyed._timestamp,
            allowed_lateness_ms=allowed_lateness_ms,
            emit=emit,
        )
        # on event time, its results carry their window's (for joins, windows after it)
        step = self.keyed._then(op, id, "window")
        return Stream(self.keyed.flow, step, timestamp=op.timestamp_extractor)

    def count(self, *, id: str | None = None, **options: Any) -> Stream[Any]:
        return self.aggregate(Count(), id=id, **options)
