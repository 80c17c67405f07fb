"""Job files (seed §6.2): YAML -> StreamGraph -> Job.

Sources, operators and sinks are wired in file order unless a node lists its
``inputs``: an operator reads the previous operator (the first one reads every
source), a sink reads the last operator. Operators name a Python callable
(``module:function``) or a Python expression of ``r``, the record.
"""

from __future__ import annotations

import operator
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic.alias_generators import to_snake

from reflow.api.builders import StreamGraphBuilder
from reflow.config.expressions import compile_expression
from reflow.config.models import (
    AggregateModel,
    ExpectationModel,
    JobFile,
    JobModel,
    NamedConnectorModel,
    NodeModel,
    OperatorModel,
    ResourcesModel,
    RestartModel,
    WindowModel,
    validate_loaded,
)
from reflow.config.policy import SUBMITTED, SubmissionPolicy
from reflow.config.yaml_loader import LoadedYaml, load_yaml, load_yaml_text
from reflow.connectors.options import OptionsConnector
from reflow.connectors.registry import ConnectorSpec, get_connector
from reflow.errors import ConfigError, ReflowError
from reflow.graph.job import (
    CheckpointConfig,
    ErrorMode,
    ErrorPolicy,
    Job,
    JobConfig,
    JobType,
    ResourceSettings,
    check_job_id,
    check_job_name,
)
from reflow.graph.job_graph import JobGraph
from reflow.graph.restart import (
    ExponentialBackoffRestart,
    FailureRateRestart,
    FixedDelayRestart,
    NoRestart,
    RestartStrategy,
)
from reflow.graph.stream_graph import NodeKind, StreamGraph
from reflow.loading import resolve_callable
from reflow.operators.aggregations import Aggregations
from reflow.operators.facade import Operators
from reflow.operators.quality import QualityOp, expectation_of
from reflow.operators.windows import Windows, WindowSpec
from reflow.scheduler.autoscaler import AutoscalerConfig
from reflow.scheduler.store import PYTHON_JOB_PREFIX
from reflow.state.functions import AggregateFunction

__all__ = [
    "compile_expression",
    "job_loader",
    "load_job",
    "load_job_text",
    "resolve_callable",
    "sql_job_file",
]


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _field_or_expression(text: str, where: Callable[[str], ConfigError]) -> Callable[[Any], Any]:
    """A field name reads that field; anything else is an expression of r."""
    if text.isidentifier():
        return operator.itemgetter(text)
    return compile_expression(text, where)


def _window(model: WindowModel) -> WindowSpec:
    processing = None if model.time is None else model.time == "processing"
    if model.type == "tumbling":
        assert model.size is not None
        return Windows.tumbling(_ms(model.size), processing_time=processing)
    if model.type == "sliding":
        assert model.size is not None and model.slide is not None
        return Windows.sliding(_ms(model.size), _ms(model.slide), processing_time=processing)
    if model.type == "cumulative":
        assert model.size is not None and model.step is not None
        return Windows.cumulative(_ms(model.size), _ms(model.step), processing_time=processing)
    if model.type == "session":
        assert model.gap is not None
        return Windows.session(_ms(model.gap), processing_time=processing)
    assert model.count is not None
    return Windows.global_count(model.count)


def _aggregate(
    model: AggregateModel,
    where: Callable[[str], ConfigError],
    modules: tuple[str, ...] | None = None,
) -> AggregateFunction[Any, Any, Any]:
    of: Any = model.field
    if model.expression is not None:
        of = compile_expression(model.expression, where)
    if model.type == "count":
        return Aggregations.count()
    if model.type == "top_n":
        assert model.n is not None
        return Aggregations.top_n(model.n, of)
    if model.type == "reduce":
        assert model.function is not None
        return Aggregations.reduce(resolve_callable(model.function, where, modules), of)
    factory: Callable[[Any], AggregateFunction[Any, Any, Any]] = getattr(Aggregations, model.type)
    return factory(of)


