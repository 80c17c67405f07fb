"""The asyncio runtime: bounded channels, fused operator chains, the executors.

Outside the runtime, reflow uses its interface alone: ``Executor``,
``ExecutionSnapshot``, ``JobResult`` and ``ExecutorSettings`` (``runtime.base``),
``create_executor`` and ``execute_with_recovery``.
"""

from reflow.runtime.base import (
    ExecutionSnapshot,
    Executor,
    ExecutorSettings,
    JobResult,
    create_executor,
)
from reflow.runtime.channel import END_OF_STREAM, Channel, ChannelBrokenError, ChannelStatistics
from reflow.runtime.local import LocalExecutor
from reflow.runtime.metrics import ExecutionMetrics, StepMetrics, StepSummary
from reflow.runtime.recovery import execute_with_recovery

__all__ = [
    "END_OF_STREAM",
    "Channel",
    "ChannelBrokenError",
    "ChannelStatistics",
    "ExecutionMetrics",
    "ExecutionSnapshot",
    "Executor",
    "ExecutorSettings",
    "JobResult",
    "LocalExecutor",
    "StepMetrics",
    "StepSummary",
    "create_executor",
    "execute_with_recovery",
]
