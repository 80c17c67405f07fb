"""The StreamGraph: the logical DAG the user defines (seed §3.2).

Nodes are sources, operators and sinks, each with a stable ``step_id`` that
keys state, checkpoints and metrics. The graph is pure data: it neither runs
nor imports the runtime. ``StreamGraph.builder()`` returns the builder of the
user API (``reflow.api.builders``), which validates as it goes and once more on
``build()``; every error names the node and the fix.
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
    from reflow.api.builders import StreamGraphBuilder
    from reflow.graph.job_graph import JobGraph

__all__ = [
    "NodeKind",
    "Overflow",
    "StreamEdge",
    "StreamGraph",
    "StreamNode",
    "check_timestamps",
    "register_builder",
    "registered_builder",
    "validate_step_id",
]

_STEP_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


_BUILDERS: dict[str, Callable[..., Any]] = {}


def register_builder(name: str, factory: Callable[..., Any]) -> None:
    """Install the builder ``Job.builder()`` / ``StreamGraph.builder()`` return. The
    builders belong to the user API (``reflow.api``), a layer above this model, so
    the model finds them here instead of importing them."""
    _BUILDERS[name] = factory


def registered_builder(name: str) -> Callable[..., Any]:
    try:
        return _BUILDERS[name]
    except KeyError:  # pragma: no cover - reflow/__init__ imports reflow.api
        raise RuntimeError(f"{name}() needs reflow.api; import reflow first") from None


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
        """Start a graph with named nodes and explicit ``connect()`` calls (seed §3.2.4).

        The builder is part of the user API (``reflow.api.builders``), which
        registers it here when ``reflow`` is imported."""
        return registered_builder("StreamGraph.builder")(name)  # type: ignore[no-any-return]

    def node(self, step_id: str) -> StreamNode:
        """The node with ``step_id``; raises GraphValidationError if absent."""
        for node in self.nodes:
            if node.step_id == step_id:
                return node
        raise GraphValidationError(f"no step {step_id!r} in graph {self.name!r}", step_id=step_id)

    def timestamps_of(self, step_id: str) -> Callable[[Any], int] | None:
        """How records reaching ``step_id`` carry their event time: from the nearest
        step upstream that says how its output does (a timestamp assigner; a window
        on event time, whose results carry their window's), if any. A side output
        (a window's late records) carries that step's input records."""
        seen: set[tuple[str, bool]] = set()
        frontier = [
            (edge.source_id, edge.side_output is not None) for edge in self.node(step_id).in_edges
        ]
        while frontier:
            step, side = frontier.pop(0)
            if (step, side) in seen:
                continue
            seen.add((step, side))
            node = self.node(step)
            traits = node.traits
            if side:
                if traits.input_timestamps is not None:
                    return traits.input_timestamps
            elif traits.timestamp_extractor is not None:
                return traits.timestamp_extractor
            elif traits.result_timestamps is not None:
                # a window that runs on event time when its input has timestamps
                return traits.result_timestamps if self.timestamps_of(step) else None
            frontier.extend(
                (edge.source_id, edge.side_output is not None) for edge in node.in_edges
            )
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


def check_timestamps(graph: StreamGraph) -> None:
    """A step that insists on event time (``needs_timestamps``) has a timestamp
    assigner upstream; otherwise it could never fire."""
    for node in graph.nodes:
        message = node.traits.needs_timestamps
        if message is None:
            continue
        if graph.timestamps_of(node.step_id) is None:
            raise GraphValidationError(f"step {node.step_id!r}: {message}", step_id=node.step_id)
