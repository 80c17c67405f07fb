"""State backends: where keyed state lives (seed §6.1 ``state.backend``, §12.2).

A backend hands out named tables scoped by ``step_id`` and subtask:

* ``StateTable``: key -> value;
* ``OrderedTable``: (time, key) -> value, read back in time order (windows, timers).

``memory`` keeps Python objects in dicts (fast; bounded by ``max_entries`` so
that a runaway key space fails clearly instead of exhausting memory);
``rocksdb`` (the ``rocksdict`` package) keeps pickled entries on disk, for
state larger than memory. Both snapshot and restore as a whole.
"""

from __future__ import annotations

import abc
import heapq
import pickle
import shutil
import struct
import tempfile
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reflow.errors import ReflowError

__all__ = [
    "MemoryBackend",
    "MemoryOrderedTable",
    "OrderedTable",
    "RocksDbBackend",
    "ScopeSnapshot",
    "StateBackend",
    "StateCapacityError",
    "StateTable",
    "Weigher",
    "create_backend",
]

Weigher = Callable[[Any], int]
"""How many entries a stored value counts for against the memory backend's cap."""

# Entries the memory backend holds (over all tables of a job) before it fails
# and asks for RocksDB: about 1-2 GB of typical small accumulators.
DEFAULT_MAX_ENTRIES = 10_000_000


class StateCapacityError(ReflowError):
    """The memory backend reached its entry cap."""


class StateTable(abc.ABC):
    """key -> value, for one named state of one step in one subtask."""

    @abc.abstractmethod
    def get(self, key: Hashable) -> Any: ...

    @abc.abstractmethod
    def put(self, key: Hashable, value: Any) -> None: ...

    @abc.abstractmethod
    def delete(self, key: Hashable) -> None: ...

    @abc.abstractmethod
    def items(self) -> Iterator[tuple[Any, Any]]: ...


class OrderedTable(abc.ABC):
    """(time, key) -> value, popped in time order."""

    @abc.abstractmethod
    def get(self, time: int, key: Hashable) -> Any: ...

    @abc.abstractmethod
    def put(self, time: int, key: Hashable, value: Any) -> None: ...

    @abc.abstractmethod
    def delete(self, time: int, key: Hashable) -> None: ...

    def append(self, time: int, key: Hashable, item: Any) -> None:
        """Add ``item`` to the end of the list held at (time, key) (a new list if none);
        an unhashable key raises TypeError before anything changed."""
        held = self.get(time, key)
        self.put(time, key, [item] if held is None else [*held, item])

    @abc.abstractmethod
    def pop_until(self, bound: int) -> list[tuple[int, Any, Any]]:
        """Remove and return every entry with time <= bound, in time order."""

    @abc.abstractmethod
    def items_until(self, bound: int) -> list[tuple[int, Any, Any]]:
        """Every entry with time <= bound, in time order, without removing."""

    def drop_until(self, bound: int) -> None:
        """Remove every entry with time <= bound (``pop_until`` without the list)."""
        self.pop_until(bound)

    @abc.abstractmethod
    def min_time(self) -> int | None: ...


@dataclass(slots=True)
class ScopeSnapshot:
    """The entries of one step in one subtask: tables by name, each a list of entries."""

    tables: dict[str, list[tuple[Any, Any]]] = field(default_factory=dict)
    ordered: dict[str, list[tuple[int, Any, Any]]] = field(default_factory=dict)

    def split(self, owner: Callable[[str, Any], int], parts: int) -> list[ScopeSnapshot]:
        """Redistribute entries over ``parts`` subtasks; ``owner(table, key)`` picks one."""
        out = [ScopeSnapshot() for _ in range(parts)]
        for name, entries in self.tables.items():
            for key, value in entries:
                out[owner(name, key)].tables.setdefault(name, []).append((key, value))
        for name, timed in self.ordered.items():
            for time, key, value in timed:
                out[owner(name, key)].ordered.setdefault(name, []).append((time, key, value))
        return out

    def merge(self, other: ScopeSnapshot) -> None:
        for name, entries in other.tables.items():
            self.tables.setdefault(name, []).extend(entries)
        for name, timed in other.ordered.items():
            self.ordered.setdefault(name, []).extend(timed)


