"""AggregateFunction: the create / add / merge / result contract (Flink's)."""

from __future__ import annotations

import abc
from typing import Generic, TypeVar

__all__ = ["AggregateFunction"]

IN = TypeVar("IN")
ACC = TypeVar("ACC")
OUT = TypeVar("OUT")


class AggregateFunction(abc.ABC, Generic[IN, ACC, OUT]):
    """Incremental aggregation: an accumulator per key (and window).

    ``merge`` combines two accumulators; sliding windows (panes) and merging
    session windows need it. Accumulators must be picklable for RocksDB state.
    """

    @abc.abstractmethod
    def create(self) -> ACC: ...

    @abc.abstractmethod
    def add(self, acc: ACC, value: IN) -> ACC: ...

    @abc.abstractmethod
    def merge(self, a: ACC, b: ACC) -> ACC: ...

    @abc.abstractmethod
    def result(self, acc: ACC) -> OUT: ...

    def size(self, acc: ACC) -> int:
        """How many state entries ``acc`` holds beyond its own: 0 for accumulators
        of fixed size; those that grow with their input (``collect``) count each
        element, so the memory backend's entry cap covers them."""
        return 0

    def grows(self) -> bool:
        """Whether ``size`` is overridden (callers weigh only what can grow)."""
        return type(self).size is not AggregateFunction.size

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
