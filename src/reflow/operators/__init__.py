"""Operators: frozen specs that build their per-subtask runtime logic."""

from reflow.operators.base import Operator, OperatorContext, OperatorLogic, OperatorSpec, RejectFn
from reflow.operators.facade import Operators
from reflow.operators.stateless import FilterOp, FlatMapOp, KeyByOp, MapOp, UnionOp

__all__ = [
    "FilterOp",
    "FlatMapOp",
    "KeyByOp",
    "MapOp",
    "Operator",
    "OperatorContext",
    "OperatorLogic",
    "OperatorSpec",
    "Operators",
    "RejectFn",
    "UnionOp",
]
