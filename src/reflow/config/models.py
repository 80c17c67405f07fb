"""Pydantic models of reflow's YAML files: the system config (seed §6.1) and job files (§6.2).

Keys may be written in snake_case or in the seed's camelCase.
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from reflow.config.yaml_loader import LoadedYaml
from reflow.connectors.options import Duration
from reflow.errors import ConfigError
from reflow.runtime.collector import DEFAULT_GC_THRESHOLD

__all__ = [
    "ErrorPolicyModel",
    "JobFile",
    "JobModel",
    "NodeModel",
    "OperatorModel",
    "SystemConfig",
    "SystemFile",
    "validate_loaded",
]


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, alias_generator=to_camel, frozen=True
    )


# -- system config (§6.1) -------------------------------------------------------------------


class PoolModel(_Model):
    """A thread pool of seed §6.1/§10.4: ``maxSize`` threads at most, ``coreSize``
    of them started with the pool (the rest on demand)."""

    core_size: int = Field(4, gt=0)
    max_size: int = Field(16, gt=0)
    queue_capacity: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _no_queue(self) -> PoolModel:
        if self.queue_capacity is not None:
            raise ValueError(
                "queueCapacity has no meaning in reflow: a step that calls a blocking "
                "function waits for a thread itself (its input channel fills and "
                "backpressure slows the sources), so no queue of calls builds up to bound; "
                "remove queueCapacity (maxSize bounds the threads)"
            )
        if self.core_size > self.max_size:
            raise ValueError(f"coreSize {self.core_size} is more than maxSize {self.max_size}")
        return self


class ThreadPoolModel(PoolModel):
    io: PoolModel | None = None
    compute: PoolModel | None = None


class ExecutorModel(_Model):
    type: Literal["single-node", "distributed"] = "single-node"
    address: str | None = None
    """distributed: a running Ray cluster's HOST:PORT (default: start a local Ray)."""
    parallelism: int = Field(1, gt=0)
    thread_pool: ThreadPoolModel = ThreadPoolModel()
    batch_size: int = Field(100, gt=0)
    channel_capacity: int = Field(8, gt=0)
    gc_threshold: int | None = Field(DEFAULT_GC_THRESHOLD, gt=0)
    """Python's cyclic collector runs after this many container allocations while
    jobs run (its first threshold; null keeps Python's 700)."""


class SchedulerModel(_Model):
    """``scheduler:`` of seed §6.1. ``threadPoolSize``, as Quartz's thread count, is how
    many runs may execute at once; ``jobQueueSize`` how many may wait."""

    type: str = "quartz"
    thread_pool_size: int = Field(20, gt=0)
    job_queue_size: int = Field(1000, gt=0)

    @field_validator("type")
    @classmethod
    def _quartz(cls, value: str) -> str:
        if value.lower() != "quartz":
            raise ValueError(
                f"scheduler type {value!r}: reflow's scheduler is built in and reads "
                "Quartz cron expressions; write quartz or leave type out"
            )
        return "quartz"


class StorageModel(_Model):
    type: Literal["filesystem", "s3"] = "filesystem"
    path: str = "checkpoints"


class CheckpointModel(_Model):
    enabled: bool = False
    interval: str | float = "60s"
    timeout: str | float = "10s"
    storage: StorageModel = StorageModel()


class RocksDbModel(_Model):
    path: str = "state"
    block_cache_size: str | int = "256m"


class StateModel(_Model):
    backend: Literal["memory", "rocksdb"] = "memory"
    rocksdb: RocksDbModel = RocksDbModel()
    max_entries: int = Field(10_000_000, gt=0, description="memory backend entry cap")


class ReporterModel(_Model):
    type: Literal["prometheus", "slf4j", "log"]
    port: int | None = None
    interval: str | float | None = None


class MetricsModel(_Model):
    enabled: bool = True
    reporters: list[ReporterModel] = Field(default_factory=list)