class StateBackend(abc.ABC):
    name: str

    @abc.abstractmethod
    def table(
        self, step_id: str, subtask: int, name: str, weigh: Weigher | None = None
    ) -> StateTable:
        """A keyed table. ``weigh(value)`` tells how many entries a value counts for
        against a capped backend's budget (default 1): values that grow with their
        input, such as collected lists, are then capped like separate entries."""

    @abc.abstractmethod
    def ordered_table(
        self, step_id: str, subtask: int, name: str, weigh: Weigher | None = None
    ) -> OrderedTable:
        """A table ordered by time; ``weigh`` as for :meth:`table`."""

    @abc.abstractmethod
    def snapshot_scope(self, step_id: str, subtask: int) -> ScopeSnapshot:
        """Every entry of one step in one subtask (for checkpoints)."""

    def restore_scope(self, step_id: str, subtask: int, snapshot: ScopeSnapshot) -> None:
        """Add the entries of ``snapshot`` to one step in one subtask."""
        for name, entries in snapshot.tables.items():
            table = self.table(step_id, subtask, name)
            for key, value in entries:
                table.put(key, value)
        for name, timed in snapshot.ordered.items():
            ordered = self.ordered_table(step_id, subtask, name)
            for time, key, value in timed:
                ordered.put(time, key, value)

    @abc.abstractmethod
    def snapshot(self) -> dict[str, Any]:
        """Every entry, as picklable data."""

    @abc.abstractmethod
    def restore(self, snapshot: dict[str, Any]) -> None:
        """Replace the contents by a snapshot."""

    def close(self) -> None:
        """Release files; the backend is unusable afterwards."""


# -- memory ---------------------------------------------------------------------------------


