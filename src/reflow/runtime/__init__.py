"""The asyncio runtime: bounded channels, fused operator chains, the local executor."""

from reflow.runtime.channel import END_OF_STREAM, Channel, ChannelBrokenError, ChannelStatistics
from reflow.runtime.executor import ExecutorSettings, JobResult, LocalExecutor
from reflow.runtime.metrics import ExecutionMetrics, StepMetrics, StepSummary

__all__ = [
    "END_OF_STREAM",
    "Channel",
    "ChannelBrokenError",
    "ChannelStatistics",
    "ExecutionMetrics",
    "ExecutorSettings",
    "JobResult",
    "LocalExecutor",
    "StepMetrics",
    "StepSummary",
]
