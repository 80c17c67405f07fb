"""Chaining by exactly the four rules of seed §3.3.3, on the seed's own examples."""

from __future__ import annotations

from reflow import Flow, Operators, Partitioning, StreamGraph
from reflow.cli import main
from reflow.graph import explain_mermaid, explain_text
from reflow.testing import TestingSink, TestingSource


def test_seed_332_source_map_filter_chain_and_the_sink_apart() -> None:
    """§3.3.2: Source -> Map -> Filter in one vertex; the Sink separate (other parallelism)."""
    graph = (
        StreamGraph.builder("seed-3.3.2")
        .add_source("source", TestingSource([1, 2, 3]), parallelism=4)
        .add_operator("map", Operators.map(lambda x: x + 1), parallelism=4)
        .add_operator("filter", Operators.filter(lambda x: x > 1), parallelism=4)
        .add_sink("sink", TestingSink(), parallelism=1)
        .connect("source", "map")
        .connect("map", "filter")
        .connect("filter", "sink")
        .build()
    )
    job = graph.to_job_graph()
    assert [v.vertex_name for v in job.vertices] == ["source -> map -> filter", "sink"]
    assert [v.parallelism for v in job.vertices] == [4, 1]
    (edge,) = job.edges
    assert edge.partitioning is Partitioning.REBALANCE
    decision = next(d for d in job.decisions if d.target_step == "sink")
    assert decision.broken_rules == ("same-parallelism", "forward-partitioning")
    text = explain_text(job)
    assert (
        "not chained: parallelism 4 vs 1 (rule same-parallelism); the edge is REBALANCE, not FORWARD (rule forward-partitioning)"
        in text
    )


def test_same_parallelism_chains_the_sink_too() -> None:
    graph = (
        StreamGraph.builder()
        .add_source("source", TestingSource([1]))
        .add_operator("map", Operators.map(str))
        .add_sink("sink", TestingSink())
        .connect("source", "map")
        .connect("map", "sink")
        .build()
    )
    assert [v.vertex_name for v in graph.to_job_graph().vertices] == ["source -> map -> sink"]


def _seed_93_graph(parallelism: int = 2) -> StreamGraph:
    """§9.3: parse fans out to two branches, each filter -> aggregate -> sink."""
    return (
        StreamGraph.builder("seed-9.3")
        .parallelism(parallelism)
        .add_source("kafka-source", TestingSource([]))
        .add_operator("parse", Operators.map(lambda m: m))
        .add_operator("filter-user", Operators.filter(lambda e: True))
        .add_operator("user-key", Operators.key_by(lambda e: e))
        .add_operator("user-aggregate", Operators.map(lambda e: e))
        .add_sink("user-sink", TestingSink())
        .add_operator("filter-order", Operators.filter(lambda e: True))
        .add_operator("order-aggregate", Operators.map(lambda e: e))
        .add_sink("order-sink", TestingSink())
        .connect("kafka-source", "parse")
        .connect("parse", "filter-user")
        .connect("parse", "filter-order")
        .connect("filter-user", "user-key")
        .connect("user-key", "user-aggregate")
        .connect("user-aggregate", "user-sink")
        .connect("filter-order", "order-aggregate")
        .connect("order-aggregate", "order-sink")
        .build()
    )


def test_seed_93_branches_break_the_chain_at_the_fan_out_and_the_key_by() -> None:
    job = _seed_93_graph().to_job_graph()
    names = {v.vertex_name for v in job.vertices}
    assert names == {
        "kafka-source -> parse",
        "filter-user",
        "user-aggregate -> user-sink",
        "filter-order -> order-aggregate -> order-sink",
    }
    reasons = {(d.source_step, d.target_step): d.broken_rules for d in job.decisions}
    assert reasons[("parse", "filter-user")] == ("single-output",)
    assert reasons[("parse", "filter-order")] == ("single-output",)
    # The key_by is the keyed edge itself, not a step of its own.
    assert reasons[("filter-user", "user-aggregate")] == ("forward-partitioning",)
    assert "user-key" not in {n.step_id for n in job.stream_graph.nodes}
    hash_edge = next(e for e in job.edges if e.target_step == "user-aggregate")
    assert hash_edge.partitioning is Partitioning.HASH
    assert hash_edge.key_selector is not None
    assert hash_edge.exchange == "user-key"
    assert "filter-user -> user-aggregate: HASH by the key of 'user-key'" in explain_text(job)


