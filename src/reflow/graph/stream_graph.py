"""The StreamGraph: the logical DAG the user defines (seed §3.2).

Nodes are sources, operators and sinks, each with a stable ``step_id`` that
keys state, checkpoints and metrics. The graph is pure data: it neither runs
nor imports the runtime. ``StreamGraph.builder()`` validates as it goes and
once more on ``build()``; every error names the node and the fix.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from reflow.errors import GraphValidationError
from reflow.graph.partitioning import Partitioning
from reflow.graph.traits import NodeTraits

if TYPE_CHECKING:
    from reflow.graph.job_graph import JobGraph

__all__ = [
    "NodeKind",
    "Overflow",
    "StreamEdge",
    "StreamGraph",
    "StreamGraphBuilder",
    "StreamNode",
    "validate_step_id",
]

_STEP_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


class NodeKind(enum.Enum):
    """Where a node stands in the dataflow."""

    SOURCE = "source"
    OPERATOR = "operator"
    SINK = "sink"


class SpelledEnum(enum.Enum):
    """An enum whose string values may be given in any case, with '_' or '-' between
    words (``Overflow("BUFFER")``, ``ErrorMode("DEAD_LETTER")``), as the seed's Java
    constants and YAML files spell them."""

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if isinstance(value, str):
            wanted = value.strip().lower().replace("_", "-")
            for member in cls:
                if str(member.value).replace("_", "-") == wanted:
                    return member
        choices = ", ".join(repr(m.value) for m in cls)
        raise ValueError(f"{value!r} is not a valid {cls.__name__}: use one of {choices}")


class Overflow(SpelledEnum):
    """What a full channel does with the next batch (seed §10.3)."""

    BUFFER = "buffer"
    """Buffer up to the channel capacity, then make the producer wait (backpressure)."""
    DROP = "drop"
    """Drop the new batch; every dropped record is counted."""
    LATEST = "latest"
    """Drop the oldest buffered batch to keep the newest; counted."""
    ERROR = "error"
    """Fail the job: no record may be lost and none may wait."""


def validate_step_id(step_id: object) -> str:
    """Check that ``step_id`` is a non-empty string of letters, digits, ``_ . -``."""
    if not isinstance(step_id, str) or not _STEP_ID.match(step_id):
        raise GraphValidationError(
            f"invalid step id {step_id!r}: use letters, digits, '_', '.' and '-', "
            "starting with a letter, digit or '_' (e.g. 'parse-bids')",
            step_id=step_id if isinstance(step_id, str) else None,
        )
    return step_id


@dataclass(frozen=True, slots=True)
class StreamEdge:
    """A data flow from ``source_id`` to ``target_id``.

    ``partitioning`` None means automatic: HASH after a ``key_by``, FORWARD
    between equal parallelism, REBALANCE otherwise.
    """

    source_id: str
    target_id: str
    partitioning: Partitioning | None = None
    key_selector: Callable[[Any], Any] | None = None
    overflow: Overflow = Overflow.BUFFER
    capacity: int | None = None
    """Channel capacity in batches; None takes the executor's default."""
    side_output: str | None = None
    """The side output of the source node this edge carries (e.g. "late"), not its main output."""
    exchange: str | None = None
    """The ``key_by`` step this keyed edge was declared as, if any."""


@dataclass(frozen=True, slots=True)
class StreamNode:
    """A source, operator or sink of the logical graph (seed §3.2.3)."""

    node_id: int
    step_id: str
    kind: NodeKind
    operator_type: str
    payload: Any = field(repr=False)
    parallelism: int | None = None
    in_edges: tuple[StreamEdge, ...] = ()
    out_edges: tuple[StreamEdge, ...] = ()
    config: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    traits: NodeTraits = field(default=NodeTraits("operator"), repr=False)
    """What the payload declares, read once when the graph was built."""

    @property
    def operator_name(self) -> str:
        """The step id, which is the operator's name in the graph."""
        return self.step_id


