"""Under skip and dead-letter, bad records follow the policy instead of failing the
job: undecodable text, corrupt Parquet files, records without their key (also when
the key is computed in an exchange between subtasks), None values in aggregates.
Every record is accounted for: written, or counted and dead-lettered. And NaN in
min/max gives the same result in every arrival order."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reflow import Connectors, ErrorMode, ErrorPolicy, Flow, JobStatus
from reflow.operators import Aggregations, Windows
from reflow.testing import TestingSink, TestingSource, run_job


def _run(build: Any, parallelism: int = 1) -> tuple[Any, TestingSink, TestingSink]:
    dead, out = TestingSink(), TestingSink()
    flow = Flow(
        "bad",
        parallelism=parallelism,
        error_policy=ErrorPolicy(ErrorMode.DEAD_LETTER, dead_letter=dead),
    )
    build(flow).sink(out)
    result = run_job(flow.to_job())
    assert result.status is JobStatus.COMPLETED, result.error
    return result, out, dead


def test_lines_that_are_not_valid_text_are_dead_lettered(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_bytes(b"ok1\n\xff\xfebad\nok2\n" + b"".join(b"x%d\n" % i for i in range(500)))
    _, out, dead = _run(lambda f: f.source(Connectors.file(path=str(path), format="text")))
    assert out.records[:2] == ["ok1", "ok2"] and len(out.records) == 502
    assert len(dead.records) == 1
    assert f"{path}:2: not valid utf-8" in dead.records[0]["error"]


def test_a_corrupt_parquet_file_is_dead_lettered_and_the_others_are_read(tmp_path: Path) -> None:
    pq.write_table(pa.Table.from_pylist([{"n": i} for i in range(10)]), tmp_path / "a.parquet")
    (tmp_path / "b.parquet").write_bytes(b"PAR1 this is not parquet")
    pq.write_table(pa.Table.from_pylist([{"n": i} for i in range(10, 15)]), tmp_path / "c.parquet")
    source = Connectors.file(path=str(tmp_path / "*.parquet"), format="parquet")
    _, out, dead = _run(lambda f: f.source(source))
    assert sorted(r["n"] for r in out.records) == list(range(15))
    assert [d["record"]["file"] for d in dead.records] == [str(tmp_path / "b.parquet")]
    assert "cannot be opened as Parquet" in dead.records[0]["error"]


RECORDS = [
    {"k": 1, "v": 1, "ts": 1},
    {"v": 2, "ts": 2},  # no key
    {"k": 1, "v": None, "ts": 3},  # no value
    {"k": 2, "v": 5, "ts": 4},
    {"k": 1, "v": 3, "ts": 5},
]


@pytest.mark.parametrize("parallelism", [1, 2])  # 2: the key is computed in the exchange
@pytest.mark.parametrize("name", ["sum", "avg", "min", "max"])
def test_records_without_key_or_value_are_dead_lettered_by_keyed_aggregates(
    parallelism: int, name: str
) -> None:
    aggregate = getattr(Aggregations, name)("v")
    _, out, dead = _run(
        lambda f: f.source(TestingSource(RECORDS)).key_by("k").aggregate(aggregate, emit="final"),
        parallelism,
    )
    expected = {
        "sum": {1: 4, 2: 5},
        "avg": {1: 2.0, 2: 5.0},
        "min": {1: 1, 2: 5},
        "max": {1: 3, 2: 5},
    }
    assert {r["k"]: r["v"] for r in out.records} == expected[name]
    assert sorted(d["record"]["ts"] for d in dead.records) == [2, 3]


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize(
    "window", [Windows.tumbling(1_000), Windows.sliding(1_000, 500), Windows.session(100)]
)
def test_records_without_key_or_value_are_dead_lettered_by_windows(
    parallelism: int, window: Any
) -> None:
    _, out, dead = _run(
        lambda f: (
            f.source(TestingSource(RECORDS))
            .assign_timestamps("ts")
            .key_by("k")
            .window(window)
            .aggregate(Aggregations.sum("v"))
        ),
        parallelism,
    )
    totals: dict[int, int] = {}
    for r in out.records:
        if r["window_start"] == 0 or window.kind == "session":
            totals[r["key"]] = totals.get(r["key"], 0) + r["value"]
    assert totals == {1: 4, 2: 5}
    assert sorted(d["record"]["ts"] for d in dead.records) == [2, 3]


def test_a_window_count_skips_records_without_a_key() -> None:
    _, out, dead = _run(
        lambda f: (
            f.source(TestingSource(RECORDS))
            .assign_timestamps("ts")
            .key_by("k")
            .window(Windows.tumbling(1_000))
            .aggregate(Aggregations.count())
        )
    )
    assert {r["key"]: r["value"] for r in out.records} == {1: 3, 2: 1}
    assert [d["record"]["ts"] for d in dead.records] == [2]


@pytest.mark.parametrize("name", ["min", "max"])
def test_nan_in_min_and_max_does_not_depend_on_arrival_order(name: str) -> None:
    results = set()
    for order in itertools.permutations([1.0, math.nan, 3.0, -2.0]):
        records = [{"k": 1, "v": v} for v in order]
        _, out, _ = _run(
            lambda f, records=records: (
                f.source(TestingSource(records))
                .key_by("k")
                .aggregate(getattr(Aggregations, name)("v"), emit="final")
            )
        )
        results.add(repr(out.records[0]["v"]))
    assert results == {"nan"}