def test_a_keyed_edge_between_single_subtasks_is_chained() -> None:
    """At parallelism 1 every record of the one sender goes to the one receiver: the
    keyed edge chains as a forward one would (no channel, no second subtask, no
    exchange). An explicit rebalance keeps its channel."""
    job = _seed_93_graph(parallelism=1).to_job_graph()
    names = {v.vertex_name for v in job.vertices}
    assert "filter-user -> user-aggregate -> user-sink" in names
    decision = next(d for d in job.decisions if d.target_step == "user-aggregate")
    assert decision.broken_rules == ()
    assert not any(e.target_step == "user-aggregate" for e in job.edges)
    flow = Flow("rebalanced", parallelism=1)
    flow.source(TestingSource([1]), id="s").rebalance().map(str, id="m").sink(TestingSink())
    decision = next(d for d in flow.to_job().job_graph.decisions if d.target_step == "m")
    assert decision.broken_rules == ("forward-partitioning",)


def test_fan_in_breaks_the_chain_by_single_input() -> None:
    graph = (
        StreamGraph.builder()
        .add_source("a", TestingSource([1]))
        .add_source("b", TestingSource([2]))
        .add_operator("merge", Operators.union())
        .add_sink("out", TestingSink())
        .connect("a", "merge")
        .connect("b", "merge")
        .connect("merge", "out")
        .build()
    )
    job = graph.to_job_graph()
    assert [v.vertex_name for v in job.vertices] == ["a", "b", "merge -> out"]
    assert all(
        d.broken_rules == ("single-input",) for d in job.decisions if d.target_step == "merge"
    )


def test_chaining_off_gives_one_vertex_per_node() -> None:
    job = _seed_93_graph().to_job_graph(chaining=False)
    assert len(job.vertices) == len(job.stream_graph.nodes)
    assert all(d.broken_rules == ("chaining-disabled",) for d in job.decisions)


def test_explain_mermaid_draws_both_graphs() -> None:
    text = explain_mermaid(_seed_93_graph().to_job_graph())
    assert text.startswith("flowchart LR")
    assert 'subgraph streamgraph["StreamGraph"]' in text
    assert text.count("subgraph v") == 4
    assert "-- HASH -->" in text


def test_explain_lists_every_unchained_edge_with_its_rule() -> None:
    text = explain_text(_seed_93_graph().to_job_graph())
    assert text.count("not chained: ") == 3
    assert "has 2 outputs (rule single-output)" in text
    assert "the edge is HASH, not FORWARD (rule forward-partitioning)" in text


def test_explain_cli_prints_text_and_mermaid(tmp_path: object, capsys: object) -> None:
    import io
    from pathlib import Path

    path = Path(str(tmp_path)) / "job.yaml"
    path.write_text(
        "job:\n  name: fan\n  parallelism: 2\n"
        "  source: {connector: datagen, config: {number_of_rows: 10}}\n"
        "  operators:\n    - {name: k, type: key_by, key: id}\n"
        "    - {name: m, type: map, expression: r}\n"
        "  sink: {connector: stdout, parallelism: 1}\n"
    )
    out = io.StringIO()
    assert main(["explain", str(path)], out=out) == 0
    text = out.getvalue()
    assert "vertex 1: source (parallelism 2)" in text
    assert "source -> m: HASH by the key of 'k'" in text
    assert "m -> sink: REBALANCE" in text
    assert "```mermaid" in text
