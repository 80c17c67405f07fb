"""reflow: reactive ETL and stream processing for Python.

Define a job of sources, operators and sinks (``Job.builder()``,
``StreamGraph.builder()``, the fluent ``Flow`` API, or a YAML file); reflow
compiles it into a JobGraph with chained operators and runs it on asyncio with
backpressure.
"""

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from reflow.api.stream import Flow, KeyedStream, Stream
from reflow.connectors import Connector, Connectors, Sink, SinkWriter, Source, SourceReader
from reflow.errors import (
    ConfigError,
    ConnectorConfigError,
    ConnectorError,
    ExecutionError,
    GraphValidationError,
    InvalidTransitionError,
    JobFailedError,
    ReflowError,
)
from reflow.graph import (
    ErrorMode,
    ErrorPolicy,
    Job,
    JobConfig,
    JobGraph,
    JobStatus,
    JobType,
    Overflow,
    Partitioning,
    StreamGraph,
)
from reflow.operators import Operator, Operators
from reflow.runtime import ExecutorSettings, JobResult, LocalExecutor
from reflow.runtime.runner import run, run_async

if TYPE_CHECKING:
    from reflow.scheduler import JobManager, JobStore, SchedulePolicy

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "Connector",
    "ConnectorConfigError",
    "ConnectorError",
    "Connectors",
    "ErrorMode",
    "ErrorPolicy",
    "ExecutionError",
    "ExecutorSettings",
    "Flow",
    "GraphValidationError",
    "InvalidTransitionError",
    "Job",
    "JobConfig",
    "JobFailedError",
    "JobGraph",
    "JobManager",
    "JobResult",
    "JobStatus",
    "JobStore",
    "JobType",
    "KeyedStream",
    "LocalExecutor",
    "Operator",
    "Operators",
    "Overflow",
    "Partitioning",
    "ReflowError",
    "SchedulePolicy",
    "Sink",
    "SinkWriter",
    "Source",
    "SourceReader",
    "Stream",
    "StreamGraph",
    "__version__",
    "run",
    "run_async",
    "sql",
]


def sql(
    text: str,
    *,
    name: str = "sql",
    parallelism: int | None = None,
    functions: "Mapping[str, Callable[..., Any]] | None" = None,
) -> Job:
    """The Job a streaming SQL script describes: ``CREATE TABLE`` statements with
    connector options, then ``INSERT INTO ... SELECT`` (docs/sql.md); ``functions``
    are Python functions the SQL may call by name. A problem raises
    ``reflow.table.SqlError`` naming its line:column."""
    from reflow.table import sql_job

    return sql_job(text, name=name, parallelism=parallelism, functions=functions)


# The scheduler (and its database driver) loads on first use: `import reflow` stays light.
_SCHEDULER = ("JobManager", "JobStore", "SchedulePolicy")


def __getattr__(name: str) -> object:
    if name in _SCHEDULER:
        import reflow.scheduler

        return getattr(reflow.scheduler, name)
    raise AttributeError(f"module 'reflow' has no attribute {name!r}")