class SecurityModel(_Model):
    """``security:`` — what jobs submitted through the REST API may touch (docs/security.md)."""

    policy: bool = Field(
        True, description="false: a token holder may do anything the server user can"
    )
    allowed_modules: list[str] = Field(default_factory=list)
    path_roots: list[str] = Field(default_factory=list)
    hosts: dict[str, list[str]] = Field(default_factory=dict)
    env: list[str] = Field(default_factory=list)


class SystemConfig(_Model):
    """The ``system:`` block of seed §6.1."""

    name: str = "reflow"
    version: str = "1.0.0"
    executor: ExecutorModel = ExecutorModel()
    scheduler: SchedulerModel = SchedulerModel()
    checkpoint: CheckpointModel = CheckpointModel()
    state: StateModel = StateModel()
    metrics: MetricsModel = MetricsModel()
    security: SecurityModel = SecurityModel()
    autoscaler: SystemAutoscalerModel | None = None


class SystemFile(_Model):
    system: SystemConfig = Field(default_factory=SystemConfig)


# -- job files (§6.2) -----------------------------------------------------------------------


class ExpectationModel(_Model):
    """One entry of a step's ``quality:`` list (docs/quality.md)."""

    check: Literal[
        "schema",
        "not_null",
        "range",
        "in_set",
        "regex",
        "unique",
        "freshness",
        "volume",
        "drift",
    ]
    name: str | None = None
    action: Literal["warn", "drop", "fail"] = "warn"
    critical: bool = False
    hold: Duration | None = None
    field: str | None = None
    fields: list[str] | None = None
    min: float | None = None
    max: float | None = None
    values: list[Any] | None = None
    pattern: str | None = Field(None, max_length=1000)
    types: dict[str, str] | None = None
    required: list[str] | None = None
    window: Duration | None = None
    max_lag: Duration | None = None
    baseline: int | None = Field(None, ge=1)
    tolerance: float | None = Field(None, gt=0)
    threshold: float | None = Field(None, gt=0)
    bins: int | None = Field(None, ge=2, le=1000)
    reference_windows: int | None = Field(None, ge=1)
    min_records: int | None = Field(None, ge=1)

    def options(self) -> dict[str, Any]:
        """The options given, durations in milliseconds, for ``expectation_of``."""
        given = self.model_dump(exclude_none=True, exclude={"check"})
        for key in ("hold", "window", "max_lag"):
            if key in given:
                given[key] = round(given[key] * 1000)
        for key in ("min", "max"):
            if key in given and float(given[key]).is_integer() and self.check == "volume":
                given[key] = int(given[key])
        return given


class NodeModel(_Model):
    """A source or a sink: a registered connector and its options."""

    name: str | None = None
    connector: str | None = None
    type: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    parallelism: int | None = Field(None, gt=0)
    inputs: list[str] | None = None
    quality: list[ExpectationModel] | None = None

    @model_validator(mode="after")
    def _connector(self) -> NodeModel:
        if self.connector is None and self.type is None:
            raise ValueError("name the connector: connector: file (see `reflow connectors`)")
        if self.connector and self.type and self.connector != self.type:
            raise ValueError(
                f"connector {self.connector!r} and type {self.type!r} disagree; keep one"
            )
        return self

    @property
    def connector_name(self) -> str:
        return str(self.connector or self.type)


OPERATOR_TYPES = (
    "map",
    "filter",
    "flat_map",
    "key_by",
    "union",
    "assign_timestamps",
    "window_aggregate",
    "aggregate",
    "deduplicate",
)
KEYED_TYPES = ("window_aggregate", "aggregate", "deduplicate")


