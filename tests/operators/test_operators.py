"""Each operator, with chaining on and off."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from reflow import Flow, Job, JobStatus, Operator, Operators
from reflow.errors import GraphValidationError
from reflow.testing import TestingSink, TestingSource, run_job


def _run(source: list[Any], *ops: Any, chaining: bool = True, parallelism: int = 1) -> list[Any]:
    builder = (
        Job.builder().chaining(chaining).parallelism(parallelism).source(TestingSource(source))
    )
    for op in ops:
        builder = builder.transform(op)
    sink = TestingSink()
    result = run_job(builder.sink(sink).build())
    assert result.status is JobStatus.COMPLETED, result.error
    return sink.records


@pytest.fixture(params=[True, False], ids=["chained", "unchained"])
def chaining(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def test_map(chaining: bool) -> None:
    assert _run([1, 2, 3], Operators.map(lambda x: x * x), chaining=chaining) == [1, 4, 9]


def test_filter(chaining: bool) -> None:
    assert _run(list(range(10)), Operators.filter(lambda x: x % 3 == 0), chaining=chaining) == [
        0,
        3,
        6,
        9,
    ]


def test_flat_map(chaining: bool) -> None:
    assert _run(["a b", "", "c"], Operators.flat_map(str.split), chaining=chaining) == [
        "a",
        "b",
        "c",
    ]


def test_key_by_passes_records_unchanged(chaining: bool) -> None:
    out = _run(list(range(20)), Operators.key_by(lambda x: x % 2), chaining=chaining, parallelism=2)
    assert sorted(out) == list(range(20))


def test_user_defined_operator(chaining: bool) -> None:
    class Pairs(Operator[int, tuple[int, int]]):
        def apply(self, records: Iterable[int]) -> Iterable[tuple[int, int]]:
            for r in records:
                if r % 2:
                    yield (r, r * 2)

    assert _run(list(range(6)), Pairs(), chaining=chaining) == [(1, 2), (3, 6), (5, 10)]


def test_user_defined_operator_isolates_a_bad_record() -> None:
    from reflow import ErrorMode, ErrorPolicy

    class Invert(Operator[int, float]):
        def apply(self, records: Iterable[int]) -> Iterable[float]:
            return [1 / r for r in records]

    dead, sink = TestingSink(), TestingSink()
    job = (
        Job.builder()
        .error_policy(ErrorPolicy(ErrorMode.DEAD_LETTER, dead_letter=dead))
        .source(TestingSource([1, 2, 0, 4]))
        .transform(Invert(), id="invert")
        .sink(sink)
        .build()
    )
    run_job(job)
    assert sink.records == [1.0, 0.5, 0.25]
    assert [d["record"] for d in dead.records] == [0]


def test_union_in_the_fluent_api() -> None:
    flow = Flow("u")
    a = flow.source(TestingSource([1, 2]), id="a")
    b = flow.source(TestingSource([10]), id="b").map(lambda x: x + 1)
    sink = TestingSink()
    a.union(b).sink(sink)
    run_job(flow.to_job())
    assert sorted(sink.records) == [1, 2, 11]


def test_apply_composes_steps() -> None:
    def clean(stream: Any) -> Any:
        return stream.map(str.strip).filter(bool)

    flow = Flow("compose")
    sink = TestingSink()
    flow.source(TestingSource([" a ", "  ", "b"])).apply(clean).sink(sink)
    run_job(flow.to_job())
    assert sink.records == ["a", "b"]


def test_not_a_function_is_rejected() -> None:
    with pytest.raises(GraphValidationError, match=r"Operators.map needs a function"):
        Operators.map(42)  # type: ignore[arg-type]