class _Budget:
    __slots__ = ("entries", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.entries = 0

    def grow(self, where: str, by: int = 1) -> None:
        self.entries += by
        if by > 0 and self.entries > self.limit:
            raise StateCapacityError(
                f"the memory state backend holds more than {self.limit:,} entries (at {where}); "
                "set state.backend: rocksdb in the system config for state larger than memory, "
                "or raise state.max_entries"
            )


class _MemoryTable(StateTable):
    def __init__(self, budget: _Budget, where: str) -> None:
        self.data: dict[Any, Any] = {}
        self.budget = budget
        self.where = where
        self.weigh: Weigher | None = None
        self.weights: dict[Any, int] = {}
        """Each key's weight when it was put (values may change in place since)."""

    def set_weigher(self, weigh: Weigher) -> None:
        if self.weigh is weigh:
            return
        self.weigh = weigh
        for key, value in self.data.items():  # entries restored before the weigher
            weight = weigh(value)
            self.budget.grow(self.where, weight - self.weights.get(key, 1))
            self.weights[key] = weight

    def get(self, key: Hashable) -> Any:
        return self.data.get(key)

    def put(self, key: Hashable, value: Any) -> None:
        weigh = self.weigh
        if weigh is not None:
            weight = weigh(value)
            before = self.weights.get(key, 0)
            self.weights[key] = weight
            self.data[key] = value
            if weight != before:
                self.budget.grow(self.where, weight - before)
            return
        if key not in self.data:
            self.budget.grow(self.where)
        self.data[key] = value

    def delete(self, key: Hashable) -> None:
        if self.data.pop(key, _MISSING) is not _MISSING:
            self.budget.entries -= self.weights.pop(key, 1)

    def items(self) -> Iterator[tuple[Any, Any]]:
        return iter(list(self.data.items()))


_MISSING = object()


class MemoryOrderedTable(OrderedTable):
    def __init__(self, budget: _Budget, where: str) -> None:
        self.by_time: dict[int, dict[Any, Any]] = {}
        self.heap: list[int] = []
        self.budget = budget
        self.where = where
        self.weigh: Weigher | None = None
        self.weights: dict[tuple[int, Any], int] = {}
        """Weights of (time, key) entries weighing other than 1, when they were put."""

    def set_weigher(self, weigh: Weigher) -> None:
        if self.weigh is weigh:
            return
        self.weigh = weigh
        for time, bucket in self.by_time.items():
            for key, value in bucket.items():
                self._reweigh(time, key, value)

    def _reweigh(self, time: int, key: Hashable, value: Any) -> None:
        assert self.weigh is not None
        weight = self.weigh(value)
        before = self.weights.pop((time, key), 1)
        if weight != 1:
            self.weights[time, key] = weight
        if weight != before:
            self.budget.grow(self.where, weight - before)

    def get(self, time: int, key: Hashable) -> Any:
        bucket = self.by_time.get(time)
        return None if bucket is None else bucket.get(key)

    def put(self, time: int, key: Hashable, value: Any) -> None:
        bucket = self.by_time.get(time)
        if bucket is None:
            bucket = self.by_time[time] = {}
            heapq.heappush(self.heap, time)
        if key not in bucket:
            self.budget.grow(self.where)
        bucket[key] = value
        if self.weigh is not None:
            self._reweigh(time, key, value)

    def append(self, time: int, key: Hashable, item: Any) -> None:
        # The list grows in place: snapshots copy entries when they are taken. An
        # unhashable key raises TypeError before anything changed.
        bucket = self.by_time.get(time)
        if bucket is None:
            self.by_time[time] = bucket = {key: [item]}
            heapq.heappush(self.heap, time)
            self.budget.grow(self.where)
        else:
            held = bucket.get(key)
            if held is None:
                bucket[key] = [item]
                self.budget.grow(self.where)
            else:
                held.append(item)
        if self.weigh is not None:
            self._reweigh(time, key, bucket[key])

    def delete(self, time: int, key: Hashable) -> None:
        bucket = self.by_time.get(time)
        if bucket is not None and bucket.pop(key, _MISSING) is not _MISSING:
            self.budget.entries -= self.weights.pop((time, key), 1) if self.weights else 1
            if not bucket:
                del self.by_time[time]

    def _times_until(self, bound: int) -> list[int]:
        return sorted(t for t in self.by_time if t <= bound)

    def _pop_buckets(self, bound: int) -> Iterator[tuple[int, dict[Any, Any]]]:
        """Remove the buckets of times <= bound, in time order, yielding each."""
        heap = self.heap
        while heap and heap[0] <= bound:
            time = heapq.heappop(heap)
            bucket = self.by_time.pop(time, None)
            if bucket:
                self.budget.entries -= len(bucket)
                if self.weights:
                    weights = self.weights
                    for key in bucket:
                        self.budget.entries -= weights.pop((time, key), 1) - 1
                yield time, bucket

    def pop_until(self, bound: int) -> list[tuple[int, Any, Any]]:
        return [
            (time, key, value)
            for time, bucket in self._pop_buckets(bound)
            for key, value in bucket.items()
        ]

    def drop_until(self, bound: int) -> None:
        for _ in self._pop_buckets(bound):
            pass

    def items_until(self, bound: int) -> list[tuple[int, Any, Any]]:
        return [
            (time, key, value)
            for time in self._times_until(bound)
            for key, value in self.by_time[time].items()
        ]

    def min_time(self) -> int | None:
        heap = self.heap
        while heap and heap[0] not in self.by_time:
            heapq.heappop(heap)
        return heap[0] if heap else None


class MemoryBackend(StateBackend):
    """Python objects in dicts; the default."""

    name = "memory"

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.budget = _Budget(max_entries)
        self.tables: dict[str, _MemoryTable] = {}
        self.ordered: dict[str, MemoryOrderedTable] = {}

    def table(
        self, step_id: str, subtask: int, name: str, weigh: Weigher | None = None
    ) -> StateTable:
        scope = f"{step_id}/{subtask}/{name}"
        table = self.tables.get(scope)
        if table is None:
            table = self.tables[scope] = _MemoryTable(self.budget, f"step {step_id!r}")
        if weigh is not None:
            table.set_weigher(weigh)
        return table

    def ordered_table(
        self, step_id: str, subtask: int, name: str, weigh: Weigher | None = None
    ) -> OrderedTable:
        scope = f"{step_id}/{subtask}/{name}"
        table = self.ordered.get(scope)
        if table is None:
            table = self.ordered[scope] = MemoryOrderedTable(self.budget, f"step {step_id!r}")
        if weigh is not None:
            table.set_weigher(weigh)
        return table

    def snapshot_scope(self, step_id: str, subtask: int) -> ScopeSnapshot:
        prefix = f"{step_id}/{subtask}/"
        snap = ScopeSnapshot()
        for scope, table in self.tables.items():
            if scope.startswith(prefix) and table.data:
                snap.tables[scope[len(prefix) :]] = list(table.data.items())
        for scope, ordered in self.ordered.items():
            if scope.startswith(prefix) and ordered.by_time:
                snap.ordered[scope[len(prefix) :]] = [
                    (time, key, value)
                    for time in sorted(ordered.by_time)
                    for key, value in ordered.by_time[time].items()
                ]
        copied: ScopeSnapshot = pickle.loads(pickle.dumps(snap))
        return copied

    def snapshot(self) -> dict[str, Any]:
        data = {
            "tables": {scope: dict(t.data) for scope, t in self.tables.items()},
            "ordered": {
                scope: {time: dict(bucket) for time, bucket in t.by_time.items()}
                for scope, t in self.ordered.items()
            },
        }
        copied: dict[str, Any] = pickle.loads(pickle.dumps(data))
        return copied

    def restore(self, snapshot: dict[str, Any]) -> None:
        # Refill the existing table objects: handles given out before stay valid.
        self.budget.entries = 0
        for table in self.tables.values():
            table.data.clear()
            table.weights.clear()
        for ordered in self.ordered.values():
            ordered.by_time.clear()
            ordered.heap.clear()
            ordered.weights.clear()
        for scope, data in snapshot["tables"].items():
            step, subtask, name = scope.rsplit("/", 2)
            target = self.table(step, int(subtask), name)
            for key, value in data.items():
                target.put(key, value)
        for scope, by_time in snapshot["ordered"].items():
            step, subtask, name = scope.rsplit("/", 2)
            sorted_target = self.ordered_table(step, int(subtask), name)
            for time, bucket in by_time.items():
                for key, value in bucket.items():
                    sorted_target.put(time, key, value)


# -- RocksDB --------------------------------------------------------------------------------

_TIME = struct.Struct(">Q")
_TIME_OFFSET = 2**63  # signed times sort correctly as unsigned big-endian


def _dump(value: Any) -> bytes:
    return pickle.dumps(value, protocol=5)


class _RocksTable(StateTable):
    def __init__(self, db: Any, prefix: bytes) -> None:
        self.db = db
        self.prefix = prefix

    def get(self, key: Hashable) -> Any:
        raw = self.db.get(self.prefix + _dump(key))
        return None if raw is None else pickle.loads(raw)

    def put(self, key: Hashable, value: Any) -> None:
        self.db[self.prefix + _dump(key)] = _dump(value)

    def delete(self, key: Hashable) -> None:
        self.db.delete(self.prefix + _dump(key))

    def items(self) -> Iterator[tuple[Any, Any]]:
        it = self.db.iter()
        it.seek(self.prefix)
        size = len(self.prefix)
        out = []
        while it.valid():
            raw_key = it.key()
            if not raw_key.startswith(self.prefix):
                break
            out.append((pickle.loads(raw_key[size:]), pickle.loads(it.value())))
            it.next()
        return iter(out)


class _RocksOrdered(OrderedTable):
    def __init__(self, db: Any, prefix: bytes) -> None:
        self.db = db
        self.prefix = prefix

    def _key(self, time: int, key: Hashable) -> bytes:
        return self.prefix + _TIME.pack(time + _TIME_OFFSET) + _dump(key)

    def get(self, time: int, key: Hashable) -> Any:
        raw = self.db.get(self._key(time, key))
        return None if raw is None else pickle.loads(raw)

    def put(self, time: int, key: Hashable, value: Any) -> None:
        self.db[self._key(time, key)] = _dump(value)

    def delete(self, time: int, key: Hashable) -> None:
        self.db.delete(self._key(time, key))

    def _scan(self, bound: int | None) -> list[tuple[bytes, int, Any, Any]]:
        it = self.db.iter()
        it.seek(self.prefix)
        size = len(self.prefix)
        out = []
        while it.valid():
            raw_key = it.key()
            if not raw_key.startswith(self.prefix):
                break
            time = _TIME.unpack_from(raw_key, size)[0] - _TIME_OFFSET
            if bound is not None and time > bound:
                break
            out.append((raw_key, time, pickle.loads(raw_key[size + 8 :]), pickle.loads(it.value())))
            if bound is None:
                break
            it.next()
        return out

    def pop_until(self, bound: int) -> list[tuple[int, Any, Any]]:
        from rocksdict import WriteBatch

        found = self._scan(bound)
        if found:
            batch = WriteBatch(raw_mode=True)
            for raw_key, _, _, _ in found:
                batch.delete(raw_key)
            self.db.write(batch)
        return [(time, key, value) for _, time, key, value in found]

    def items_until(self, bound: int) -> list[tuple[int, Any, Any]]:
        return [(time, key, value) for _, time, key, value in self._scan(bound)]

    def min_time(self) -> int | None:
        first = self._scan(None)
        return first[0][1] if first else None


class RocksDbBackend(StateBackend):
    """Pickled entries in a RocksDB database (rocksdict), for state larger than memory."""

    name = "rocksdb"

    def __init__(
        self, path: str | Path | None = None, block_cache_bytes: int | None = None
    ) -> None:
        try:
            from rocksdict import Options, Rdict
        except ImportError as exc:  # pragma: no cover - rocksdict is a dependency
            raise ReflowError(
                "state.backend rocksdb needs the rocksdict package: pip install rocksdict"
            ) from exc
        self._owned = path is None
        self.path = (
            Path(path) if path is not None else Path(tempfile.mkdtemp(prefix="reflow-state-"))
        )
        self.path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        self.block_cache: Any = None
        if block_cache_bytes:  # seed §6.1 state.rocksdb.blockCacheSize
            from rocksdict import BlockBasedOptions, Cache

            self.block_cache = Cache(block_cache_bytes)
            table = BlockBasedOptions()
            table.set_block_cache(self.block_cache)
            options.set_block_based_table_factory(table)
        self.db = Rdict(str(self.path / "db"), options=options)

    def _prefix(self, kind: str, step_id: str, subtask: int, name: str) -> bytes:
        return f"{kind}/{step_id}/{subtask}/{name}/".encode()

    def table(
        self, step_id: str, subtask: int, name: str, weigh: Weigher | None = None
    ) -> StateTable:
        return _RocksTable(self.db, self._prefix("t", step_id, subtask, name))

    def ordered_table(
        self, step_id: str, subtask: int, name: str, weigh: Weigher | None = None
    ) -> OrderedTable:
        return _RocksOrdered(self.db, self._prefix("o", step_id, subtask, name))

    def snapshot_scope(self, step_id: str, subtask: int) -> ScopeSnapshot:
        snap = ScopeSnapshot()
        for kind in ("t", "o"):
            prefix = f"{kind}/{step_id}/{subtask}/".encode()
            it = self.db.iter()
            it.seek(prefix)
            while it.valid():
                raw_key = it.key()
                if not raw_key.startswith(prefix):
                    break
                name, _, rest = raw_key[len(prefix) :].partition(b"/")
                value = pickle.loads(it.value())
                if kind == "t":
                    snap.tables.setdefault(name.decode(), []).append((pickle.loads(rest), value))
                else:
                    time = _TIME.unpack_from(rest)[0] - _TIME_OFFSET
                    entry = (time, pickle.loads(rest[8:]), value)
                    snap.ordered.setdefault(name.decode(), []).append(entry)
                it.next()
        return snap

    def snapshot(self) -> dict[str, Any]:
        return {"rocksdb": dict(self.db.items())}

    def restore(self, snapshot: dict[str, Any]) -> None:
        from rocksdict import WriteBatch

        batch = WriteBatch(raw_mode=True)
        for key in list(self.db.keys()):
            batch.delete(key)
        for key, value in snapshot["rocksdb"].items():
            batch.put(key, value)
        self.db.write(batch)

    def close(self) -> None:
        self.db.close()
        if self._owned:
            shutil.rmtree(self.path, ignore_errors=True)


def create_backend(
    kind: str,
    *,
    path: str | Path | None = None,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    block_cache_bytes: int | None = None,
) -> StateBackend:
    """The backend named by the system config's ``state.backend`` (RocksDB with the
    block cache of ``state.rocksdb.blockCacheSize``)."""
    if kind == "memory":
        return MemoryBackend(max_entries)
    if kind == "rocksdb":
        return RocksDbBackend(path, block_cache_bytes)
    raise ReflowError(f"unknown state backend {kind!r}; use memory or rocksdb")
