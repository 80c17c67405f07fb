"""Stateless operators: map, filter, flat_map, key_by, union (seed §3.7.2).

Each logic processes a micro-batch in one tight loop. When a user function
raises, the loop hands the failing record to the error policy and resumes with
the next record: no record is processed twice and none is lost.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from operator import length_hint
from typing import Any, ClassVar

from reflow.errors import GraphValidationError
from reflow.operators.base import OperatorContext, OperatorLogic, OperatorSpec

__all__ = [
    "AsyncMapLogic",
    "CustomLogic",
    "FilterOp",
    "FlatMapOp",
    "KeyByOp",
    "MapOp",
    "UnionOp",
]

# Concurrent calls of one async user function per subtask: enough to hide I/O
# latency of typical lookups, few enough not to flood the remote service.
DEFAULT_ASYNC_CONCURRENCY = 16


def _check_callable(fn: object, what: str) -> None:
    if not callable(fn):
        raise GraphValidationError(f"{what} needs a function, got {type(fn).__name__}: {fn!r}")


def _is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - async callable objects
    )


class _FunctionLogic(OperatorLogic):
    """A sync user function applied by a C-level loop (``map``/``filter`` builtins).

    On an exception, the records the loop already produced stay in ``out``
    (``list.extend`` keeps them), the failing record is the last one the input
    iterator gave out, and the loop resumes after it: no record is processed
    twice and none is lost.
    """

    def __init__(self, fn: Callable[[Any], Any], ctx: OperatorContext, blocking: bool) -> None:
        self.fn = fn
        self.reject = ctx.reject
        self.blocking = blocking

    def _loop(self, records: Iterator[Any]) -> Iterable[Any]:
        raise NotImplementedError  # pragma: no cover

    def process(self, batch: list[Any]) -> list[Any]:
        out: list[Any] = []
        records = iter(batch)
        loop = self._loop
        while True:
            try:
                out.extend(loop(records))
                return out
            except Exception as exc:
                failed = batch[len(batch) - length_hint(records) - 1]
                self.reject(failed, exc)


class MapLogic(_FunctionLogic):
    def _loop(self, records: Iterator[Any]) -> Iterable[Any]:
        return map(self.fn, records)


class FilterLogic(_FunctionLogic):
    def _loop(self, records: Iterator[Any]) -> Iterable[Any]:
        return filter(self.fn, records)


class FlatMapLogic(_FunctionLogic):
    def _loop(self, records: Iterator[Any]) -> Iterable[Any]:
        return chain.from_iterable(map(self.fn, records))


class AsyncMapLogic(OperatorLogic):
    """Runs an ``async def`` function with bounded concurrency (Flink's async I/O).

    ``kind`` is map, filter or flat_map. ``ordered`` keeps input order;
    otherwise results leave in completion order.
    """

    is_async = True

    def __init__(
        self,
        fn: Callable[[Any], Awaitable[Any]],
        ctx: OperatorContext,
        kind: str,
        concurrency: int,
        ordered: bool,
    ) -> None:
        self.fn = fn
        self.reject = ctx.reject
        self.kind = kind
        self.ordered = ordered
        self.semaphore = asyncio.Semaphore(concurrency)

    async def _call(self, index: int, record: Any) -> tuple[int, Any, BaseException | None]:
        async with self.semaphore:
            try:
                return index, await self.fn(record), None
            except Exception as exc:
                return index, None, exc

    async def process_async(self, batch: list[Any]) -> list[Any]:
        calls = [self._call(i, r) for i, r in enumerate(batch)]
        if self.ordered:
            results = await asyncio.gather(*calls)
        else:
            results = [await done for done in asyncio.as_completed(calls)]
        out: list[Any] = []
        for index, value, error in results:
            if error is not None:
                self.reject(batch[index], error)
            elif self.kind == "map":
                out.append(value)
            elif self.kind == "filter":
                if value:
                    out.append(batch[index])
            else:
                out.extend(value)
        return out


class CustomLogic(OperatorLogic):
    """Runs a user ``apply(records) -> records`` per batch; isolates bad records on error."""

    def __init__(self, apply: Callable[[list[Any]], Iterable[Any]], ctx: OperatorContext) -> None:
        self.apply = apply
        self.reject = ctx.reject

    def process(self, batch: list[Any]) -> list[Any]:
        try:
            return list(self.apply(batch))
        except Exception as exc:
            if len(batch) == 1:
                self.reject(batch[0], exc)
                return []
            out: list[Any] = []
            for record in batch:
                try:
                    out.extend(self.apply([record]))
                except Exception as record_exc:
                    self.reject(record, record_exc)
            return out


class PassThroughLogic(OperatorLogic):
    def process(self, batch: list[Any]) -> list[Any]:
        return batch


@dataclass(frozen=True, slots=True)
class _FunctionOp(OperatorSpec):
    fn: Callable[[Any], Any]
    name: str | None = None
    parallelism: int | None = None
    concurrency: int = DEFAULT_ASYNC_CONCURRENCY
    ordered: bool = True
    blocking: bool = False

    _logic: ClassVar[type[OperatorLogic]]

    def __post_init__(self) -> None:
        _check_callable(self.fn, f"Operators.{self.operator_type}")
        if self.concurrency < 1:
            raise GraphValidationError(
                f"Operators.{self.operator_type}: concurrency must be >= 1, got {self.concurrency}"
            )

    @property
    def is_async(self) -> bool:
        return _is_async(self.fn)

    def build(self, ctx: OperatorContext) -> OperatorLogic:
        if self.is_async:
            return AsyncMapLogic(self.fn, ctx, self.operator_type, self.concurrency, self.ordered)
        logic: OperatorLogic = self._logic(self.fn, ctx, self.blocking)  # type: ignore[call-arg]
        return logic


@dataclass(frozen=True, slots=True)
class MapOp(_FunctionOp):
    """One output record per input record: ``fn(record)``."""

    operator_type: ClassVar[str] = "map"
    _logic: ClassVar[type[OperatorLogic]] = MapLogic


@dataclass(frozen=True, slots=True)
class FilterOp(_FunctionOp):
    """Keep the records for which ``fn(record)`` is truthy."""

    operator_type: ClassVar[str] = "filter"
    _logic: ClassVar[type[OperatorLogic]] = FilterLogic


@dataclass(frozen=True, slots=True)
class FlatMapOp(_FunctionOp):
    """Zero or more output records per input: ``fn(record)`` returns an iterable."""

    operator_type: ClassVar[str] = "flat_map"
    _logic: ClassVar[type[OperatorLogic]] = FlatMapLogic


@dataclass(frozen=True, slots=True)
class KeyByOp(OperatorSpec):
    """Partition the stream by ``key_selector(record)``: the next edge is HASH.

    Records pass unchanged; every record with the same key reaches the same
    downstream subtask (by the stable key hash, never Python's ``hash()``).
    A key_by is an exchange, not a step: the graph builder turns it into keyed
    edges from its inputs to its outputs (as Flink's ``keyBy`` is a partitioning,
    not an operator), so it has no subtasks, metrics or state of its own and its
    ``parallelism`` has no effect.
    """

    key_selector: Callable[[Any], Any]
    name: str | None = None
    parallelism: int | None = None

    operator_type: ClassVar[str] = "key_by"
    output_partitioning: ClassVar[str] = "hash"
    exchange_only: ClassVar[bool] = True

    def __post_init__(self) -> None:
        _check_callable(self.key_selector, "Operators.key_by")

    def build(self, ctx: OperatorContext) -> OperatorLogic:
        return PassThroughLogic()


@dataclass(frozen=True, slots=True)
class UnionOp(OperatorSpec):
    """Merge every connected input into one stream (fan-in)."""

    name: str | None = None
    parallelism: int | None = None

    operator_type: ClassVar[str] = "union"

    def build(self, ctx: OperatorContext) -> OperatorLogic:
        return PassThroughLogic()
