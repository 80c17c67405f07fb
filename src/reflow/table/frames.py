"""The aggregates of an OVER frame, written out as one function each for add,
retract and result.

An OVER query's aggregates (``AVG(price) OVER w``, ``COUNT(*) OVER w``, ...) are
kept as rows enter and leave each frame. Interpreting a list of aggregate kinds
per row costs a loop, a tuple unpacking and string comparisons per aggregate; the
functions here are generated once per list of kinds instead, each aggregate
written inline, as a hand-written loop would do it.

The source comes from the fixed templates below: an aggregate's kind selects a
template and its place in the accumulator and in the row's tuple of arguments
are whole numbers reflow computed. Nothing of the query's text reaches it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from reflow.state.functions import AggregateFunction

__all__ = ["KINDS", "SqlFrameAggregates"]

KINDS = ("count_star", "count", "count_distinct", "sum", "avg", "min", "max")

Kinds = tuple[tuple[str, int | None], ...]


class SqlFrameAggregates(AggregateFunction[Any, list[Any], list[Any]]):
    """The aggregates of an OVER frame over each row's tuple of arguments, kept as rows
    enter and leave the frame (``retract``), with SQL's NULL semantics (SUM, AVG,
    MIN and MAX of no values are NULL; COUNT of none is 0). A leaving MIN/MAX is
    found again among the frame's values; a floating-point SUM or AVG is made again
    from the frame once as many rows left it as it holds, so it never drifts by
    more than a frame's worth of additions and subtractions (integer sums are
    exact and are not).

    The accumulator is a list: per aggregate a count (COUNT), a Counter of values
    (COUNT DISTINCT) or ``[value, number of non-NULL values]``; last, the rows that
    left since it was made from the frame. Pickles by its kinds (Ray)."""

    def __init__(self, kinds: Iterable[tuple[str, int | None]]) -> None:
        self.kinds: Kinds = tuple(kinds)
        """(kind, place of its argument in a row's tuple; None for COUNT(*))."""
        for kind, place in self.kinds:
            if kind not in KINDS or (place is None) != (kind == "count_star"):
                raise ValueError(f"not an over aggregate: {kind} of argument {place}")
            if place is not None and (type(place) is not int or place < 0):
                raise ValueError(f"an argument's place is a whole number, not {place!r}")
        made = _functions(self.kinds)
        # The generated functions themselves, as instance attributes in front of the
        # methods below (which say what they do): called without a method in between.
        self.add = made["add"]  # type: ignore[method-assign]
        self.retract = made["retract"]  # type: ignore[method-assign]
        self.result = made["result"]  # type: ignore[method-assign]

    def __reduce__(self) -> tuple[Any, ...]:
        return SqlFrameAggregates, (self.kinds,)

    def create(self) -> list[Any]:
        return _create(self.kinds)

    def add(self, acc: list[Any], row: Any) -> list[Any]:
        """``acc`` with ``row`` added; a value that cannot be (text into a SUM, a list
        to count distinct) raises before anything changed."""
        raise NotImplementedError  # replaced by the generated function in __init__

    def retract(
        self, acc: list[Any], row: Any, size: int, values: Callable[[], Iterable[Any]]
    ) -> list[Any]:
        """``acc`` without ``row``, given the frame's ``size`` and ``values`` after it
        left."""
        raise NotImplementedError  # replaced by the generated function in __init__

    def merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        raise NotImplementedError("an OVER frame is never merged")

    def result(self, acc: list[Any]) -> list[Any]:
        raise NotImplementedError  # replaced by the generated function in __init__


def _create(kinds: Kinds) -> list[Any]:
    out: list[Any] = []
    for kind, _ in kinds:
        if kind in ("count_star", "count"):
            out.append(0)
        elif kind == "count_distinct":
            out.append(Counter())
        else:  # sum, avg, min, max: [value, number of non-NULL values]
            out.append([None, 0])
    out.append(0)  # rows that left since the accumulator was made from the frame
    return out


# -- the templates ----------------------------------------------------------------------

# ``{i}``: the aggregate's place in the accumulator, ``{p}``: its argument's place in
# the row's tuple. ``v{i}`` is the argument, ``h{i}`` the [value, count] pair and
# ``n{i}`` the value after adding (computed before anything changes).
_ADD_CHECK = {
    "count_distinct": "    if v{i} is not None:\n        _hash(v{i})\n",
    "sum": "    if v{i} is not None:\n        h{i} = acc[{i}]\n"
    "        n{i} = v{i} if h{i}[1] == 0 else h{i}[0] + v{i}\n",
    "min": "    if v{i} is not None:\n        h{i} = acc[{i}]\n"
    "        n{i} = v{i} if h{i}[1] == 0 or v{i} < h{i}[0] else h{i}[0]\n",
    "max": "    if v{i} is not None:\n        h{i} = acc[{i}]\n"
    "        n{i} = v{i} if h{i}[1] == 0 or v{i} > h{i}[0] else h{i}[0]\n",
}
_ADD_CHECK["avg"] = _ADD_CHECK["sum"]
_ADD = {
    "count_star": "    acc[{i}] += 1\n",
    "count": "    if v{i} is not None:\n        acc[{i}] += 1\n",
    "count_distinct": "    if v{i} is not None:\n        acc[{i}][v{i}] += 1\n",
    "sum": "    if v{i} is not None:\n        h{i}[0] = n{i}\n        h{i}[1] += 1\n",
}
for _kind in ("avg", "min", "max"):
    _ADD[_kind] = _ADD["sum"]

_RETRACT = {
    "count_star": "    acc[{i}] -= 1\n",
    "count": "    if row[{p}] is not None:\n        acc[{i}] -= 1\n",
    "count_distinct": "    v = row[{p}]\n    if v is not None:\n        c = acc[{i}]\n"
    "        c[v] -= 1\n        if not c[v]:\n            del c[v]\n",
    "sum": "    v = row[{p}]\n    if v is not None:\n        h = acc[{i}]\n        h[1] -= 1\n"
    "        if h[1] == 0:\n            h[0] = None\n        else:\n            h[0] -= v\n",
    "min": "    v = row[{p}]\n    if v is not None:\n        h = acc[{i}]\n        h[1] -= 1\n"
    "        if h[1] == 0:\n            h[0] = None\n        elif v == h[0]:\n"
    "            h[0] = _min([r[{p}] for r in values() if r[{p}] is not None])\n",
}
_RETRACT["avg"] = _RETRACT["sum"]
_RETRACT["max"] = _RETRACT["min"].replace("_min(", "_max(")

_RESULT = {
    "count_star": "acc[{i}]",
    "count": "acc[{i}]",
    "count_distinct": "_len(acc[{i}])",
    "sum": "acc[{i}][0]",
    "min": "acc[{i}][0]",
    "max": "acc[{i}][0]",
    "avg": "(acc[{i}][0] / acc[{i}][1] if acc[{i}][1] else None)",
}

_MADE: dict[Kinds, dict[str, Any]] = {}


def _functions(kinds: Kinds) -> dict[str, Any]:
    """add, retract and result for ``kinds`` (checked by the caller: known kinds,
    whole-number places), made once per list of kinds."""
    made = _MADE.get(kinds)
    if made is not None:
        return made
    last = len(kinds)  # the place of the count of rows that left
    reads = "".join(
        f"    v{i} = row[{p}]\n" for i, (kind, p) in enumerate(kinds) if kind != "count_star"
    )
    checks = "".join(_ADD_CHECK.get(kind, "").format(i=i) for i, (kind, _) in enumerate(kinds))
    adds = "".join(_ADD[kind].format(i=i) for i, (kind, _) in enumerate(kinds))
    # Integer sums are exact: only a float sum is made again from the frame.
    sums = [i for i, (kind, _) in enumerate(kinds) if kind in ("sum", "avg")]
    drifts = " or ".join(f"_type(acc[{i}][0]) is _float" for i in sums) or "False"
    retracts = "".join(_RETRACT[kind].format(i=i, p=p) for i, (kind, p) in enumerate(kinds))
    results = ", ".join(_RESULT[kind].format(i=i) for i, (kind, _) in enumerate(kinds))
    source = (
        "def add(acc, row):\n"
        f"{reads}{checks}{adds}"
        "    return acc\n"
        "\n"
        "def retract(acc, row, size, values):\n"
        f"    if acc[{last}] + 1 >= size and ({drifts}):\n"
        "        return _rebuild(values())\n"
        f"    acc[{last}] += 1\n"
        f"{retracts}"
        "    return acc\n"
        "\n"
        "def result(acc):\n"
        f"    return [{results}]\n"
    )
    namespace: dict[str, Any] = {
        "__builtins__": {},
        "_hash": hash,
        "_len": len,
        "_min": min,
        "_max": max,
        "_type": type,
        "_float": float,
    }
    # reflow's own template source: kinds and whole numbers only (module docstring)
    exec(compile(source, "<reflow over aggregates>", "exec"), namespace)

    def rebuild(values: Iterable[Any]) -> list[Any]:
        acc = _create(kinds)
        add = namespace["add"]
        for value in values:
            acc = add(acc, value)
        return acc

    namespace["_rebuild"] = rebuild
    made = _MADE[kinds] = namespace
    return made
