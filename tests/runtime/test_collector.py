"""The cyclic garbage collector's first threshold is raised while jobs run and put
back when the last one ends (``reflow.runtime.collector``)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

from reflow import Flow
from reflow.config.system import executor_settings, load_system_config_text
from reflow.runtime import ExecutorSettings
from reflow.runtime.collector import DEFAULT_GC_THRESHOLD, collector_tuned
from reflow.testing import TestingSink, TestingSource, run_job


@pytest.fixture(autouse=True)
def pythons_threshold() -> Iterator[None]:
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*before)


def test_nested_and_overlapping_blocks_share_one_setting_put_back_by_the_last() -> None:
    outer = collector_tuned(5_000)
    inner = collector_tuned(20_000)
    outer.__enter__()
    assert gc.get_threshold() == (5_000, 10, 10)
    inner.__enter__()  # a second job while the first runs: the first one's setting holds
    assert gc.get_threshold() == (5_000, 10, 10)
    outer.__exit__(None, None, None)  # the first job ends before the second
    assert gc.get_threshold() == (5_000, 10, 10)
    inner.__exit__(None, None, None)
    assert gc.get_threshold() == (700, 10, 10)


def test_a_threshold_changed_while_jobs_run_is_left_as_changed() -> None:
    with collector_tuned(5_000):
        gc.set_threshold(123, 4, 5)
    assert gc.get_threshold() == (123, 4, 5)


def test_a_higher_threshold_set_before_is_kept_and_none_changes_nothing() -> None:
    gc.set_threshold(50_000, 10, 10)
    with collector_tuned(5_000):
        assert gc.get_threshold() == (50_000, 10, 10)
    gc.set_threshold(700, 10, 10)
    with collector_tuned(None):
        assert gc.get_threshold() == (700, 10, 10)


def _threshold_seen_by_a_job(settings: ExecutorSettings) -> set[tuple[int, int, int]]:
    seen: set[tuple[int, int, int]] = set()

    def look(record: Any) -> Any:
        seen.add(gc.get_threshold())
        return record

    sink = TestingSink()
    flow = Flow("gc")
    flow.source(TestingSource(list(range(500)))).map(look).sink(sink)
    result = run_job(flow.to_job(), settings)
    assert result.error is None
    assert sorted(sink.records) == list(range(500))
    return seen


def test_a_job_runs_with_the_raised_threshold_and_puts_pythons_back() -> None:
    assert _threshold_seen_by_a_job(ExecutorSettings()) == {(DEFAULT_GC_THRESHOLD, 10, 10)}
    assert gc.get_threshold() == (700, 10, 10)
    assert _threshold_seen_by_a_job(ExecutorSettings(gc_threshold=None)) == {(700, 10, 10)}


def test_the_system_config_sets_the_threshold() -> None:
    def threshold(executor: str) -> int | None:
        config = load_system_config_text(f"system:\n  executor: {executor}\n")
        return executor_settings(config).gc_threshold

    assert threshold("{parallelism: 1}") == DEFAULT_GC_THRESHOLD
    assert threshold("{gcThreshold: 25000}") == 25_000
    assert threshold("{gcThreshold: null}") is None
    with pytest.raises(Exception, match="gcThreshold"):
        threshold("{gcThreshold: 0}")
