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

from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from reflow.graph.job import ErrorPolicy, Job, JobConfig, JobType
from reflow.graph.partitioning import Partitioning
from reflow.graph.stream_graph import Overflow, StreamGraph, StreamGraphBuilder
from reflow.operators.base import OperatorSpec
from reflow.operators.facade import Operators

__all__ = ["Flow", "KeyedStream", "Stream"]

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
    ) -> None:
        self.flow = flow
        self.step_id = step_id
        self._partitioning = partitioning
        self._overflow = overflow

    def _then(self, operator: OperatorSpec, id: str | None, default: str) -> str:
        step_id = self.flow._step_id(id, operator, default)
        self.flow._builder.add_operator(step_id, operator)
        self._connect(step_id)
        return step_id

    def _connect(self, target: str) -> None:
        self.flow._builder.connect(
            self.step_id, target, partitioning=self._partitioning, overflow=self._overflow
        )

    def map(self, fn: Callable[[T], U], *, id: str | None = None, **options: Any) -> Stream[U]:
        """``fn(record)`` for every record; ``fn`` may be ``async def``."""
        return Stream(self.flow, self._then(Operators.map(fn, **options), id, "map"))

    def filter(
        self, predicate: Callable[[T], Any], *, id: str | None = None, **options: Any
    ) -> Stream[T]:
        """Keep the records for which ``predicate`` is truthy."""
        return Stream(self.flow, self._then(Operators.filter(predicate, **options), id, "filter"))

    def flat_map(
        self, fn: Callable[[T], Iterable[U]], *, id: str | None = None, **options: Any
    ) -> Stream[U]:
        """Every record of the iterable ``fn(record)`` returns."""
        return Stream(self.flow, self._then(Operators.flat_map(fn, **options), id, "flat-map"))

    def key_by(
        self, key_selector: Callable[[T], K], *, id: str | None = None, **options: Any
    ) -> KeyedStream[K, T]:
        """Partition by key: equal keys meet in one downstream subtask."""
        step = self._then(Operators.key_by(key_selector, **options), id, "key-by")
        return KeyedStream(self.flow, step, key_selector)

    def union(self, *others: Stream[T], id: str | None = None) -> Stream[T]:
        """Merge this stream with ``others``."""
        step = self._then(Operators.union(), id, "union")
        for other in others:
            other._connect(step)
        return Stream(self.flow, step)

    def transform(self, operator: OperatorSpec, *, id: str | None = None) -> Stream[Any]:
        """Add any operator spec, built-in or user-defined (``reflow.Operator``)."""
        return Stream(self.flow, self._then(operator, id, operator.operator_type))

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

    def __init__(self, flow: Flow, step_id: str, key_selector: Callable[[V], K]) -> None:
        super().__init__(flow, step_id)
        self.key_selector = key_selector
