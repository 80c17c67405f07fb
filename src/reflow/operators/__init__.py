"""Operators: frozen specs that build their per-subtask runtime logic."""

from reflow.operators.aggregations import Aggregations, Collectors
from reflow.operators.base import Operator, OperatorContext, OperatorLogic, OperatorSpec, RejectFn
from reflow.operators.facade import Operators
from reflow.operators.joins import IntervalJoinOp, LookupJoinOp, WindowJoinOp
from reflow.operators.keyed import (
    DeduplicateOp,
    KeyedAggregateOp,
    KeyedProcessFunction,
    KeyedProcessOp,
    ProcessContext,
)
from reflow.operators.stateless import FilterOp, FlatMapOp, KeyByOp, MapOp, UnionOp
from reflow.operators.timestamps import AssignTimestampsOp
from reflow.operators.windows import WindowAggregateOp, Windows, WindowSpec
from reflow.state.functions import AggregateFunction

__all__ = [
    "AggregateFunction",
    "Aggregations",
    "AssignTimestampsOp",
    "Collectors",
    "DeduplicateOp",
    "FilterOp",
    "FlatMapOp",
    "IntervalJoinOp",
    "KeyByOp",
    "KeyedAggregateOp",
    "KeyedProcessFunction",
    "KeyedProcessOp",
    "LookupJoinOp",
    "MapOp",
    "Operator",
    "OperatorContext",
    "OperatorLogic",
    "OperatorSpec",
    "Operators",
    "ProcessContext",
    "RejectFn",
    "UnionOp",
    "WindowAggregateOp",
    "WindowJoinOp",
    "WindowSpec",
    "Windows",
]