class WindowModel(_Model):
    """``window:`` of a window-aggregate (seed §6.2): durations as ``10s``, ``5m``, ..."""

    type: Literal["tumbling", "sliding", "cumulative", "session", "global"] = "tumbling"
    size: Duration | None = None
    slide: Duration | None = None
    step: Duration | None = None
    """cumulative: how much each window grows (windows [0, step), [0, 2 step) ... [0, size))"""
    gap: Duration | None = None
    count: int | None = Field(None, gt=0)
    time: Literal["event", "processing"] | None = None

    @model_validator(mode="after")
    def _shape(self) -> WindowModel:
        needs = {"tumbling": ("size",), "sliding": ("size", "slide"), "session": ("gap",),
                 "cumulative": ("size", "step"), "global": ("count",)}[self.type]  # fmt: skip
        missing = [n for n in needs if getattr(self, n) is None]
        if missing:
            raise ValueError(f"a {self.type} window needs {', '.join(missing)}")
        return self


class AggregateModel(_Model):
    """``aggregate:`` of a window-aggregate or rolling aggregate."""

    type: Literal["count", "sum", "min", "max", "avg", "collect", "top_n", "reduce"] = "count"
    field: str | None = None
    expression: str | None = None
    n: int | None = Field(None, gt=0)
    function: str | None = Field(None, description="reduce: module:callable of two values")

    @model_validator(mode="after")
    def _shape(self) -> AggregateModel:
        if self.type == "top_n" and self.n is None:
            raise ValueError("top_n needs n")
        if self.type == "reduce" and self.function is None:
            raise ValueError("reduce needs function: module:callable taking two values")
        return self


_OPTION_TYPES: dict[str, tuple[str, ...]] = {
    "function": ("map", "filter", "flat_map", "key_by"),
    "expression": ("map", "filter", "flat_map", "key_by"),
    "key": ("key_by", "window_aggregate", "aggregate", "deduplicate"),
    "concurrency": ("map", "filter", "flat_map"),
    "ordered": ("map", "filter", "flat_map"),
    "blocking": ("map", "filter", "flat_map"),
    "timestamp": ("assign_timestamps", "window_aggregate"),
    "max_out_of_orderness": ("assign_timestamps",),
    "idle_timeout": ("assign_timestamps",),
    "window": ("window_aggregate",),
    "allowed_lateness": ("window_aggregate",),
    "aggregate": ("window_aggregate", "aggregate"),
    "emit": ("aggregate",),
    "ttl": ("deduplicate",),
}
"""The step types each option applies to (set on another type, it would be ignored)."""


# What a user may write as an operator type that is written another way here.
_QUALITY_HINT = (
    "; data-quality checks are not a step of their own: list them under 'quality:' "
    "on the source or operator whose output they check (docs/quality.md)"
)
_TYPE_HINTS: dict[str, str] = {
    **dict.fromkeys(
        ("quality", "expect", "expectation", "expectations", "check", "validate"), _QUALITY_HINT
    ),
    **dict.fromkeys(
        ("window", "windows", "tumble", "tumbling", "sliding", "session"),
        "; a window is 'type: window_aggregate' with 'window:' and 'aggregate:' "
        "(docs/event-time.md)",
    ),
    "sql": "; SQL describes a whole job: write it under 'job:' as 'sql: |' with no "
    "source, operators or sink (docs/sql.md)",
}


