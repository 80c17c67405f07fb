"""reflow: reactive ETL and stream processing for Python.

Define a job of sources, operators and sinks (``Job.builder()``,
``StreamGraph.builder()``, the fluent ``Flow`` API, or a YAML file); reflow
compiles it into a JobGraph with chained operators and runs it on asyncio with
backpressure.
"""

from reflow.api.stream import Flow, KeyedStream, Stream
from reflow.connectors import Connector, Connectors, Sink, SinkWriter, Source, SourceReader
from reflow.errors import (
    ConfigError,
    ConnectorConfigError,
    ConnectorError,
    ExecutionError,
    GraphValidationError,
    InvalidTransitionError,
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
    "JobGraph",
    "JobResult",
    "JobStatus",
    "JobType",
    "KeyedStream",
    "LocalExecutor",
    "Operator",
    "Operators",
    "Overflow",
    "Partitioning",
    "ReflowError",
    "Sink",
    "SinkWriter",
    "Source",
    "SourceReader",
    "Stream",
    "StreamGraph",
    "__version__",
]
