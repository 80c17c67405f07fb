"""``Operators``: the seed's factory of built-in operators (§3.7, §9)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from reflow.operators.stateless import (
    DEFAULT_ASYNC_CONCURRENCY,
    FilterOp,
    FlatMapOp,
    KeyByOp,
    MapOp,
    UnionOp,
)

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
