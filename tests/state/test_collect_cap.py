"""``collect`` keeps a list that grows with its input: each element counts against the
memory backend's entry cap (in session, tumbling and global windows and keyed
aggregates), the budget is given back when the state goes, and a session window
adds each record to its session in place instead of copying the list per record."""

from __future__ import annotations

from typing import Any

import pytest

from reflow import Flow, JobStatus
from reflow.operators import Aggregations, Windows, WindowSpec
from reflow.operators.aggregations import Collect
from reflow.runtime import ExecutorSettings
from reflow.state import MemoryBackend
from reflow.testing import TestingSink, TestingSource, run_job


def _window_job(window: WindowSpec | None, records: int, cap: int) -> tuple[Any, TestingSink]:
    flow = Flow("collect", parallelism=1)
    sink = TestingSink()
    keyed: Any = (
        flow.source(TestingSource({"k": "a", "ts": i, "v": i} for i in range(records)))
        .assign_timestamps("ts")
        .key_by("k")
    )
    aggregate = Aggregations.collect("v")
    if window is None:
        keyed.aggregate(aggregate, emit="final").sink(sink)
    else:
        keyed.window(window).aggregate(aggregate, emit=lambda k, s, e, vs: vs).sink(sink)
    return run_job(flow.to_job(), ExecutorSettings(state_max_entries=cap)), sink


@pytest.mark.parametrize(
    "window",
    [Windows.session(1_000), Windows.tumbling(10_000), Windows.global_count(10_000), None],
    ids=["session", "tumbling", "count", "keyed-aggregate"],
)
def test_a_collected_list_counts_each_element_against_the_entry_cap(
    window: WindowSpec | None,
) -> None:
    # One key, one window: 3,000 elements in one state entry.
    result, _ = _window_job(window, 3_000, cap=1_000)
    assert result.status is JobStatus.FAILED
    assert "more than 1,000 entries" in (result.error or "")
    assert "state.max_entries" in (result.error or "")

    result, sink = _window_job(window, 3_000, cap=10_000)
    assert result.status is JobStatus.COMPLETED, result.error
    collected = sink.records[0]["v"] if window is None else sink.records[0]
    assert collected == list(range(3_000))


def test_the_budget_is_given_back_when_weighed_state_goes() -> None:
    backend = MemoryBackend(max_entries=100)
    table = backend.table("s", 0, "t", weigh=len)
    table.put("a", [1] * 60)
    table.put("b", [])  # weighs nothing
    assert backend.budget.entries == 60
    table.put("a", [1] * 90)
    assert backend.budget.entries == 90
    table.delete("a")
    assert backend.budget.entries == 0
    ordered = backend.ordered_table("s", 0, "o", weigh=len)
    ordered.put(1, "x", [1] * 50)
    ordered.put(2, "x", [1] * 40)
    ordered.delete(2, "x")
    assert backend.budget.entries == 50
    ordered.pop_until(1)
    assert backend.budget.entries == 0
    # Restored entries are weighed again.
    table.put("c", [1] * 70)
    snapshot = backend.snapshot()
    backend.restore(snapshot)
    assert backend.budget.entries == 70


class _CountingCollect(Collect):
    copied = 0

    def merge(self, a: Any, b: Any) -> Any:
        _CountingCollect.copied += len(a) + len(b)
        return super().merge(a, b)


def test_a_session_window_does_not_copy_its_list_per_record() -> None:
    _CountingCollect.copied = 0
    flow = Flow("sessions", parallelism=1)
    sink = TestingSink()
    # 5,000 records in one session, then two sessions bridged by a third record.
    records = [{"k": "a", "ts": i} for i in range(5_000)]
    records += [{"k": "b", "ts": t} for t in (100_000, 102_000, 101_000)]
    (
        flow.source(TestingSource(records))
        .assign_timestamps("ts", max_out_of_orderness_ms=5_000)
        .key_by("k")
        .window(Windows.session(1_500))
        .aggregate(_CountingCollect("ts"), emit=lambda k, s, e, vs: (k, s, e, vs))
        .sink(sink)
    )
    result = run_job(flow.to_job())
    assert result.status is JobStatus.COMPLETED, result.error
    assert sorted(sink.records) == [
        ("a", 0, 4_999 + 1_500, list(range(5_000))),
        ("b", 100_000, 103_500, [100_000, 101_000, 102_000]),
    ]
    assert _CountingCollect.copied == 3  # only the bridge merged two lists (of 2 and 1)
