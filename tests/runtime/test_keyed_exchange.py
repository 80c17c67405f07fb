"""A keyed exchange computes each record's key once: the sending router picks the
subtask by it and hands it over with the record (``KeyedBatch``), and the keyed
step at the other end uses it instead of calling the key selector again."""

from __future__ import annotations

import operator
import pickle
import threading
from collections import Counter
from typing import Any

import pytest

from reflow import ErrorMode, ErrorPolicy, JobStatus, Operators
from reflow.api import Flow
from reflow.graph.partitioning import same_key_selector
from reflow.operators import Windows
from reflow.operators.aggregations import Sum
from reflow.operators.base import KeyedBatch
from reflow.testing import TestingSink, TestingSource, run_job

pytestmark = pytest.mark.local_only  # counts calls of a closure in this process

RECORDS = [{"k": i % 7, "g": i % 3, "v": i, "ts": i * 10} for i in range(3_000)]


class CountingKey:
    """A key selector that counts its calls (from any thread)."""

    def __init__(self, field: str) -> None:
        self.field = field
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, record: dict[str, Any]) -> Any:
        with self.lock:
            self.calls += 1
        return record[self.field]


def _sums(records: list[dict[str, Any]], field: str) -> dict[Any, int]:
    totals: Counter[Any] = Counter()
    for record in records:
        totals[record[field]] += record["v"]
    return dict(totals)


@pytest.mark.parametrize("parallelism", [1, 3])
def test_the_key_selector_runs_once_per_record(parallelism: int) -> None:
    key = CountingKey("k")
    out = TestingSink()
    flow = Flow("keyed-once", parallelism=parallelism)
    flow.source(TestingSource(RECORDS, parallelism=1)).key_by(key).aggregate(
        Sum("v"), emit="final", output=lambda k, total: (k, total)
    ).sink(out)
    result = run_job(flow.to_job())
    assert result.status is JobStatus.COMPLETED, result.error
    assert dict(out.records) == _sums(RECORDS, "k")
    assert key.calls == len(RECORDS)  # was 2x at parallelism 3: router and aggregate


def test_a_window_after_a_keyed_exchange_uses_the_handed_over_keys() -> None:
    key = CountingKey("k")
    out = TestingSink()
    flow = Flow("window-once", parallelism=2)
    flow.source(TestingSource(RECORDS, parallelism=1)).assign_timestamps("ts").key_by(key).window(
        Windows.tumbling(1_000)
    ).aggregate(Sum("v"), emit=lambda k, start, end, total: (k, start, total)).sink(out)
    result = run_job(flow.to_job())
    assert result.status is JobStatus.COMPLETED, result.error
    expected: Counter[tuple[Any, int]] = Counter()
    for r in RECORDS:
        expected[(r["k"], r["ts"] - r["ts"] % 1_000)] += r["v"]
    assert {(k, s): t for k, s, t in out.records} == dict(expected)
    assert key.calls == len(RECORDS)


def test_records_rejected_for_their_timestamp_do_not_shift_the_keys() -> None:
    """A batch that loses records to the error policy (bad timestamp) recomputes its
    keys instead of pairing the survivors with the wrong ones."""
    bad = {i for i in range(0, 3_000, 11)}
    records: list[dict[str, Any]] = [dict(r, ts=None) if r["v"] in bad else r for r in RECORDS]
    out, dead = TestingSink(), TestingSink()
    policy = ErrorPolicy(ErrorMode.DEAD_LETTER, dead_letter=dead)
    flow = Flow("window-bad-ts", parallelism=2, error_policy=policy)
    window = Operators.window_aggregate(
        Windows.tumbling(1_000),
        "k",
        Sum("v"),
        timestamp="ts",
        emit=lambda k, start, end, total: (k, start, total),
    )
    flow.source(TestingSource(records, parallelism=1)).key_by("k").transform(window).sink(out)
    result = run_job(flow.to_job())
    assert result.status is JobStatus.COMPLETED, result.error
    expected: Counter[tuple[Any, int]] = Counter()
    for r in records:
        if r["ts"] is not None:
            expected[(r["k"], r["ts"] - r["ts"] % 1_000)] += r["v"]
    assert {(k, s): t for k, s, t in out.records} == dict(expected)
    assert len(dead.records) == len(bad)


def test_a_step_keyed_differently_from_its_exchange_computes_its_own_keys() -> None:
    """key_by("k") then an aggregate by "g": the routed keys are not the step's keys."""
    out = TestingSink()
    flow = Flow("other-key", parallelism=3)
    keyed: Any = flow.source(TestingSource(RECORDS, parallelism=1)).key_by("k")
    keyed.transform(
        _aggregate_by("g"),
    ).sink(out)
    result = run_job(flow.to_job())
    assert result.status is JobStatus.COMPLETED, result.error
    # Records of one g are spread over the subtasks (routed by k): each subtask sums
    # its share, and the shares add up to the totals per g.
    totals: Counter[Any] = Counter()
    for g, total in out.records:
        totals[g] += total
    assert dict(totals) == _sums(RECORDS, "g")


def _aggregate_by(field: str) -> Any:
    return Operators.aggregate(
        field, aggregate=Sum("v"), emit="final", output=lambda k, total: (k, total)
    )


def test_a_key_that_cannot_be_computed_goes_to_the_key_by_steps_policy() -> None:
    records = [*RECORDS[:100], {"v": -1}, *RECORDS[100:200]]
    out, dead = TestingSink(), TestingSink()
    policy = ErrorPolicy(ErrorMode.FAIL, dead_letter=dead, per_step={"by-k": ErrorMode.DEAD_LETTER})
    flow = Flow("bad-key", parallelism=2, error_policy=policy)
    flow.source(TestingSource(records, parallelism=1)).key_by("k", id="by-k").aggregate(
        Sum("v"), emit="final", output=lambda k, total: (k, total)
    ).sink(out)
    result = run_job(flow.to_job())
    assert result.status is JobStatus.COMPLETED, result.error
    assert dict(out.records) == _sums(records[:100] + records[101:], "k")
    assert [d["record"] for d in dead.records] == [{"v": -1}]
    assert dead.records[0]["step_id"] == "by-k"


def test_keyed_batches_keep_their_keys_across_processes() -> None:
    batch = KeyedBatch()
    batch.extend([{"k": 1}, {"k": 2}])
    batch.keys.extend([1, 2])
    copy = pickle.loads(pickle.dumps(batch, protocol=5))
    assert type(copy) is KeyedBatch
    assert list(copy) == [{"k": 1}, {"k": 2}] and copy.keys == [1, 2]


def test_field_getters_made_twice_count_as_the_same_key() -> None:
    assert same_key_selector(operator.itemgetter("k"), operator.itemgetter("k"))
    assert not same_key_selector(operator.itemgetter("k"), operator.itemgetter("g"))
    assert not same_key_selector(operator.itemgetter("k"), operator.attrgetter("k"))
    assert not same_key_selector(lambda r: r["k"], lambda r: r["k"])
    assert not same_key_selector(None, None)