def _restart(model: RestartModel) -> RestartStrategy:
    if model.strategy == "fixed-delay":
        return FixedDelayRestart(model.attempts, model.delay)
    if model.strategy == "exponential-backoff":
        return ExponentialBackoffRestart(model.initial_delay, model.max_delay, model.multiplier)
    if model.strategy == "failure-rate":
        return FailureRateRestart(
            model.max_failures_per_interval, model.failure_rate_interval, model.delay
        )
    return NoRestart()


def _options(connector: Any, config: Mapping[str, Any], role: str) -> Mapping[str, Any]:
    """A connector's options after validation (defaults filled in), for the policy."""
    if isinstance(connector, OptionsConnector):
        parsed = connector.parse(config, role, connector._model(role))
        return parsed.model_dump()
    return {to_snake(str(k)).replace("-", "_"): v for k, v in config.items()}


def _spec(
    node: NodeModel,
    path: tuple[str | int, ...],
    loaded: LoadedYaml,
    role: str,
    policy: SubmissionPolicy | None = None,
    named: Mapping[str, NamedConnectorModel] | None = None,
) -> ConnectorSpec:
    name = node.connector_name
    config = dict(node.config)
    defined = (named or {}).get(name)
    if defined is not None:  # a connector of the connectors: block; the step's config wins
        name = defined.connector_name
        config = {**defined.options, **config}
    at = (*path, "config") if node.config else path
    try:
        connector = get_connector(name)
        connector.validate_config(config, role)
        if policy is not None:
            policy.check_connector(name, _options(connector, config, role), f"{role} {name!r}")
    except ReflowError as exc:
        option = getattr(exc, "option", None)
        if option is not None and option in node.config:
            at = (*path, "config", option)  # the option's own line
        elif defined is not None and option is not None and option in defined.options:
            at = ("connectors", node.connector_name, option)
        raise loaded.error(at, str(exc)) from None
    return ConnectorSpec(name, config, node.name, node.parallelism)


def _whole_stream(record: Any) -> None:
    """The key of a window-aggregate without ``key``: one window over all records."""
    return None


def _unchanged(record: Any) -> Any:
    return record


def _keep(record: Any) -> bool:
    return True


def _notes(model: JobModel) -> list[str]:
    """What a job file leaves to defaults that a reader might not expect."""
    notes = []
    for op in model.operators:
        if op.type in ("map", "filter") and op.function is None and op.expression is None:
            notes.append(
                f"operator {op.name!r} ({op.type}) has no function or expression: "
                "records pass through unchanged"
            )
        if op.type == "window_aggregate" and op.key is None:
            notes.append(
                f"operator {op.name!r} has no key: one window aggregates all records "
                "(key None in its output)"
            )
    return notes


def _resource_settings(resources: ResourcesModel | None) -> ResourceSettings:
    """JobConfig fields from seed §10.4's ``threadPool`` and ``buffer`` blocks."""
    if resources is None:
        return {}
    pools, buffer = resources.thread_pool, resources.buffer
    io = pools.io if pools is not None else None
    compute = pools.compute if pools is not None else None
    return {
        "io_threads": io.max_size if io is not None else None,
        "io_threads_started": io.core_size if io is not None else None,
        # A compute pool's threads start on first use: coreSize sizes it when alone.
        "compute_threads": (compute.max_size or compute.core_size) if compute is not None else None,
        "source_buffer": buffer.source_buffer if buffer is not None else None,
        "sink_buffer": buffer.sink_buffer if buffer is not None else None,
    }


def _resource_notes(resources: ResourcesModel | None, graph: JobGraph) -> list[str]:
    """What of seed §10.4's ``resources:`` block cannot take effect, and why."""
    if resources is None:
        return []
    notes = []
    jvm = resources.jvm
    if jvm is not None and jvm.heap is not None:
        notes.append(f"resources.jvm.heap {jvm.heap} is the job's memory budget (resources.memory)")
    lacks = {"metaspace": "metaspace", "gc": "choice of garbage collector"}
    for name, missing in lacks.items():
        if jvm is not None and getattr(jvm, name) is not None:
            notes.append(
                f"resources.jvm.{name} has no effect: reflow runs on CPython, which has "
                f"no {missing}; remove it"
            )
    buffer = resources.buffer
    if buffer is not None:
        kinds = {
            "sourceBuffer": (buffer.source_buffer, NodeKind.SOURCE, "outputs"),
            "sinkBuffer": (buffer.sink_buffer, NodeKind.SINK, "inputs"),
        }
        for name, (value, kind, side) in kinds.items():
            if value is None:
                continue
            exchanged = any(
                getattr(v, side) for v in graph.vertices for n in v.chained_nodes if n.kind is kind
            )
            if not exchanged:
                notes.append(
                    f"resources.buffer.{name} has no effect: every "
                    f"{'source' if kind is NodeKind.SOURCE else 'sink'} is chained to its "
                    "neighbours, so no channel holds its records (set chaining: false or a "
                    "different parallelism to give it one)"
                )
    return notes


