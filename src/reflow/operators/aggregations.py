"""Built-in aggregate functions, and the seed's ``Collectors``.

Each takes an optional ``of``: a field name, or a function of the record,
giving the value to aggregate (default: the record itself).
"""

from __future__ import annotations

import heapq
import operator
from collections.abc import Callable
from typing import Any

from reflow.state.functions import AggregateFunction

__all__ = ["Aggregations", "Collectors", "value_of"]


def value_of(of: str | Callable[[Any], Any] | None) -> Callable[[Any], Any] | None:
    """A value extractor from a field name or function (None: the record)."""
    if of is None:
        return None
    if isinstance(of, str):
        return operator.itemgetter(of)
    return of


class _Valued(AggregateFunction[Any, Any, Any]):
    def __init__(self, of: str | Callable[[Any], Any] | None = None) -> None:
        self.of = of
        self.get = value_of(of)

    def _value(self, record: Any) -> Any:
        return record if self.get is None else self.get(record)

    def __getstate__(self) -> dict[str, Any]:
        return {"of": self.of}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["of"])  # type: ignore[misc]


class Count(AggregateFunction[Any, int, int]):
    def create(self) -> int:
        return 0

    def add(self, acc: int, value: Any) -> int:
        return acc + 1

    def merge(self, a: int, b: int) -> int:
        return a + b

    def result(self, acc: int) -> int:
        return acc


class Sum(_Valued):
    def create(self) -> Any:
        return 0

    def add(self, acc: Any, value: Any) -> Any:
        return acc + self._value(value)

    def merge(self, a: Any, b: Any) -> Any:
        return a + b

    def result(self, acc: Any) -> Any:
        return acc


# A None value is a bad record (the error policy decides), not something min or max
# may skip in one arrival order and compare in another.
_NONE_VALUE = "the value is None; min and max need a value in every record"

# NaN (the one value unequal to itself) wins in any order, as in Java's Math.min/max:
# comparisons with NaN are all false, so without this the result depended on order.


def _lesser(a: Any, b: Any) -> Any:
    return a if a != a or a <= b else b


def _greater(a: Any, b: Any) -> Any:
    return a if a != a or a >= b else b


class Min(_Valued):
    """The smallest value; a NaN makes the result NaN, whatever the order."""

    def create(self) -> Any:
        return None

    def add(self, acc: Any, value: Any) -> Any:
        v = self._value(value)
        if v is None:
            raise TypeError(_NONE_VALUE)
        return v if acc is None or v < acc or v != v else acc

    def merge(self, a: Any, b: Any) -> Any:
        return b if a is None else a if b is None else _lesser(a, b)

    def result(self, acc: Any) -> Any:
        return acc


class Max(_Valued):
    """The largest value; a NaN makes the result NaN, whatever the order."""

    def create(self) -> Any:
        return None

    def add(self, acc: Any, value: Any) -> Any:
        v = self._value(value)
        if v is None:
            raise TypeError(_NONE_VALUE)
        return v if acc is None or v > acc or v != v else acc

    def merge(self, a: Any, b: Any) -> Any:
        return b if a is None else a if b is None else _greater(a, b)

    def result(self, acc: Any) -> Any:
        return acc


class Avg(_Valued):
    def create(self) -> Any:
        return (0, 0)

    def add(self, acc: Any, value: Any) -> Any:
        return (acc[0] + self._value(value), acc[1] + 1)

    def merge(self, a: Any, b: Any) -> Any:
        return (a[0] + b[0], a[1] + b[1])

    def result(self, acc: Any) -> Any:
        return acc[0] / acc[1] if acc[1] else None


class Collect(_Valued):
    def create(self) -> Any:
        return []

    def add(self, acc: Any, value: Any) -> Any:
        acc.append(self._value(value))
        return acc

    def merge(self, a: Any, b: Any) -> Any:
        return a + b

    def result(self, acc: Any) -> Any:
        return list(acc)

    def size(self, acc: Any) -> int:
        return len(acc)


