"""Keyed state handles: ValueState, ListState, MapState, ReducingState, AggregatingState.

Each handle reads and writes the entry of the *current key*, which the
runtime sets before it calls a keyed user function. With a time-to-live, an
entry older than ``ttl_ms`` (since its last write) reads as absent and is
deleted on access.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Any, Generic, TypeVar

from reflow.eventtime.clock import Clock, SystemClock
from reflow.state.backend import StateBackend, StateTable
from reflow.state.functions import AggregateFunction

__all__ = [
    "AggregatingState",
    "KeyedStateStore",
    "ListState",
    "MapState",
    "ReducingState",
    "ValueState",
]

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")


class KeyedStateStore:
    """The keyed state of one step in one subtask; ``current_key`` selects the entry."""

    def __init__(
        self, backend: StateBackend, step_id: str, subtask: int, clock: Clock | None = None
    ) -> None:
        self.backend = backend
        self.step_id = step_id
        self.subtask = subtask
        self.clock = clock or SystemClock()
        self.current_key: Hashable = None
        self._handles: dict[str, Any] = {}

    def _table(self, name: str) -> StateTable:
        return self.backend.table(self.step_id, self.subtask, name)

    def _handle(self, name: str, factory: Callable[[], Any]) -> Any:
        if name not in self._handles:
            self._handles[name] = factory()
        return self._handles[name]

    def value_state(self, name: str, ttl_ms: int | None = None) -> ValueState[Any]:
        return self._handle(name, lambda: ValueState(self, self._table(name), ttl_ms))  # type: ignore[no-any-return]

    def list_state(self, name: str, ttl_ms: int | None = None) -> ListState[Any]:
        return self._handle(name, lambda: ListState(self, self._table(name), ttl_ms))  # type: ignore[no-any-return]

    def map_state(self, name: str, ttl_ms: int | None = None) -> MapState[Any, Any]:
        return self._handle(name, lambda: MapState(self, self._table(name), ttl_ms))  # type: ignore[no-any-return]

    def reducing_state(
        self, name: str, reduce: Callable[[Any, Any], Any], ttl_ms: int | None = None
    ) -> ReducingState[Any]:
        return self._handle(  # type: ignore[no-any-return]
            name, lambda: ReducingState(self, self._table(name), ttl_ms, reduce)
        )

    def aggregating_state(
        self, name: str, function: AggregateFunction[Any, Any, Any], ttl_ms: int | None = None
    ) -> AggregatingState[Any, Any]:
        return self._handle(  # type: ignore[no-any-return]
            name, lambda: AggregatingState(self, self._table(name), ttl_ms, function)
        )


class _Handle(Generic[T]):
    def __init__(self, store: KeyedStateStore, table: StateTable, ttl_ms: int | None) -> None:
        self.store = store
        self.table = table
        self.ttl_ms = ttl_ms

    def _read(self) -> Any:
        raw = self.table.get(self.store.current_key)
        if raw is None or self.ttl_ms is None:
            return raw
        value, expires = raw
        if expires <= self.store.clock.now_ms():
            self.table.delete(self.store.current_key)
            return None
        return value

    def _write(self, value: Any) -> None:
        if self.ttl_ms is not None:
            value = (value, self.store.clock.now_ms() + self.ttl_ms)
        self.table.put(self.store.current_key, value)

    def clear(self) -> None:
        """Remove the current key's entry."""
        self.table.delete(self.store.current_key)


class ValueState(_Handle[T]):
    """One value per key."""

    def value(self, default: T | None = None) -> T | None:
        found = self._read()
        return default if found is None else found

    def update(self, value: T) -> None:
        self._write(value)


class ListState(_Handle[T]):
    """A list per key."""

    def get(self) -> list[T]:
        return list(self._read() or [])

    def add(self, value: T) -> None:
        items = self._read() or []
        items.append(value)
        self._write(items)

    def add_all(self, values: Iterable[T]) -> None:
        items = self._read() or []
        items.extend(values)
        self._write(items)

    def update(self, values: Iterable[T]) -> None:
        self._write(list(values))


class MapState(_Handle[dict[K, V]], Generic[K, V]):
    """A dict per key."""

    def _map(self) -> dict[K, V]:
        return dict(self._read() or {})

    def get(self, key: K, default: V | None = None) -> V | None:
        return self._map().get(key, default)

    def put(self, key: K, value: V) -> None:
        mapping = self._map()
        mapping[key] = value
        self._write(mapping)

    def remove(self, key: K) -> None:
        mapping = self._map()
        mapping.pop(key, None)
        self._write(mapping)

    def contains(self, key: K) -> bool:
        return key in self._map()

    def items(self) -> list[tuple[K, V]]:
        return list(self._map().items())

    def keys(self) -> list[K]:
        return list(self._map())

    def values(self) -> list[V]:
        return list(self._map().values())


class ReducingState(_Handle[T]):
    """A value per key, combined with each added value by ``reduce``."""

    def __init__(
        self,
        store: KeyedStateStore,
        table: StateTable,
        ttl_ms: int | None,
        reduce: Callable[[T, T], T],
    ) -> None:
        super().__init__(store, table, ttl_ms)
        self.reduce = reduce

    def get(self) -> T | None:
        return self._read()  # type: ignore[no-any-return]

    def add(self, value: T) -> None:
        current = self._read()
        self._write(value if current is None else self.reduce(current, value))


class AggregatingState(_Handle[Any], Generic[T, V]):
    """An accumulator per key, fed by ``add``; ``get`` returns the function's result."""

    def __init__(
        self,
        store: KeyedStateStore,
        table: StateTable,
        ttl_ms: int | None,
        function: AggregateFunction[T, Any, V],
    ) -> None:
        super().__init__(store, table, ttl_ms)
        self.function = function

    def get(self) -> V | None:
        acc = self._read()
        return None if acc is None else self.function.result(acc)

    def add(self, value: T) -> None:
        acc = self._read()
        if acc is None:
            acc = self.function.create()
        self._write(self.function.add(acc, value))