def _operator(
    op: OperatorModel,
    path: tuple[str | int, ...],
    loaded: LoadedYaml,
    modules: tuple[str, ...] | None = None,
) -> Any:
    def where(field: str) -> Callable[[str], ConfigError]:
        return lambda message: loaded.error((*path, field), message)

    if op.type == "union":
        return Operators.union(name=op.name, parallelism=op.parallelism)
    if op.type == "assign_timestamps":
        assert op.timestamp is not None
        return Operators.assign_timestamps(
            _field_or_expression(op.timestamp, where("timestamp")),
            max_out_of_orderness_ms=_ms(op.max_out_of_orderness),
            idle_timeout_ms=None if op.idle_timeout is None else _ms(op.idle_timeout),
            name=op.name,
            parallelism=op.parallelism,
        )
    if op.type in ("window_aggregate", "aggregate", "deduplicate"):
        key = _whole_stream if op.key is None else _field_or_expression(op.key, where("key"))
        if op.type == "deduplicate":
            return Operators.deduplicate(
                key,
                ttl_ms=None if op.ttl is None else _ms(op.ttl),
                name=op.name,
                parallelism=op.parallelism,
            )
        aggregate = _aggregate(
            op.aggregate or AggregateModel(),
            lambda m: loaded.error((*path, "aggregate"), m),
            modules,
        )
        if op.type == "aggregate":
            return Operators.aggregate(
                key,
                aggregate=aggregate,
                emit=op.emit,
                name=op.name,
                parallelism=op.parallelism,
                key_name=op.key if op.key and op.key.isidentifier() else None,
            )
        assert op.window is not None
        return Operators.window_aggregate(
            _window(op.window),
            key,
            aggregate,
            timestamp=(
                None
                if op.timestamp is None
                else _field_or_expression(op.timestamp, where("timestamp"))
            ),
            allowed_lateness_ms=_ms(op.allowed_lateness),
            name=op.name,
            parallelism=op.parallelism,
        )
    if op.type == "key_by":
        if op.function is not None:
            key = resolve_callable(op.function, where("function"), modules)
        elif op.expression is not None:
            key = compile_expression(op.expression, where("expression"))
        else:
            assert op.key is not None
            key = (
                operator.itemgetter(op.key)
                if op.key.isidentifier()
                else compile_expression(op.key, where("key"))
            )
        return Operators.key_by(key, name=op.name, parallelism=op.parallelism)
    if op.function is not None:
        fn = resolve_callable(op.function, where("function"), modules)
    elif op.expression is not None:
        fn = compile_expression(op.expression, where("expression"))
    else:
        fn = _keep if op.type == "filter" else _unchanged
    factory = {"map": Operators.map, "filter": Operators.filter, "flat_map": Operators.flat_map}
    return factory[op.type](
        fn,
        name=op.name,
        parallelism=op.parallelism,
        concurrency=op.concurrency,
        ordered=op.ordered,
        blocking=op.blocking,
    )


def _quality(
    builder: StreamGraphBuilder,
    step: str,
    entries: list[ExpectationModel] | None,
    path: tuple[str | int, ...],
    loaded: LoadedYaml,
    parallelism: int | None,
) -> str:
    """Add the quality step that checks ``step``'s output (``quality:`` on it), wired
    after it; returns the step downstream steps read from."""
    if not entries:
        return step
    expectations = []
    for index, entry in enumerate(entries):
        try:
            expectations.append(expectation_of(entry.check, entry.options()))
        except ReflowError as exc:
            raise loaded.error((*path, "quality", index), str(exc)) from None
    checked = f"{step}-quality"
    try:
        builder.add_operator(checked, QualityOp(tuple(expectations), parallelism=parallelism))
        builder.connect(step, checked)
    except ReflowError as exc:
        raise loaded.error((*path, "quality"), str(exc)) from None
    return checked


