"""The builders of the user API: ``StreamGraph.builder()`` (named nodes and explicit
``connect()`` calls, seed §3.2.4) and ``Job.builder()`` (a linear job, seed §9.1).

They validate as they go and once more on ``build()``, and return the model
objects of ``reflow.graph``; every error names the step and the fix. The model
classes reach them through ``register_builder`` (the model does not import the
API above it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Unpack

from reflow.errors import GraphValidationError
from reflow.graph.durations import DurationLike, millis
from reflow.graph.job import (
    CheckpointConfig,
    ErrorMode,
    ErrorPolicy,
    Job,
    JobConfig,
    JobType,
    ResourceSettings,
    written_target,
)
from reflow.graph.partitioning import Partitioning
from reflow.graph.restart import RestartStrategy
from reflow.graph.stream_graph import (
    NodeKind,
    Overflow,
    StreamEdge,
    StreamGraph,
    StreamNode,
    check_timestamps,
    register_builder,
    validate_step_id,
)
from reflow.graph.traits import NodeTraits

__all__ = ["JobBuilder", "StreamGraphBuilder"]


class StreamGraphBuilder:
    """Builds a StreamGraph from named nodes and ``connect()`` calls.

    Example:
        >>> from reflow import StreamGraph, Operators
        >>> from reflow.testing import TestingSource, TestingSink
        >>> graph = (StreamGraph.builder()
        ...     .add_source("numbers", TestingSource([1, 2, 3]))
        ...     .add_operator("double", Operators.map(lambda x: x * 2))
        ...     .add_sink("out", TestingSink())
        ...     .connect("numbers", "double")
        ...     .connect("double", "out")
        ...     .build())
        >>> [n.step_id for n in graph.nodes]
        ['numbers', 'double', 'out']
    """

    def __init__(self, name: str = "job") -> None:
        self._name = name
        self._nodes: dict[str, tuple[NodeKind, Any, int | None, NodeTraits]] = {}
        self._edges: list[StreamEdge] = []
        self._parallelism: int | None = None

    def name(self, name: str) -> StreamGraphBuilder:
        self._name = name
        return self

    def parallelism(self, parallelism: int) -> StreamGraphBuilder:
        """Default parallelism of nodes that do not set their own."""
        self._parallelism = _check_parallelism(parallelism, "graph default")
        return self

    def _add(
        self, kind: NodeKind, step_id: str, payload: Any, parallelism: int | None
    ) -> StreamGraphBuilder:
        validate_step_id(step_id)
        if step_id in self._nodes:
            raise GraphValidationError(
                f"step id {step_id!r} is used twice; every source, operator and sink needs "
                f"a unique id (e.g. {step_id + '-2'!r})",
                step_id=step_id,
            )
        if payload is None:
            raise GraphValidationError(
                f"step {step_id!r} has no {kind.value}: pass the {kind.value} object",
                step_id=step_id,
            )
        if kind is not NodeKind.OPERATOR:
            # A connector spec checks its options for the role it has here now, so a
            # wrong option fails where the job is built, not when it starts.
            validate = getattr(payload, "validate", None)
            if callable(validate):
                validate(kind.value)
        traits = NodeTraits.of(payload, kind.value, source=kind is NodeKind.SOURCE)
        if parallelism is None:
            parallelism = traits.parallelism
        if parallelism is not None:
            _check_parallelism(parallelism, step_id)
        self._nodes[step_id] = (kind, payload, parallelism, traits)
        return self

    def add_source(
        self, step_id: str, source: Any, *, parallelism: int | None = None
    ) -> StreamGraphBuilder:
        """Add a source (a Source, or a connector spec from ``Connectors``)."""
        return self._add(NodeKind.SOURCE, step_id, source, parallelism)

    def add_operator(
        self, step_id: str, operator: Any, *, parallelism: int | None = None
    ) -> StreamGraphBuilder:
        """Add an operator (from ``Operators``)."""
        return self._add(NodeKind.OPERATOR, step_id, operator, parallelism)

    def add_sink(
        self, step_id: str, sink: Any, *, parallelism: int | None = None
    ) -> StreamGraphBuilder:
        """Add a sink (a Sink, or a connector spec from ``Connectors``)."""
        return self._add(NodeKind.SINK, step_id, sink, parallelism)

    # The seed's spellings (§9.3).
    addSource = add_source
    addOperator = add_operator
    addSink = add_sink

    def connect(
        self,
        source_id: str,
        target_id: str,
        *,
        partitioning: Partitioning | str | None = None,
        key_selector: Callable[[Any], Any] | None = None,
        overflow: Overflow | str = Overflow.BUFFER,
        capacity: int | None = None,
        side_output: str | None = None,
    ) -> StreamGraphBuilder:
        """Send the output of ``source_id`` (or its ``side_output``) into ``target_id``."""
        for step in (source_id, target_id):
            if step not in self._nodes:
                known = ", ".join(repr(s) for s in self._nodes) or "none yet"
                raise GraphValidationError(
                    f"connect({source_id!r}, {target_id!r}): unknown step {step!r}; "
                    f"add it first with add_source/add_operator/add_sink (known: {known})",
                    step_id=step,
                )
        if source_id == target_id:
            raise GraphValidationError(
                f"connect({source_id!r}, {target_id!r}): a step cannot feed itself",
                step_id=source_id,
            )
        if self._nodes[source_id][0] is NodeKind.SINK:
            raise GraphValidationError(
                f"connect({source_id!r}, {target_id!r}): {source_id!r} is a sink and has no "
                "output; connect from a source or an operator",
                step_id=source_id,
            )
        if self._nodes[target_id][0] is NodeKind.SOURCE:
            raise GraphValidationError(
                f"connect({source_id!r}, {target_id!r}): {target_id!r} is a source and takes "
                "no input; connect into an operator or a sink",
                step_id=target_id,
            )
        outputs = self._nodes[source_id][3].side_outputs
        if side_output is not None and side_output not in outputs:
            raise GraphValidationError(
                f"connect({source_id!r}, {target_id!r}, side_output={side_output!r}): "
                f"{source_id!r} has no side output {side_output!r} "
                f"(it has: {', '.join(outputs) or 'none'})",
                step_id=source_id,
            )
        if any(e.source_id == source_id and e.target_id == target_id for e in self._edges):
            raise GraphValidationError(
                f"connect({source_id!r}, {target_id!r}) is given twice; remove the duplicate",
                step_id=target_id,
            )
        part = Partitioning(partitioning) if isinstance(partitioning, str) else partitioning
        if part is Partitioning.HASH and key_selector is None:
            raise GraphValidationError(
                f"connect({source_id!r}, {target_id!r}): HASH partitioning needs a "
                "key_selector (or use Operators.key_by before the target)",
                step_id=target_id,
            )
        if capacity is not None and capacity < 1:
            raise GraphValidationError(
                f"connect({source_id!r}, {target_id!r}): capacity must be >= 1, got {capacity}",
                step_id=target_id,
            )
        self._edges.append(
            StreamEdge(
                source_id,
                target_id,
                part,
                key_selector,
                Overflow(overflow) if isinstance(overflow, str) else overflow,
                capacity,
                side_output,
            )
        )
        return self

    def _check_written_targets(self) -> None:
        """Two sinks of one file would write over each other: refused, naming both."""
        writers: dict[str, str] = {}
        for step_id, (kind, payload, _, _) in self._nodes.items():
            if kind is not NodeKind.SINK:
                continue
            target = written_target(payload)
            if target is None:
                continue
            if target in writers:
                raise GraphValidationError(
                    f"sinks {writers[target]!r} and {step_id!r} both write {target}: one "
                    "would write over the other; union the two streams into one sink, or "
                    "give each sink its own path",
                    step_id=step_id,
                )
            writers[target] = step_id

    def build(self) -> StreamGraph:
        """Validate and return the StreamGraph.

        Raises:
            GraphValidationError: no source or sink, an unconnected node, or a cycle.
        """
        if not any(kind is NodeKind.SOURCE for kind, _, _, _ in self._nodes.values()):
            raise GraphValidationError(
                f"graph {self._name!r} has no source; add one with add_source(id, source)"
            )
        if not any(kind is NodeKind.SINK for kind, _, _, _ in self._nodes.values()):
            raise GraphValidationError(
                f"graph {self._name!r} has no sink; add one with add_sink(id, sink) so the "
                "results go somewhere"
            )
        self._check_written_targets()
        incoming: dict[str, list[StreamEdge]] = {s: [] for s in self._nodes}
        outgoing: dict[str, list[StreamEdge]] = {s: [] for s in self._nodes}
        for edge in self._edges:
            incoming[edge.target_id].append(edge)
            outgoing[edge.source_id].append(edge)
        for step_id, (kind, _, _, _) in self._nodes.items():
            if kind is not NodeKind.SOURCE and not incoming[step_id]:
                raise GraphValidationError(
                    f"{kind.value} {step_id!r} has no input; connect(<upstream>, {step_id!r}) "
                    "or remove it",
                    step_id=step_id,
                )
            if kind is not NodeKind.SINK and not any(
                e.side_output is None for e in outgoing[step_id]
            ):
                raise GraphValidationError(
                    f"{kind.value} {step_id!r} has no output, so its records would be lost; "
                    f"connect({step_id!r}, <downstream>) or remove it",
                    step_id=step_id,
                )
        kept, edges = _collapse_exchanges(self._nodes, self._edges)
        incoming = {s: [] for s in kept}
        outgoing = {s: [] for s in kept}
        for edge in edges:
            incoming[edge.target_id].append(edge)
            outgoing[edge.source_id].append(edge)
        nodes = tuple(
            StreamNode(
                node_id=index + 1,
                step_id=step_id,
                kind=kind,
                operator_type=traits.operator_type,
                payload=payload,
                parallelism=parallelism,
                in_edges=tuple(incoming[step_id]),
                out_edges=tuple(outgoing[step_id]),
                config=traits.config,
                traits=traits,
            )
            for index, (step_id, (kind, payload, parallelism, traits)) in enumerate(kept.items())
        )
        graph = StreamGraph(nodes, tuple(edges), self._name, self._parallelism)
        graph.topological_order()  # raises on a cycle
        check_timestamps(graph)
        return graph


_NodeEntry = tuple[NodeKind, Any, "int | None", NodeTraits]


def _collapse_exchanges(
    nodes: Mapping[str, _NodeEntry], edges: list[StreamEdge]
) -> tuple[dict[str, _NodeEntry], list[StreamEdge]]:
    """Replace every exchange-only node (``key_by``) by keyed edges from each of its
    inputs to each of its outputs, as Flink's keyBy is a partitioning rather than an
    operator: records then cross one channel, not two, and the key is computed once
    on the way. An explicit partitioning given on the way out is kept."""
    kept = dict(nodes)
    edges = list(edges)
    for step_id, (_, _, _, traits) in nodes.items():
        if not traits.exchange_only:
            continue
        del kept[step_id]
        ins = [e for e in edges if e.target_id == step_id]
        rewired: list[StreamEdge] = []
        for out in edges:
            if out.target_id == step_id:
                continue
            if out.source_id != step_id:
                rewired.append(out)
                continue
            for into in ins:
                if any(
                    e.source_id == into.source_id and e.target_id == out.target_id
                    for e in (*edges, *rewired)
                ):
                    raise GraphValidationError(
                        f"key_by {step_id!r} joins {into.source_id!r} to {out.target_id!r}, "
                        "which are already connected; merge the two paths with a union "
                        "before the key_by",
                        step_id=step_id,
                    )
                rewired.append(
                    StreamEdge(
                        into.source_id,
                        out.target_id,
                        out.partitioning or Partitioning.HASH,
                        out.key_selector or traits.key_selector,
                        out.overflow if out.overflow is not Overflow.BUFFER else into.overflow,
                        out.capacity if out.capacity is not None else into.capacity,
                        into.side_output,
                        step_id,
                    )
                )
        edges = rewired
    return kept, edges


def _check_parallelism(parallelism: object, where: str) -> int:
    if not isinstance(parallelism, int) or isinstance(parallelism, bool) or parallelism < 1:
        raise GraphValidationError(
            f"{where}: parallelism must be a whole number >= 1, got {parallelism!r}",
            step_id=where,
        )
    return parallelism


class JobBuilder:
    """Fluent builder of a linear job; step ids come from names or types."""

    def __init__(self) -> None:
        self._name = "job"
        self._job_id: str | None = None
        self._type: JobType | None = None
        self._steps: list[tuple[str, str | None, Any]] = []
        self._config = JobConfig()
        self._metadata: dict[str, Any] = {}

    def name(self, name: str) -> JobBuilder:
        self._name = name
        return self

    def id(self, job_id: str) -> JobBuilder:
        self._job_id = job_id
        return self

    def type(self, job_type: JobType | str) -> JobBuilder:
        self._type = JobType(job_type) if isinstance(job_type, str) else job_type
        return self

    def parallelism(self, parallelism: int) -> JobBuilder:
        return self._replace(parallelism=parallelism)

    def chaining(self, enabled: bool) -> JobBuilder:
        return self._replace(chaining=enabled)

    def error_policy(
        self, policy: ErrorPolicy | ErrorMode | str, dead_letter: Any = None
    ) -> JobBuilder:
        """The job's error policy: an ErrorPolicy, or a mode ("fail", "skip",
        "dead-letter" with ``dead_letter``, a sink)."""
        if not isinstance(policy, ErrorPolicy):
            policy = ErrorPolicy(ErrorMode(policy), dead_letter=dead_letter)
        return self._replace(error_policy=policy)

    def batch_size(self, size: int) -> JobBuilder:
        return self._replace(batch_size=size)

    def checkpointing(
        self, path: str, interval_ms: DurationLike = 60_000, **options: Any
    ) -> JobBuilder:
        """Take a checkpoint every ``interval_ms`` (ms, a timedelta or "1m") into the
        folder ``path``."""
        interval = millis(interval_ms, "checkpoint interval")
        return self._replace(checkpoint=CheckpointConfig(path, interval, **options))

    def restart_strategy(self, strategy: RestartStrategy) -> JobBuilder:
        return self._replace(restart=strategy)

    def resources(self, **settings: Unpack[ResourceSettings]) -> JobBuilder:
        """The job's own thread pools and buffers (seed §10.4): ``io_threads`` /
        ``compute_threads`` size pools used by this job alone, ``source_buffer`` /
        ``sink_buffer`` are the records queued after sources and before sinks."""
        return self._replace(**settings)

    def metadata(self, **values: Any) -> JobBuilder:
        self._metadata.update(values)
        return self

    def _replace(self, **changes: Any) -> JobBuilder:
        from dataclasses import replace

        self._config = replace(self._config, **changes)
        return self

    def source(self, source: Any, *, id: str | None = None) -> JobBuilder:
        self._steps.append(("source", id, source))
        return self

    def transform(self, operator: Any, *, id: str | None = None) -> JobBuilder:
        self._steps.append(("operator", id, operator))
        return self

    def sink(self, sink: Any, *, id: str | None = None) -> JobBuilder:
        self._steps.append(("sink", id, sink))
        return self

    def build(self) -> Job:
        """Validate the steps, compile the JobGraph and return the Job."""
        kinds = [kind for kind, _, _ in self._steps]
        if kinds.count("source") != 1 or kinds[0] != "source":
            raise GraphValidationError(
                "Job.builder() takes exactly one .source(...) first; for several sources "
                "use StreamGraph.builder()"
            )
        if "sink" not in kinds:
            raise GraphValidationError("Job.builder() needs at least one .sink(...)")
        if any(k == "operator" for k in kinds[kinds.index("sink") :]):
            raise GraphValidationError(
                "Job.builder(): .transform(...) after .sink(...) has no input; "
                "put every transform before the sinks"
            )
        builder = StreamGraphBuilder(self._name)
        used: set[str] = set()
        previous: str | None = None
        for kind, step_id, payload in self._steps:
            step_id = _auto_id(kind, step_id, payload, used)
            used.add(step_id)
            if kind == "source":
                builder.add_source(step_id, payload)
            elif kind == "operator":
                builder.add_operator(step_id, payload)
            else:
                builder.add_sink(step_id, payload)
            assert previous is not None or kind == "source"
            if previous is not None:
                builder.connect(previous, step_id)
            if kind != "sink":
                previous = step_id
        graph = builder.build()
        job_graph = graph.to_job_graph(
            chaining=self._config.chaining, default_parallelism=self._config.parallelism
        )
        return Job(
            job_graph,
            job_id=self._job_id,
            name=self._name,
            job_type=self._type,
            config=self._config,
            metadata=self._metadata,
        )


def _auto_id(kind: str, given: str | None, payload: Any, used: set[str]) -> str:
    if given is not None:
        return validate_step_id(given)
    default = getattr(payload, "operator_type", None) if kind == "operator" else kind
    base = getattr(payload, "name", None) or default or kind
    base = str(base).replace("_", "-")
    candidate, n = base, 1
    while candidate in used:
        n += 1
        candidate = f"{base}-{n}"
    return candidate


register_builder("StreamGraph.builder", StreamGraphBuilder)
register_builder("Job.builder", JobBuilder)
