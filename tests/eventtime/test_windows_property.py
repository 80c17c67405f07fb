"""Property tests: window results equal a plain batch computation, in every configuration.

For random event streams with bounded disorder (never more than the watermark's
out-of-orderness), tumbling, sliding and session windows give exactly the
reference results, with chaining on and off, parallelism 1 and 4, and on the
memory and RocksDB state backends.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reflow import Flow, JobStatus
from reflow.operators import Aggregations, Windows, WindowSpec
from reflow.runtime import ExecutorSettings
from reflow.testing import TestingSink, TestingSource, run_job

DISORDER_MS = 300


@st.composite
def streams(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Records in arrival order; each ts >= (max ts seen so far) - DISORDER_MS."""
    n = draw(st.integers(min_value=0, max_value=120))
    base = 1_000_000
    events = []
    for i in range(n):
        base += draw(st.integers(min_value=0, max_value=250))
        lag = draw(st.integers(min_value=0, max_value=DISORDER_MS))
        key = draw(st.sampled_from(["a", "b", "c", "d", "e"]))
        events.append({"id": i, "key": key, "ts": base - lag, "v": draw(st.integers(-5, 20))})
    return events


def reference(events: list[dict[str, Any]], window: WindowSpec) -> list[tuple[Any, ...]]:
    sums: dict[tuple[Any, int, int], list[int]] = defaultdict(list)
    if window.kind in ("tumbling", "sliding"):
        size, slide = window.size_ms, window.slide_ms
        for e in events:
            end = e["ts"] - e["ts"] % slide + slide
            while end - size <= e["ts"]:
                sums[(e["key"], end - size, end)].append(e["v"])
                end += slide
    else:
        by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for e in events:
            by_key[e["key"]].append(e)
        for key, items in by_key.items():
            items.sort(key=lambda e: e["ts"])
            start, end, values = None, None, []
            for e in items:
                if end is not None and e["ts"] < end:
                    end = max(end, e["ts"] + window.gap_ms)
                    values.append(e["v"])
                    continue
                if start is not None:
                    sums[(key, start, end)] = values
                start, end, values = e["ts"], e["ts"] + window.gap_ms, [e["v"]]
            if start is not None:
                sums[(key, start, end)] = values
    return sorted((k, s, e, sum(v), len(v)) for (k, s, e), v in sums.items())


def run_windows(
    events: list[dict[str, Any]], window: WindowSpec, parallelism: int, chaining: bool, backend: str
) -> list[tuple[Any, ...]]:
    flow = Flow("prop", parallelism=parallelism, chaining=chaining, batch_size=7)
    sink = TestingSink()
    (
        flow.source(TestingSource(events))
        .assign_timestamps("ts", max_out_of_orderness_ms=DISORDER_MS)
        .key_by("key")
        .window(window)
        .aggregate(
            Aggregations.collect("v"),
            emit=lambda k, s, e, vs: (k, s, e, sum(vs), len(vs)),
        )
        .sink(sink)
    )
    result = run_job(flow.to_job(), ExecutorSettings(state_backend=backend))
    assert result.status is JobStatus.COMPLETED, result.error
    assert result.metrics.step("window").late == 0
    return sorted(sink.records)


CONFIGS = [
    pytest.param(p, c, b, id=f"p{p}-{'chained' if c else 'unchained'}-{b}")
    for p in (1, 4)
    for c in (True, False)
    for b in ("memory", "rocksdb")
]
WINDOWS = {
    "tumbling": Windows.tumbling(1_000),
    "sliding": Windows.sliding(1_500, 500),
    "sliding-uneven": Windows.sliding(1_000, 400),
    "session": Windows.session(400),
}


@pytest.mark.parametrize("parallelism,chaining,backend", CONFIGS)
@pytest.mark.parametrize("kind", list(WINDOWS))
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=streams())
def test_windows_equal_the_batch_reference(
    events: list[dict[str, Any]], kind: str, parallelism: int, chaining: bool, backend: str
) -> None:
    window = WINDOWS[kind]
    assert run_windows(events, window, parallelism, chaining, backend) == reference(events, window)