def build_job(
    loaded: LoadedYaml,
    default_parallelism: int | None = None,
    policy: SubmissionPolicy | None = None,
) -> Job:
    """Validate loaded YAML and build the Job it describes.

    With ``policy`` (jobs submitted through the API) every function, path and
    address is checked against it before anything is imported or opened.
    """
    submission = policy if policy is not None and policy.enabled else None
    modules = submission.allowed_modules if submission is not None else None
    if isinstance(loaded.data, dict) and "job" not in loaded.data and "system" in loaded.data:
        raise loaded.error((), "this is a system config (system:), not a job file (job:)")
    job_file: JobFile = validate_loaded(loaded, JobFile)
    model = job_file.job
    named = job_file.connectors
    base = ("job",)
    parallelism = model.parallelism or (model.resources.parallelism if model.resources else None)
    if model.sql is not None:
        sql = _sql_job(model.sql, model.name, parallelism, loaded, submission)
        graph = sql.stream_graph
        return _job_of(
            loaded, model, graph, parallelism, default_parallelism, submission, named, sql
        )
    builder = StreamGraphBuilder(model.name)
    if parallelism:
        builder.parallelism(parallelism)

    sources = [model.source] if model.source is not None else list(model.sources or [])
    src_key = "source" if model.source is not None else "sources"
    source_ids: list[str] = []
    checked: dict[str, str] = {}
    """step -> the quality step after it (``quality:`` on the step)."""
    problems: list[ConfigError] = []
    """Every step's problems, reported together (one pass of ``reflow validate``)."""
    path: tuple[str | int, ...]
    for index, node in enumerate(sources):
        path = (*base, src_key) if model.source is not None else (*base, src_key, index)
        step = node.name or ("source" if len(sources) == 1 else f"source-{index + 1}")
        try:
            builder.add_source(step, _spec(node, path, loaded, "source", submission, named))
            checked[step] = _quality(builder, step, node.quality, path, loaded, node.parallelism)
        except ConfigError as exc:
            problems.append(exc)
        except ReflowError as exc:
            problems.append(loaded.error(path, str(exc)))
        source_ids.append(step)

    previous = [checked.get(step, step) for step in source_ids]
    wiring: list[tuple[str, list[str], tuple[str | int, ...]]] = []
    for index, op in enumerate(model.operators):
        path = (*base, "operators", index)
        try:
            builder.add_operator(op.name, _operator(op, path, loaded, modules))
            checked[op.name] = _quality(builder, op.name, op.quality, path, loaded, op.parallelism)
        except ConfigError as exc:
            problems.append(exc)
        except ReflowError as exc:
            problems.append(loaded.error(path, str(exc)))
        inputs = op.inputs if op.inputs is not None else previous
        wiring.append((op.name, inputs, (*path, "inputs")))
        previous = [checked.get(op.name, op.name)]

    sinks = [model.sink] if model.sink is not None else list(model.sinks or [])
    sink_key = "sink" if model.sink is not None else "sinks"
    for index, node in enumerate(sinks):
        path = (*base, sink_key) if model.sink is not None else (*base, sink_key, index)
        step = node.name or ("sink" if len(sinks) == 1 else f"sink-{index + 1}")
        if node.quality:
            problems.append(
                loaded.error(
                    (*path, "quality"),
                    "quality: belongs on the step before the sink (its output is checked)",
                )
            )
        try:
            builder.add_sink(step, _spec(node, path, loaded, "sink", submission, named))
        except ConfigError as exc:
            problems.append(exc)
        except ReflowError as exc:
            problems.append(loaded.error(path, str(exc)))
        wiring.append(
            (step, node.inputs if node.inputs is not None else previous, (*path, "inputs"))
        )

    if model.error_policy.dead_letter is not None:
        try:
            _spec(
                model.error_policy.dead_letter,
                (*base, "error_policy", "dead_letter"),
                loaded,
                "sink",
                submission,
                named,
            )
        except ConfigError as exc:
            problems.append(exc)
    if problems:
        raise ConfigError.combine(problems)

    for target, inputs, inputs_path in wiring:
        for upstream in inputs:
            # "step.late" names the side output "late" of step.
            step, dot, side = upstream.rpartition(".")
            if not dot or step not in {*source_ids, *(o.name for o in model.operators)}:
                step, side = checked.get(upstream, upstream), ""
            try:
                builder.connect(step, target, side_output=side or None)
            except ReflowError as exc:
                raise loaded.error(inputs_path, str(exc)) from None
    try:
        graph = builder.build()
    except ConfigError:
        raise
    except ReflowError as exc:
        failed = getattr(exc, "step_id", None)
        where = next((p for t, _, p in wiring if t == failed), base)
        raise loaded.error(where, str(exc)) from None

    return _job_of(loaded, model, graph, parallelism, default_parallelism, submission, named)