class OperatorModel(_Model):
    name: str
    type: str
    function: str | None = Field(None, description="module:callable")
    expression: str | None = Field(None, description="Python expression of r (the record)")
    key: str | None = Field(None, description="key_by: a field name, or an expression of r")
    parallelism: int | None = Field(None, gt=0)
    inputs: list[str] | None = None
    concurrency: int = Field(16, gt=0)
    ordered: bool = True
    blocking: bool = False
    timestamp: str | None = Field(
        None,
        description="assign_timestamps: field or expression; window_aggregate: the window's "
        "own (instead of a timestamp step upstream)",
    )
    max_out_of_orderness: Duration = 0.0
    idle_timeout: Duration | None = None
    window: WindowModel | None = None
    aggregate: AggregateModel | None = None
    allowed_lateness: Duration = 0.0
    emit: Literal["auto", "updates", "final"] = "auto"
    ttl: Duration | None = None
    quality: list[ExpectationModel] | None = None

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        normal = value.replace("-", "_")
        if normal not in OPERATOR_TYPES:
            hint = _TYPE_HINTS.get(normal.lower(), "")
            raise ValueError(
                f"unknown operator type {value!r}; this version knows: "
                + ", ".join(OPERATOR_TYPES)
                + hint
            )
        return normal

    @model_validator(mode="after")
    def _body(self) -> OperatorModel:
        for option in sorted(self.model_fields_set & _OPTION_TYPES.keys()):
            types = _OPTION_TYPES[option]
            if self.type not in types:
                raise ValueError(
                    f"'{option}' does not apply to a {self.type} step (it is an option of "
                    + " and ".join(types)
                    + "); remove it, or add a step of that type"
                )
        if self.type == "union":
            return self
        if self.type == "assign_timestamps":
            if self.timestamp is None:
                raise ValueError("assign_timestamps needs 'timestamp' (a field or expression)")
            return self
        if self.type in KEYED_TYPES:
            if self.key is None and self.type != "window_aggregate":
                raise ValueError(f"{self.type} needs 'key' (a field name or expression)")
            if self.type == "window_aggregate" and self.window is None:
                raise ValueError("window_aggregate needs 'window' (type and size, slide or gap)")
            return self
        if self.type == "key_by":
            if self.key is None and self.function is None and self.expression is None:
                raise ValueError("key_by needs 'key' (a field name or expression) or 'function'")
            return self
        if self.function is None and self.expression is None and self.type in ("map", "filter"):
            return self  # passes records through unchanged (reflow validate says so)
        if (self.function is None) == (self.expression is None):
            raise ValueError(
                f"operator {self.name!r} ({self.type}) needs exactly one of 'function' "
                "(module:callable) or 'expression'"
            )
        return self


class ErrorPolicyModel(_Model):
    mode: Literal["fail", "skip", "dead-letter"] = "fail"
    dead_letter: NodeModel | None = None
    steps: dict[str, Literal["fail", "skip", "dead-letter"]] = Field(default_factory=dict)


class JobCheckpointModel(_Model):
    """``checkpoint:`` of a job: periodic checkpoints (seed §4.5, §6.1)."""

    path: str = Field(description="folder of the checkpoint storage")
    interval: Duration = 60.0
    timeout: Duration = 10.0
    retained: int = Field(3, ge=1)
    tolerable_failures: int = Field(
        3, ge=0, description="checkpoints in a row that may fail before the job fails"
    )


class RestartModel(_Model):
    """``restart:`` of a job (seed §11.2)."""

    strategy: Literal["none", "fixed-delay", "exponential-backoff", "failure-rate"] = "none"
    attempts: int = Field(3, ge=0)
    delay: Duration = 10.0
    initial_delay: Duration = 1.0
    max_delay: Duration = 300.0
    multiplier: float = Field(2.0, ge=1.0)
    max_failures_per_interval: int = Field(3, ge=1)
    failure_rate_interval: Duration = 300.0


class JvmModel(_Model):
    """Seed §10.4's ``jvm:`` block, read for a CPython process: ``heap`` is the job's
    memory budget (as ``resources.memory``); ``metaspace`` and ``gc`` have no
    CPython counterpart and are reported as having no effect."""

    heap: str | None = None
    metaspace: str | None = None
    gc: str | None = None


class JobPoolModel(_Model):
    """One of the job's own thread pools: ``maxSize`` threads, ``coreSize`` of them
    started with the job."""

    core_size: int | None = Field(None, gt=0)
    max_size: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _core_within_max(self) -> JobPoolModel:
        if (
            self.core_size is not None
            and self.max_size is not None
            and self.core_size > self.max_size
        ):
            raise ValueError(f"coreSize {self.core_size} is more than maxSize {self.max_size}")
        return self


