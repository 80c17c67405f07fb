"""Keyed state: backends (memory, RocksDB), handles with TTL, aggregate functions."""

from reflow.state.backend import (
    MemoryBackend,
    OrderedTable,
    RocksDbBackend,
    StateBackend,
    StateCapacityError,
    StateTable,
    create_backend,
)
from reflow.state.functions import AggregateFunction
from reflow.state.keyed import (
    AggregatingState,
    KeyedStateStore,
    ListState,
    MapState,
    ReducingState,
    ValueState,
)

__all__ = [
    "AggregateFunction",
    "AggregatingState",
    "KeyedStateStore",
    "ListState",
    "MapState",
    "MemoryBackend",
    "OrderedTable",
    "ReducingState",
    "RocksDbBackend",
    "StateBackend",
    "StateCapacityError",
    "StateTable",
    "ValueState",
    "create_backend",
]