def _sql_job(
    text: str,
    name: str,
    parallelism: int | None,
    loaded: LoadedYaml,
    submission: SubmissionPolicy | None,
) -> Job:
    """The job of a ``sql:`` block; its tables' connectors are checked against the
    submission policy as a YAML job's steps are."""
    from reflow.table import SqlError, sql_job

    check = None
    if submission is not None:
        policy = submission

        def check(connector: str, options: dict[str, Any], role: str) -> None:
            found = get_connector(connector)
            policy.check_connector(
                connector, _options(found, options, role), f"{role} {connector!r}"
            )

    try:
        return sql_job(
            text,
            name=name,
            parallelism=parallelism,
            check_connector=check,
            allowed_modules=submission.allowed_modules if submission is not None else None,
        )
    except SqlError as exc:
        column = f":{exc.column}" if exc.column else ""
        place = f"line {exc.line}{column} of the SQL: " if exc.line else ""
        raise loaded.error(("job", "sql"), place + exc.reason) from None
    except ReflowError as exc:
        raise loaded.error(("job", "sql"), str(exc)) from None


def _job_of(
    loaded: LoadedYaml,
    model: JobModel,
    graph: StreamGraph,
    parallelism: int | None,
    default_parallelism: int | None,
    submission: SubmissionPolicy | None,
    named: Mapping[str, NamedConnectorModel],
    sql: Job | None = None,
) -> Job:
    """The Job of ``graph`` with the job-level settings of ``model`` (those a ``sql:``
    job's SET statements gave where the YAML gives none)."""
    base = ("job",)
    policy_model = model.error_policy
    dead_letter = None
    if policy_model.dead_letter is not None:
        dead_letter = _spec(
            policy_model.dead_letter,
            (*base, "error_policy", "dead_letter"),
            loaded,
            "sink",
            submission,
            named,
        )
    if submission is not None and model.checkpoint is not None:
        try:
            submission.check_path(model.checkpoint.path, "checkpoint")
        except ConfigError as exc:
            raise loaded.error((*base, "checkpoint", "path"), str(exc)) from None
    try:
        error_policy = ErrorPolicy(
            ErrorMode(policy_model.mode),
            dead_letter,
            {step: ErrorMode(mode) for step, mode in policy_model.steps.items()},
        )
    except ReflowError as exc:
        raise loaded.error((*base, "error_policy"), str(exc)) from None
    from_sql = sql.config if sql is not None else JobConfig()
    config = JobConfig(
        parallelism=parallelism or from_sql.parallelism,
        chaining=model.chaining,
        error_policy=error_policy,
        batch_size=model.batch_size or from_sql.batch_size,
        checkpoint=from_sql.checkpoint
        if model.checkpoint is None
        else CheckpointConfig(
            path=model.checkpoint.path,
            interval_ms=_ms(model.checkpoint.interval),
            timeout_ms=_ms(model.checkpoint.timeout),
            retained=model.checkpoint.retained,
            tolerable_failures=model.checkpoint.tolerable_failures,
        ),
        restart=_restart(model.restart),
        **_resource_settings(model.resources),
    )
    job_graph = graph.to_job_graph(
        chaining=model.chaining,
        default_parallelism=config.parallelism or default_parallelism,
    )
    for key, value, check in (("id", model.id, check_job_id), ("name", model.name, check_job_name)):
        if value is not None:
            try:
                check(value)
            except ConfigError as exc:
                raise loaded.error((*base, key), str(exc)) from None
    metadata = dict(model.metadata)
    notes = _notes(model) + _resource_notes(model.resources, job_graph)
    if notes:
        metadata["notes"] = notes
    if model.schedule is not None:
        metadata["schedule"] = model.schedule
    metadata["priority"] = model.priority
    if model.autoscaler is not None:
        try:
            AutoscalerConfig(**model.autoscaler.settings())
        except ConfigError as exc:
            raise loaded.error((*base, "autoscaler"), str(exc)) from None
        # Only what the block sets: the system's autoscaler defaults fill the rest.
        metadata["autoscaler"] = model.autoscaler.settings(only_given=True)
    if model.resources is not None and model.resources.memory_budget:
        metadata["memory"] = model.resources.memory_budget
    if model.resources is not None and model.resources.cpu:
        metadata["cpu"] = model.resources.cpu
    job_id = model.id
    if job_id is None and sql is not None and not sql.id_generated:
        job_id = sql.job_id  # SET 'job.id'
    return Job(
        job_graph,
        job_id=job_id,
        name=model.name,
        job_type=JobType(model.type) if model.type else None,
        config=config,
        metadata={**metadata, "source_file": loaded.file},
    )


