"""Keyed state on both backends: handles, TTL, snapshots, and state larger than the memory cap."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reflow import Flow, JobStatus
from reflow.eventtime import ManualClock
from reflow.operators import Aggregations
from reflow.runtime import ExecutorSettings
from reflow.state import (
    KeyedStateStore,
    MemoryBackend,
    RocksDbBackend,
    StateBackend,
    StateCapacityError,
)
from reflow.testing import TestingSink, TestingSource, run_job


@pytest.fixture(params=["memory", "rocksdb"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateBackend]:
    made: StateBackend = MemoryBackend() if request.param == "memory" else RocksDbBackend(tmp_path)
    yield made
    made.close()


def test_value_list_map_reducing_aggregating(backend: StateBackend) -> None:
    store = KeyedStateStore(backend, "step", 0)
    value = store.value_state("v")
    items = store.list_state("l")
    mapping = store.map_state("m")
    total = store.reducing_state("r", lambda a, b: a + b)
    average = store.aggregating_state("a", Aggregations.avg())
    for key in ("alice", "bob"):
        store.current_key = key
        value.update(len(key))
        items.add(key)
        items.add_all([1, 2])
        mapping.put("first", key[0])
        for n in (1, 2, 3):
            total.add(n)
            average.add(n * len(key))
    store.current_key = "alice"
    assert value.value() == 5
    assert items.get() == ["alice", 1, 2]
    assert mapping.get("first") == "a" and mapping.contains("first")
    assert total.get() == 6
    assert average.get() == 10.0
    store.current_key = "bob"
    assert value.value() == 3 and mapping.items() == [("first", "b")]
    value.clear()
    assert value.value() is None and value.value(default=7) == 7
    store.current_key = "carol"
    assert items.get() == [] and total.get() is None


def test_ttl_expires_entries(backend: StateBackend) -> None:
    clock = ManualClock(start_ms=1_000)
    store = KeyedStateStore(backend, "step", 0, clock)
    session = store.value_state("session", ttl_ms=5_000)
    store.current_key = "u1"
    session.update("open")
    clock.advance(4.9)
    assert session.value() == "open"
    session.update("refreshed")  # a write restarts the time-to-live
    clock.advance(4.9)
    assert session.value() == "refreshed"
    clock.advance(0.2)
    assert session.value() is None
    assert backend.table("step", 0, "session").get("u1") is None  # deleted on access


def test_snapshot_and_restore(backend: StateBackend) -> None:
    table = backend.table("s", 0, "t")
    ordered = backend.ordered_table("s", 0, "o")
    table.put(("k", 1), {"n": 1})
    ordered.put(5, "a", 1)
    ordered.put(-3, "b", 2)
    snapshot = backend.snapshot()
    table.put(("k", 1), {"n": 99})
    ordered.pop_until(10)
    backend.restore(snapshot)
    assert table.get(("k", 1)) == {"n": 1}
    assert backend.ordered_table("s", 0, "o").items_until(10) == [(-3, "b", 2), (5, "a", 1)]


def test_ordered_table_pops_in_time_order(backend: StateBackend) -> None:
    ordered = backend.ordered_table("s", 1, "o")
    for t, k in [(30, "c"), (-10, "a"), (20, "b"), (20, "bb")]:
        ordered.put(t, k, t)
    assert ordered.min_time() == -10
    popped = ordered.pop_until(20)
    assert [t for t, _, _ in popped] == [-10, 20, 20]
    assert ordered.min_time() == 30


def test_ordered_table_appends_to_the_list_at_a_time_and_key(backend: StateBackend) -> None:
    ordered = backend.ordered_table("s", 2, "o")
    for t, k, item in [(5, "a", 1), (5, "a", 2), (5, "b", 3), (1, "a", 4), (5, "a", 5)]:
        ordered.append(t, k, item)
    snapshot = backend.snapshot_scope("s", 2)
    ordered.append(5, "a", 6)  # after the snapshot: not in it
    assert ordered.pop_until(5) == [(1, "a", [4]), (5, "a", [1, 2, 5, 6]), (5, "b", [3])]
    assert ordered.min_time() is None
    backend.restore_scope("s", 2, snapshot)
    assert backend.ordered_table("s", 2, "o").items_until(5) == [
        (1, "a", [4]),
        (5, "a", [1, 2, 5]),
        (5, "b", [3]),
    ]


def _keyed_sum(keys: int, settings: ExecutorSettings) -> tuple[JobStatus, str | None, int]:
    flow = Flow("many-keys", parallelism=2)
    sink = TestingSink()
    (
        flow.source(TestingSource({"k": i % keys, "v": 1} for i in range(keys * 2)))
        .key_by("k")
        .aggregate(Aggregations.sum("v"))
        .sink(sink)
    )
    result = run_job(flow.to_job(), settings)
    return result.status, result.error, len(sink.records)


def test_more_keys_than_the_memory_cap_complete_on_rocksdb(tmp_path: Path) -> None:
    status, error, _ = _keyed_sum(20_000, ExecutorSettings(state_max_entries=5_000))
    assert status is JobStatus.FAILED
    assert "more than 5,000 entries" in (error or "") and "rocksdb" in (error or "")
    status, error, emitted = _keyed_sum(
        20_000,
        ExecutorSettings(
            state_backend="rocksdb", state_path=str(tmp_path / "state"), state_max_entries=5_000
        ),
    )
    assert status is JobStatus.COMPLETED, error
    assert emitted == 20_000


def test_memory_cap_error_is_a_state_capacity_error() -> None:
    backend = MemoryBackend(max_entries=2)
    table = backend.table("s", 0, "t")
    table.put(1, 1)
    table.put(2, 2)
    table.put(2, 3)  # an update is not a new entry
    with pytest.raises(StateCapacityError):
        table.put(3, 3)