class JobThreadPoolModel(_Model):
    """``threadPool:`` of seed §10.4 in a job file: pools used by this job alone.
    ``io`` runs blocking connector calls, ``compute`` the steps marked blocking."""

    io: JobPoolModel | None = None
    compute: JobPoolModel | None = None


class BufferModel(_Model):
    """``buffer:`` of seed §10.4, in records: ``sourceBuffer`` queued after the sources,
    ``sinkBuffer`` before the sinks (channels hold whole batches: rounded up)."""

    source_buffer: int | None = Field(None, gt=0)
    sink_buffer: int | None = Field(None, gt=0)


class ResourcesModel(_Model):
    parallelism: int | None = Field(None, gt=0)
    memory: str | None = None
    """The job's memory (``4g``): the scheduler's budget; on Ray, split over the actors."""
    cpu: float | None = Field(None, gt=0)
    """CPU cores each subtask reserves on Ray (the local executor does not reserve)."""
    jvm: JvmModel | None = None
    thread_pool: JobThreadPoolModel | None = None
    buffer: BufferModel | None = None

    @model_validator(mode="after")
    def _one_memory(self) -> ResourcesModel:
        if self.memory is not None and self.jvm is not None and self.jvm.heap is not None:
            raise ValueError(
                "memory and jvm.heap both set the job's memory budget; keep one (memory)"
            )
        return self

    @property
    def memory_budget(self) -> str | None:
        """``memory``, or ``jvm.heap`` which means the same for a CPython job."""
        if self.memory is not None:
            return self.memory
        return self.jvm.heap if self.jvm is not None else None


class AutoscalerModel(_Model):
    """``autoscaler:`` of a job (docs/operations.md, "Rescaling and autoscaling")."""

    enabled: bool = True
    dry_run: bool = False
    target_utilization: float = Field(0.7, gt=0, le=1)
    utilization_boundary: float = Field(0.2, ge=0, lt=1)
    window: Duration = Field(60.0, description="stabilisation window over which load is averaged")
    cooldown: Duration = Field(120.0, description="no decision this long after a rescale")
    interval: Duration = Field(10.0, description="how often the load is sampled")
    min_parallelism: int = Field(1, ge=1, le=128)
    max_parallelism: int = Field(128, ge=1, le=128)

    def settings(self, only_given: bool = False) -> dict[str, Any]:
        """As ``AutoscalerConfig`` takes them (durations in milliseconds); with
        ``only_given``, just the keys the block sets (the system's fill the rest)."""
        given = self.model_dump(exclude={"window", "cooldown", "interval"})
        given.update(
            window_ms=round(self.window * 1000),
            cooldown_ms=round(self.cooldown * 1000),
            interval_ms=round(self.interval * 1000),
        )
        if only_given:
            named = {_MS_KEYS.get(k, k) for k in self.model_fields_set}
            given = {k: v for k, v in given.items() if k in named}
        return given


_MS_KEYS = {"window": "window_ms", "cooldown": "cooldown_ms", "interval": "interval_ms"}


class SystemAutoscalerModel(AutoscalerModel):
    """``system.autoscaler:`` — every job's autoscaler defaults; a job's own
    ``autoscaler:`` block overrides the keys it sets. ``enabled: true`` here also
    gives one to the jobs without a block (a job opts out with ``enabled: false``)."""

    enabled: bool = False