def _importable_from(path: Path) -> None:
    # `module:function` next to the job file, or in the working directory, resolves.
    for folder in (str(path.resolve().parent), str(Path.cwd())):
        if folder not in sys.path:
            sys.path.insert(0, folder)


def load_job(path: str | Path, default_parallelism: int | None = None) -> Job:
    """Load, validate and compile a job file.

    Raises:
        ConfigError: with the file, the line and the fix.
    """
    _importable_from(Path(path))
    return build_job(load_yaml(path), default_parallelism)


def sql_job_file(sql: str, name: str = "sql") -> str:
    """A SQL script as the text of a job file (``job: {name, sql}``), the form in
    which the job store keeps a submitted SQL job."""
    import yaml

    class _Block(str):
        pass

    class _Dumper(yaml.SafeDumper):
        pass

    def block(dumper: yaml.SafeDumper, value: _Block) -> yaml.Node:
        return dumper.represent_scalar("tag:yaml.org,2002:str", str(value), style="|")

    _Dumper.add_representer(_Block, block)
    dumper = _Dumper
    text = "\n".join(line.rstrip() for line in sql.strip().splitlines()) + "\n"
    return yaml.dump({"job": {"name": name, "sql": _Block(text)}}, Dumper=dumper, sort_keys=False)


def job_loader(text: str, folder: str, policy: SubmissionPolicy | None = None) -> Job:
    """Build a Job from stored job-file text whose functions live in ``folder``
    (the loader the job manager uses). Jobs submitted through the API (folder
    ``SUBMITTED``) are built under ``policy`` — the default one when none is given."""
    if text.startswith(PYTHON_JOB_PREFIX):
        if folder == SUBMITTED:
            raise ConfigError(
                "jobs submitted through the API are YAML; a Python job is scheduled "
                "from Python (JobManager.schedule) where its module is importable"
            )
        from reflow.config.python_job import load_python_job

        if folder and folder not in sys.path:
            sys.path.insert(0, folder)
        return load_python_job(text.removeprefix(PYTHON_JOB_PREFIX))
    if folder == SUBMITTED:
        return load_job_text(text, "<submitted>", policy=policy or SubmissionPolicy())
    if folder:
        _importable_from(Path(folder) / "job.yaml")
    return load_job_text(text, "<job file>")


def load_job_text(
    text: str,
    file: str = "<string>",
    default_parallelism: int | None = None,
    *,
    policy: SubmissionPolicy | None = None,
) -> Job:
    """Like ``load_job``, from a string; ``policy`` limits what the job may touch."""
    if policy is not None and policy.enabled:
        loaded = load_yaml_text(text, file, policy.environment(), restricted_env=True)
        return build_job(loaded, default_parallelism, policy)
    return build_job(load_yaml_text(text, file), default_parallelism)
