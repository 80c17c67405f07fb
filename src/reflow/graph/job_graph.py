"""The JobGraph: the physical plan compiled from a StreamGraph (seed §3.3).

Chaining is a pure decision made of named predicates (seed §3.3.3): two nodes
chain when they have the same parallelism, the downstream one has a single
input, the upstream one a single output, and the edge between them is
FORWARD. ``ChainDecision`` records which predicate broke each chain so that
``reflow explain`` can say why.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reflow.errors import GraphValidationError
from reflow.graph.partitioning import Partitioning
from reflow.graph.stream_graph import NodeKind, Overflow, StreamEdge, StreamGraph, StreamNode

__all__ = [
    "CHAIN_RULES",
    "ChainDecision",
    "JobEdge",
    "JobGraph",
    "JobVertex",
    "ResourceProfile",
    "compile_job_graph",
]

DEFAULT_PARALLELISM = 1


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)b?\s*$", re.IGNORECASE)


def parse_memory_mb(text: str | None) -> int:
    """``4g`` / ``512m`` -> megabytes (0 when not given); ValueError if not a size."""
    if not text:
        return 0
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"memory {text!r} is not a size; write e.g. 512m or 4g")
    factor = {"": 1 / 1024 / 1024, "k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024}
    return int(float(match.group(1)) * factor[match.group(2).lower()])


@dataclass(frozen=True, slots=True)
class ResourceProfile:
    """What one subtask of a vertex asks for (seed §3.3.4)."""

    cpu_cores: float = 1.0
    memory_mb: int | None = None


@dataclass(frozen=True, slots=True)
class JobEdge:
    """A data exchange between two JobVertices."""

    edge_id: int
    source_vertex: int
    target_vertex: int
    source_step: str
    target_step: str
    partitioning: Partitioning
    key_selector: Callable[[Any], Any] | None = None
    overflow: Overflow = Overflow.BUFFER
    capacity: int | None = None
    side_output: str | None = None
    exchange: str | None = None
    """The ``key_by`` step this keyed exchange was declared as, if any."""
    carries_watermarks: bool = True
    """False when no step downstream acts on watermarks: senders need not send them."""


@dataclass(frozen=True, slots=True)
class JobVertex:
    """One or more chained StreamNodes run as ``parallelism`` subtasks (seed §3.3.4)."""

    vertex_id: int
    vertex_name: str
    chained_nodes: tuple[StreamNode, ...]
    inputs: tuple[JobEdge, ...]
    outputs: tuple[JobEdge, ...]
    parallelism: int
    resource_profile: ResourceProfile = field(default_factory=ResourceProfile)
    timestamps: tuple[Callable[[Any], int] | None, ...] = ()
    """For each chained node, how its input records carry event time (the extractor
    of the nearest timestamp assigner upstream), or None."""

    def timestamps_of(self, step_id: str) -> Callable[[Any], int] | None:
        """How records reaching chained step ``step_id`` carry their event time."""
        for node, extractor in zip(self.chained_nodes, self.timestamps, strict=False):
            if node.step_id == step_id:
                return extractor
        return None

    @property
    def head(self) -> StreamNode:
        return self.chained_nodes[0]

    @property
    def tail(self) -> StreamNode:
        return self.chained_nodes[-1]

    @property
    def is_source(self) -> bool:
        return self.head.kind is NodeKind.SOURCE


@dataclass(frozen=True, slots=True)
class ChainDecision:
    """Whether the edge ``source_step -> target_step`` was chained, and why not."""

    source_step: str
    target_step: str
    partitioning: Partitioning
    broken_rules: tuple[str, ...]

    @property
    def chained(self) -> bool:
        return not self.broken_rules


@dataclass(frozen=True, slots=True)
class JobGraph:
    """The compiled physical graph, with the StreamGraph it came from."""

    name: str
    vertices: tuple[JobVertex, ...]
    edges: tuple[JobEdge, ...]
    stream_graph: StreamGraph
    decisions: tuple[ChainDecision, ...]
    chaining: bool = True

    def vertex(self, vertex_id: int) -> JobVertex:
        return self.vertices[vertex_id - 1]

    def vertex_of(self, step_id: str) -> JobVertex:
        """The vertex whose chain holds ``step_id``."""
        for vertex in self.vertices:
            if any(node.step_id == step_id for node in vertex.chained_nodes):
                return vertex
        raise GraphValidationError(f"no step {step_id!r} in job {self.name!r}", step_id=step_id)

    @property
    def max_parallelism(self) -> int:
        return max(v.parallelism for v in self.vertices)


# The chaining rules of seed §3.3.3, by the names ``explain`` prints.
CHAIN_RULES: tuple[tuple[str, str], ...] = (
    ("same-parallelism", "upstream and downstream have the same parallelism"),
    ("single-input", "the downstream node has exactly one input"),
    ("single-output", "the upstream node has exactly one output"),
    (
        "forward-partitioning",
        "the edge's partitioning is FORWARD (or HASH from one subtask to one)",
    ),
)
# Reasons beyond the seed's four rules.
EXTRA_RULES: tuple[tuple[str, str], ...] = (
    ("chaining-disabled", "chaining is switched off for this job"),
    ("operator-not-chainable", "the downstream operator asks not to be chained"),
    ("side-output", "the edge carries a side output (e.g. late records), never chained"),
)


def _resolve_partitioning(
    edge: StreamEdge, upstream: StreamNode, downstream: StreamNode, up_par: int, down_par: int
) -> tuple[Partitioning, Callable[[Any], Any] | None]:
    key_selector = edge.key_selector
    hint = upstream.traits.output_partitioning
    keyed_input = downstream.traits.input_key_selector
    if key_selector is None:
        key_selector = keyed_input or upstream.traits.key_selector
    if edge.partitioning is not None:
        partitioning = edge.partitioning
    elif keyed_input is not None:
        partitioning = Partitioning.HASH
    elif hint is not None and edge.side_output is None:
        partitioning = Partitioning(hint)
    elif up_par == down_par:
        partitioning = Partitioning.FORWARD
    else:
        partitioning = Partitioning.REBALANCE
    if partitioning is Partitioning.FORWARD and up_par != down_par:
        raise GraphValidationError(
            f"edge {edge.source_id!r} -> {edge.target_id!r} is FORWARD but the parallelism "
            f"differs ({up_par} vs {down_par}); make them equal or use REBALANCE",
            step_id=edge.target_id,
        )
    if partitioning is Partitioning.HASH and key_selector is None:
        raise GraphValidationError(
            f"edge {edge.source_id!r} -> {edge.target_id!r} is HASH but has no key selector",
            step_id=edge.target_id,
        )
    return partitioning, key_selector


def _broken_rules(
    graph: StreamGraph,
    edge: StreamEdge,
    partitioning: Partitioning,
    parallelism: dict[str, int],
    chaining: bool,
) -> tuple[str, ...]:
    if not chaining:
        return ("chaining-disabled",)
    upstream = graph.node(edge.source_id)
    downstream = graph.node(edge.target_id)
    broken = []
    if parallelism[upstream.step_id] != parallelism[downstream.step_id]:
        broken.append("same-parallelism")
    if len(downstream.in_edges) != 1:
        broken.append("single-input")
    if len(upstream.out_edges) != 1:
        broken.append("single-output")
    # A keyed exchange from one subtask to one sends everything there, as FORWARD
    # would; other partitionings (rebalance, ...) ask for a channel on purpose.
    single = parallelism[upstream.step_id] == parallelism[downstream.step_id] == 1
    if partitioning is not Partitioning.FORWARD and not (
        single and partitioning is Partitioning.HASH
    ):
        broken.append("forward-partitioning")
    if not downstream.traits.chainable:
        broken.append("operator-not-chainable")
    if edge.side_output is not None:
        broken.append("side-output")
    return tuple(broken)


def compile_job_graph(
    graph: StreamGraph, *, chaining: bool = True, default_parallelism: int | None = None
) -> JobGraph:
    """Chain operators and resolve partitioning: StreamGraph -> JobGraph.

    Args:
        graph: a validated StreamGraph.
        chaining: False puts every node in its own vertex (for debugging and tests).
        default_parallelism: parallelism of nodes and graphs that set none
            (the system config's ``executor.parallelism``).
    """
    if default_parallelism is not None and (
        isinstance(default_parallelism, bool)
        or not isinstance(default_parallelism, int)
        or default_parallelism < 1
    ):
        raise GraphValidationError(
            f"parallelism must be a whole number >= 1, got {default_parallelism!r}"
        )
    fallback = graph.default_parallelism or default_parallelism or DEFAULT_PARALLELISM
    order = graph.topological_order()
    parallelism = {n.step_id: n.parallelism or fallback for n in order}

    resolved: dict[tuple[str, str], tuple[Partitioning, Callable[[Any], Any] | None]] = {}
    decisions: list[ChainDecision] = []
    for edge in graph.edges:
        upstream = graph.node(edge.source_id)
        part, key = _resolve_partitioning(
            edge,
            upstream,
            graph.node(edge.target_id),
            parallelism[edge.source_id],
            parallelism[edge.target_id],
        )
        resolved[(edge.source_id, edge.target_id)] = (part, key)
        decisions.append(
            ChainDecision(
                edge.source_id,
                edge.target_id,
                part,
                _broken_rules(graph, edge, part, parallelism, chaining),
            )
        )
    chained = {(d.source_step, d.target_step) for d in decisions if d.chained}

    chains: list[list[StreamNode]] = []
    chain_of: dict[str, int] = {}
    for node in order:
        if len(node.in_edges) == 1:
            edge = node.in_edges[0]
            if (edge.source_id, edge.target_id) in chained:
                index = chain_of[edge.source_id]
                chains[index].append(node)
                chain_of[node.step_id] = index
                continue
        chain_of[node.step_id] = len(chains)
        chains.append([node])

    job_edges: list[JobEdge] = []
    for edge in graph.edges:
        if (edge.source_id, edge.target_id) in chained:
            continue
        part, key = resolved[(edge.source_id, edge.target_id)]
        job_edges.append(
            JobEdge(
                edge_id=len(job_edges) + 1,
                source_vertex=chain_of[edge.source_id] + 1,
                target_vertex=chain_of[edge.target_id] + 1,
                source_step=edge.source_id,
                target_step=edge.target_id,
                partitioning=part,
                key_selector=key,
                overflow=edge.overflow,
                capacity=edge.capacity,
                side_output=edge.side_output,
                exchange=edge.exchange,
                carries_watermarks=graph.uses_event_time_from(edge.target_id),
            )
        )
    vertices = tuple(
        JobVertex(
            vertex_id=index + 1,
            vertex_name=" -> ".join(n.step_id for n in nodes),
            chained_nodes=tuple(nodes),
            inputs=tuple(e for e in job_edges if e.target_vertex == index + 1),
            outputs=tuple(e for e in job_edges if e.source_vertex == index + 1),
            parallelism=parallelism[nodes[0].step_id],
            resource_profile=ResourceProfile(),
            timestamps=tuple(graph.timestamps_of(n.step_id) for n in nodes),
        )
        for index, nodes in enumerate(chains)
    )
    return JobGraph(graph.name, vertices, tuple(job_edges), graph, tuple(decisions), chaining)
