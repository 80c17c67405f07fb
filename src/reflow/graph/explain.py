"""Human-readable views of a StreamGraph and its JobGraph: text and Mermaid.

For every edge that was not chained, the text view names the chaining rule
(seed §3.3.3) that broke the chain, with the values that broke it.
"""

from __future__ import annotations

from reflow.graph.job_graph import CHAIN_RULES, EXTRA_RULES, ChainDecision, JobGraph
from reflow.graph.stream_graph import NodeKind, StreamGraph

__all__ = ["explain_mermaid", "explain_text"]

_RULE_TEXT = dict(CHAIN_RULES) | dict(EXTRA_RULES)


def _why(decision: ChainDecision, job: JobGraph) -> str:
    """What broke each chaining rule, then the rule's name: "parallelism 4 vs 1
    (rule same-parallelism)"."""
    graph = job.stream_graph
    up = job.vertex_of(decision.source_step)
    down = job.vertex_of(decision.target_step)
    details = []
    for rule in decision.broken_rules:
        if rule == "same-parallelism":
            text = f"parallelism {up.parallelism} vs {down.parallelism}"
        elif rule == "single-input":
            n = len(graph.node(decision.target_step).in_edges)
            text = f"{decision.target_step!r} has {n} inputs"
        elif rule == "single-output":
            n = len(graph.node(decision.source_step).out_edges)
            text = f"{decision.source_step!r} has {n} outputs"
        elif rule == "forward-partitioning":
            text = f"the edge is {decision.partitioning.name}, not FORWARD"
        else:
            text = _RULE_TEXT.get(rule, rule)
        details.append(f"{text} (rule {rule})")
    return "; ".join(details)


def explain_text(job: JobGraph) -> str:
    """Both graphs as indented text, with the reason behind every unchained edge."""
    graph = job.stream_graph
    lines = [f"StreamGraph {graph.name!r}: {len(graph.nodes)} nodes, {len(graph.edges)} edges"]
    for node in graph.topological_order():
        vertex = job.vertex_of(node.step_id)
        targets = (
            ", ".join(
                e.target_id + (f" (keyed by {e.exchange!r})" if e.exchange else "")
                for e in node.out_edges
            )
            or "-"
        )
        lines.append(
            f"  [{node.node_id}] {node.kind.value:<8} {node.step_id} "
            f"({node.operator_type}, parallelism {vertex.parallelism}) -> {targets}"
        )
    lines.append("")
    chained = sum(1 for d in job.decisions if d.chained)
    lines.append(
        f"JobGraph: {len(job.vertices)} vertices, {len(job.edges)} edges "
        f"({chained} of {len(job.decisions)} stream edges chained)"
    )
    for vertex in job.vertices:
        lines.append(
            f"  vertex {vertex.vertex_id}: {vertex.vertex_name} (parallelism {vertex.parallelism})"
        )
    if job.edges:
        lines.append("")
        lines.append("Exchanges between vertices:")
    decisions = {(d.source_step, d.target_step): d for d in job.decisions}
    for edge in job.edges:
        decision = decisions[(edge.source_step, edge.target_step)]
        side = f" (side output {edge.side_output!r})" if edge.side_output else ""
        keyed = f" by the key of {edge.exchange!r}" if edge.exchange else ""
        lines.append(
            f"  {edge.source_step} -> {edge.target_step}{side}: {edge.partitioning.name}"
            f"{keyed}, overflow {edge.overflow.name}"
        )
        lines.append(f"    not chained: {_why(decision, job)}")
    return "\n".join(lines)


def _mermaid_id(step_id: str) -> str:
    return "n_" + "".join(c if c.isalnum() else "_" for c in step_id)


def _shape(kind: NodeKind, label: str) -> str:
    if kind is NodeKind.SOURCE:
        return f'[/"{label}"/]'
    if kind is NodeKind.SINK:
        return f'[\\"{label}"\\]'
    return f'["{label}"]'


def explain_mermaid(job: JobGraph) -> str:
    """Both graphs as one Mermaid flowchart: StreamGraph, then JobGraph with chains boxed."""
    graph: StreamGraph = job.stream_graph
    out = ["flowchart LR", '  subgraph streamgraph["StreamGraph"]']
    for node in graph.nodes:
        label = f"{node.step_id}<br/>{node.operator_type}"
        out.append(f"    s_{_mermaid_id(node.step_id)}{_shape(node.kind, label)}")
    for edge in graph.edges:
        arrow = f"-- {edge.exchange} -->" if edge.exchange else "-->"
        out.append(f"    s_{_mermaid_id(edge.source_id)} {arrow} s_{_mermaid_id(edge.target_id)}")
    out.append("  end")
    out.append('  subgraph jobgraph["JobGraph"]')
    for vertex in job.vertices:
        out.append(
            f'    subgraph v{vertex.vertex_id}["vertex {vertex.vertex_id} '
            f'(parallelism {vertex.parallelism})"]'
        )
        for node in vertex.chained_nodes:
            out.append(f"      j_{_mermaid_id(node.step_id)}{_shape(node.kind, node.step_id)}")
        for a, b in zip(vertex.chained_nodes, vertex.chained_nodes[1:], strict=False):
            out.append(f"      j_{_mermaid_id(a.step_id)} --> j_{_mermaid_id(b.step_id)}")
        out.append("    end")
    for exchange in job.edges:
        out.append(
            f"    j_{_mermaid_id(exchange.source_step)} -- {exchange.partitioning.name} --> "
            f"j_{_mermaid_id(exchange.target_step)}"
        )
    out.append("  end")
    return "\n".join(out)