class TopN(_Valued):
    """The ``n`` largest values (by ``by``, default the value itself), largest first."""

    def __init__(
        self,
        n: int,
        of: str | Callable[[Any], Any] | None = None,
        by: str | Callable[[Any], Any] | None = None,
    ) -> None:
        super().__init__(of)
        self.n = n
        self.by = by
        self.key = value_of(by) or (lambda v: v)

    def __getstate__(self) -> dict[str, Any]:
        return {"of": self.of, "n": self.n, "by": self.by}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["n"], state["of"], state["by"])  # type: ignore[misc]

    def create(self) -> Any:
        return []

    def add(self, acc: Any, value: Any) -> Any:
        acc.append(self._value(value))
        if len(acc) > 4 * self.n:
            acc[:] = heapq.nlargest(self.n, acc, key=self.key)
        return acc

    def merge(self, a: Any, b: Any) -> Any:
        return heapq.nlargest(self.n, a + b, key=self.key)

    def result(self, acc: Any) -> Any:
        return heapq.nlargest(self.n, acc, key=self.key)


class Reduce(_Valued):
    """Combine values with a binary function (seed §9.2 ``Double::sum``)."""

    def __init__(
        self, fn: Callable[[Any, Any], Any], of: str | Callable[[Any], Any] | None = None
    ) -> None:
        super().__init__(of)
        self.fn = fn

    def __getstate__(self) -> dict[str, Any]:
        return {"of": self.of, "fn": self.fn}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["fn"], state["of"])  # type: ignore[misc]

    def create(self) -> Any:
        return _EMPTY

    def add(self, acc: Any, value: Any) -> Any:
        v = self._value(value)
        return v if acc is _EMPTY else self.fn(acc, v)

    def merge(self, a: Any, b: Any) -> Any:
        return b if a is _EMPTY else a if b is _EMPTY else self.fn(a, b)

    def result(self, acc: Any) -> Any:
        return None if acc is _EMPTY else acc


class _Empty:
    def __reduce__(self) -> str:
        return "_EMPTY"

    def __repr__(self) -> str:
        return "<empty>"


_EMPTY = _Empty()


class Aggregations:
    """Factories of the built-in aggregate functions."""

    @staticmethod
    def count() -> AggregateFunction[Any, Any, Any]:
        return Count()

    @staticmethod
    def sum(of: str | Callable[[Any], Any] | None = None) -> AggregateFunction[Any, Any, Any]:
        return Sum(of)

    @staticmethod
    def min(of: str | Callable[[Any], Any] | None = None) -> AggregateFunction[Any, Any, Any]:
        return Min(of)

    @staticmethod
    def max(of: str | Callable[[Any], Any] | None = None) -> AggregateFunction[Any, Any, Any]:
        return Max(of)

    @staticmethod
    def avg(of: str | Callable[[Any], Any] | None = None) -> AggregateFunction[Any, Any, Any]:
        return Avg(of)

    @staticmethod
    def collect(of: str | Callable[[Any], Any] | None = None) -> AggregateFunction[Any, Any, Any]:
        return Collect(of)

    @staticmethod
    def top_n(
        n: int,
        of: str | Callable[[Any], Any] | None = None,
        by: str | Callable[[Any], Any] | None = None,
    ) -> AggregateFunction[Any, Any, Any]:
        return TopN(n, of, by)

    @staticmethod
    def reduce(
        fn: Callable[[Any, Any], Any], of: str | Callable[[Any], Any] | None = None
    ) -> AggregateFunction[Any, Any, Any]:
        return Reduce(fn, of)


class Collectors:
    """The seed's names (§9.3): ``Collectors.counting()``, ``Collectors.summing_double(f)``."""

    @staticmethod
    def counting() -> AggregateFunction[Any, Any, Any]:
        return Count()

    @staticmethod
    def summing_double(
        of: str | Callable[[Any], Any] | None = None,
    ) -> AggregateFunction[Any, Any, Any]:
        return Sum(of)

    summingDouble = summing_double
    summing_int = summing_double

    @staticmethod
    def averaging_double(
        of: str | Callable[[Any], Any] | None = None,
    ) -> AggregateFunction[Any, Any, Any]:
        return Avg(of)

    @staticmethod
    def to_list(of: str | Callable[[Any], Any] | None = None) -> AggregateFunction[Any, Any, Any]:
        return Collect(of)