class JobModel(_Model):
    id: str | None = None
    name: str
    type: Literal["streaming", "batch"] | None = None
    description: str | None = None
    parallelism: int | None = Field(None, gt=0)
    chaining: bool = True
    batch_size: int | None = Field(None, gt=0)
    schedule: dict[str, Any] | None = None
    priority: int = Field(0, description="queue priority under reflow serve; higher runs first")
    resources: ResourcesModel | None = None
    error_policy: ErrorPolicyModel = ErrorPolicyModel()
    checkpoint: JobCheckpointModel | None = None
    restart: RestartModel = RestartModel()
    autoscaler: AutoscalerModel | None = None
    source: NodeModel | None = None
    sources: list[NodeModel] | None = None
    operators: list[OperatorModel] = Field(default_factory=list)
    sink: NodeModel | None = None
    sinks: list[NodeModel] | None = None
    sql: str | None = Field(
        None,
        description="a streaming SQL script (docs/sql.md) in place of source, operators and sink",
    )
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _ends(self) -> JobModel:
        if self.sql is not None:
            given = [
                key
                for key in ("source", "sources", "sink", "sinks")
                if getattr(self, key) is not None
            ] + (["operators"] if self.operators else [])
            if given:
                raise ValueError(
                    f"a job with 'sql' has its tables in the SQL: remove {', '.join(given)}"
                )
            return self
        if (self.source is None) == (self.sources is None):
            raise ValueError("give exactly one of 'source' or 'sources'")
        if (self.sink is None) == (self.sinks is None):
            raise ValueError("give exactly one of 'sink' or 'sinks'")
        return self


class NamedConnectorModel(BaseModel):
    """A connector defined once under ``connectors:`` (seed §3.9.4): its type and
    options, which steps naming it take (their own ``config`` wins)."""

    model_config = ConfigDict(extra="allow")

    type: str | None = None
    connector: str | None = None

    @model_validator(mode="after")
    def _typed(self) -> NamedConnectorModel:
        if not (self.type or self.connector):
            raise ValueError(
                "a named connector needs its type: type: jdbc (see `reflow connectors`)"
            )
        return self

    @property
    def connector_name(self) -> str:
        return str(self.connector or self.type)

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class JobFile(_Model):
    connectors: dict[str, NamedConnectorModel] = Field(default_factory=dict)
    job: JobModel


def validate_loaded(loaded: LoadedYaml, model: type[BaseModel]) -> Any:
    """Validate YAML data into ``model``; every error becomes a ConfigError with its
    line (several are combined into one that lists them all)."""
    try:
        return model.model_validate(loaded.data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "missing":
                message = f"missing required key {loc[-1]!r}" if loc else message
                loc = loc[:-1]
            elif error["type"] == "extra_forbidden":
                message = _unknown_key(model, loc)
            elif error["type"] not in ("value_error", "assertion_error"):
                message = f"{message} (got {error.get('input')!r})"
            problems.append(loaded.error(loc, message))
        raise ConfigError.combine(problems) from None
    except ConfigError:
        raise


def _unknown_key(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """The message for an unknown key at ``loc``: the closest key of that place if
    one is close, and the keys written there (where the model says which)."""
    key = str(loc[-1])
    place = _model_at(model, loc[:-1])
    if place is None:
        return f"unknown key {key!r}; check the spelling (see docs/yaml.md)"
    fields = place.model_fields
    names = list(fields)
    # each field by its name and by its camelCase alias
    spellings = {n: n for n in names} | {f.alias: n for n, f in fields.items() if f.alias}
    close = difflib.get_close_matches(key, list(spellings), n=1)
    hint = f"did you mean {spellings[close[0]]!r}? " if close else ""
    return f"unknown key {key!r}; {hint}keys here: {', '.join(names)} (see docs/yaml.md)"


def _model_at(model: Any, loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model that validates the mapping at ``loc`` (a path of keys and list
    indices from ``model``), or None when the annotations do not say one model."""
    current = model
    for part in loc:
        current = _one_type(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:  # written by its camelCase alias
                by_alias = [f for f in current.model_fields.values() if f.alias == part]
                field = by_alias[0] if by_alias else None
            if field is None:
                return None
            current = field.annotation
            continue
        origin, args = typing.get_origin(current), typing.get_args(current)
        if origin in (list, tuple) and isinstance(part, int) and args:
            current = args[0]
        elif origin is dict and len(args) == 2:
            current = args[1]
        else:
            return None
    current = _one_type(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return current
    return None


def _one_type(annotation: Any) -> Any:
    """``X | None`` as ``X``; other unions and plain annotations as they are."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return members[0]
    return annotation
