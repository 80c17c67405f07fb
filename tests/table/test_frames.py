"""The generated OVER frame aggregates against recomputing each frame from scratch:
random rows with NULLs, ints and floats slide through frames of several sizes, and
after every row the running accumulator's results equal those of the frame's rows
aggregated afresh."""

from __future__ import annotations

import math
import pickle
import random
from collections import deque
from typing import Any

import pytest

from reflow.table.frames import SqlFrameAggregates

KINDS = [
    ("count_star", None),
    ("count", 0),
    ("count_distinct", 0),
    ("sum", 0),
    ("avg", 0),
    ("min", 0),
    ("max", 0),
    ("sum", 1),
    ("avg", 1),
    ("min", 1),
    ("max", 1),
]


def _recomputed(rows: list[tuple[Any, ...]]) -> list[Any]:
    out: list[Any] = []
    for kind, place in KINDS:
        values = [r[place] for r in rows if r[place] is not None] if place is not None else []
        if kind == "count_star":
            out.append(len(rows))
        elif kind == "count":
            out.append(len(values))
        elif kind == "count_distinct":
            out.append(len(set(values)))
        elif not values:
            out.append(None)
        elif kind == "sum":
            out.append(math.fsum(values) if place == 1 else sum(values))
        elif kind == "avg":
            out.append((math.fsum(values) if place == 1 else sum(values)) / len(values))
        else:
            out.append(min(values) if kind == "min" else max(values))
    return out


def _same(got: list[Any], want: list[Any], tolerance: float) -> bool:
    return all(
        g == w if g is None or w is None or isinstance(w, int) else abs(g - w) <= tolerance
        for g, w in zip(got, want, strict=True)
    )


@pytest.mark.parametrize("size", [1, 3, 11])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_running_frame_aggregates_equal_each_frame_aggregated_afresh(size: int, seed: int) -> None:
    rng = random.Random(seed)
    aggs = SqlFrameAggregates(KINDS)
    acc, held = aggs.create(), deque[tuple[Any, ...]]()
    # Rounding of a running float sum: a large value swallows small ones, and they
    # stay lost after it leaves until the accumulator is made again from the frame
    # (within ``size`` rows). So the error allowed is that of the largest value
    # among the last 2 * size + 1 rows.
    recent: deque[float] = deque(maxlen=2 * size + 1)
    for n in range(3000):
        big = rng.random() < 0.05
        row = (
            None if rng.random() < 0.2 else rng.randrange(-5, 6),
            None
            if rng.random() < 0.2
            else (rng.choice([1e16, -1e16]) if big else rng.uniform(-3, 3)),
        )
        recent.append(abs(row[1] or 0.0))
        acc = aggs.add(acc, row)
        held.append(row)
        if len(held) > size:
            acc = aggs.retract(acc, held.popleft(), len(held), lambda: iter(held))
        got, want = aggs.result(acc), _recomputed(list(held))
        tolerance = 1e-9 + 8 * size * math.ulp(max(recent))
        assert _same(got, want, tolerance), (n, got, want)
        assert isinstance(got[3], int | None)  # an integer sum stays an integer


def test_a_value_that_cannot_be_added_changes_nothing() -> None:
    aggs = SqlFrameAggregates(KINDS)
    acc = aggs.add(aggs.create(), (3, 1.5))
    before = pickle.dumps(acc)
    for bad in [(3, "text"), ([1], 1.0), ("text", 2.0)]:
        with pytest.raises(TypeError):
            aggs.add(acc, bad)
        assert pickle.dumps(acc) == before, bad


def test_frame_aggregates_pickle_by_their_kinds() -> None:
    aggs = pickle.loads(pickle.dumps(SqlFrameAggregates(KINDS)))
    acc = aggs.add(aggs.add(aggs.create(), (1, 2.0)), (None, 4.0))
    assert aggs.result(acc) == [2, 1, 1, 1, 1.0, 1, 1, 6.0, 3.0, 2.0, 4.0]


def test_only_known_kinds_and_whole_number_places_are_written() -> None:
    for kinds in ([("sum", "0; import os")], [("median", 0)], [("sum", None)], [("sum", -1)]):
        with pytest.raises(ValueError):
            SqlFrameAggregates(kinds)  # type: ignore[arg-type]