@dataclass(frozen=True, slots=True)
class StreamGraph:
    """A validated DAG of StreamNodes, in insertion order."""

    nodes: tuple[StreamNode, ...]
    edges: tuple[StreamEdge, ...]
    name: str = "job"
    default_parallelism: int | None = None

    @staticmethod
    def builder(name: str = "job") -> StreamGraphBuilder:
        """Start a graph with named nodes and explicit ``connect()`` calls (seed §3.2.4)."""
        return StreamGraphBuilder(name)

    def node(self, step_id: str) -> StreamNode:
        """The node with ``step_id``; raises GraphValidationError if absent."""
        for node in self.nodes:
            if node.step_id == step_id:
                return node
        raise GraphValidationError(f"no step {step_id!r} in graph {self.name!r}", step_id=step_id)

    def timestamps_of(self, step_id: str) -> Callable[[Any], int] | None:
        """How records reaching ``step_id`` carry their event time: the timestamp
        extractor of the nearest timestamp assigner upstream, if any."""
        seen: set[str] = set()
        frontier = [edge.source_id for edge in self.node(step_id).in_edges]
        while frontier:
            step = frontier.pop(0)
            if step in seen:
                continue
            seen.add(step)
            node = self.node(step)
            if node.traits.timestamp_extractor is not None:
                return node.traits.timestamp_extractor
            frontier.extend(edge.source_id for edge in node.in_edges)
        return None

    def uses_event_time_from(self, step_id: str) -> bool:
        """Whether ``step_id`` or a step after it acts on watermarks (so watermarks
        are worth sending to it)."""
        seen: set[str] = set()
        frontier = [step_id]
        while frontier:
            step = frontier.pop()
            if step in seen:
                continue
            seen.add(step)
            node = self.node(step)
            if node.traits.uses_event_time:
                return True
            frontier.extend(edge.target_id for edge in node.out_edges)
        return False

    @property
    def sources(self) -> tuple[StreamNode, ...]:
        return tuple(n for n in self.nodes if n.kind is NodeKind.SOURCE)

    @property
    def sinks(self) -> tuple[StreamNode, ...]:
        return tuple(n for n in self.nodes if n.kind is NodeKind.SINK)

    def topological_order(self) -> list[StreamNode]:
        """Nodes so that every edge points forward; ties keep insertion order."""
        return [self.node(step) for step in _topological(self.nodes, self.edges)]

    def to_job_graph(
        self, *, chaining: bool = True, default_parallelism: int | None = None
    ) -> JobGraph:
        """Compile into the physical JobGraph (chains, partitioning); seed §3.3."""
        from reflow.graph.job_graph import compile_job_graph

        return compile_job_graph(self, chaining=chaining, default_parallelism=default_parallelism)

    toJobGraph = to_job_graph  # the seed's spelling (§9.3)


def _topological(nodes: Iterable[StreamNode], edges: Iterable[StreamEdge]) -> list[str]:
    order = [n.step_id for n in nodes]
    indegree = dict.fromkeys(order, 0)
    targets: dict[str, list[str]] = {step: [] for step in order}
    for edge in edges:
        indegree[edge.target_id] += 1
        targets[edge.source_id].append(edge.target_id)
    ready = [step for step in order if indegree[step] == 0]
    result: list[str] = []
    while ready:
        step = ready.pop(0)
        result.append(step)
        for target in targets[step]:
            indegree[target] -= 1
            if indegree[target] == 0:
                ready.append(target)
    if len(result) != len(order):
        remaining = [s for s in order if s not in set(result)]
        cycle = _find_cycle(remaining, targets)
        raise GraphValidationError(
            "the graph has a cycle: "
            + " -> ".join(cycle)
            + ". A StreamGraph must be acyclic: remove one of these connect() calls.",
            step_id=cycle[0],
        )
    return result


def _find_cycle(candidates: list[str], targets: Mapping[str, list[str]]) -> list[str]:
    allowed = set(candidates)
    for start in candidates:
        path = [start]
        seen = {start}
        step = start
        while True:
            nexts = [t for t in targets[step] if t in allowed]
            if not nexts:
                break
            step = nexts[0]
            if step in seen:
                return [*path[path.index(step) :], step]
            path.append(step)
            seen.add(step)
    return candidates  # pragma: no cover - a remaining node always lies on or behind a cycle


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
        _topological(nodes, edges)  # raises on a cycle
        graph = StreamGraph(nodes, tuple(edges), self._name, self._parallelism)
        _check_timestamps(graph)
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


def _check_timestamps(graph: StreamGraph) -> None:
    """A step that insists on event time (``needs_timestamps``) has a timestamp
    assigner upstream; otherwise it could never fire."""
    for node in graph.nodes:
        message = node.traits.needs_timestamps
        if message is None:
            continue
        if graph.timestamps_of(node.step_id) is None:
            raise GraphValidationError(f"step {node.step_id!r}: {message}", step_id=node.step_id)


def _check_parallelism(parallelism: object, where: str) -> int:
    if not isinstance(parallelism, int) or isinstance(parallelism, bool) or parallelism < 1:
        raise GraphValidationError(
            f"{where}: parallelism must be a whole number >= 1, got {parallelism!r}",
            step_id=where,
        )
    return parallelism
