"""StreamGraph validation: each error names the node and the fix."""

from __future__ import annotations

import pytest

from reflow import GraphValidationError, Job, Operators, StreamGraph
from reflow.testing import TestingSink, TestingSource


def _base() -> object:
    return (
        StreamGraph.builder("g")
        .add_source("src", TestingSource([1]))
        .add_operator("map", Operators.map(str))
        .add_sink("out", TestingSink())
    )


def test_valid_graph_builds_in_insertion_order() -> None:
    graph = _base().connect("src", "map").connect("map", "out").build()  # type: ignore[attr-defined]
    assert [n.step_id for n in graph.nodes] == ["src", "map", "out"]
    assert [n.node_id for n in graph.nodes] == [1, 2, 3]
    assert graph.node("map").in_edges[0].source_id == "src"
    assert graph.node("map").out_edges[0].target_id == "out"


def test_duplicate_id_is_rejected_with_a_suggestion() -> None:
    builder = StreamGraph.builder().add_source("src", TestingSource([1]))
    with pytest.raises(GraphValidationError, match=r"'src' is used twice.*'src-2'") as err:
        builder.add_operator("src", Operators.map(str))
    assert err.value.step_id == "src"


def test_unknown_id_in_connect_lists_known_ids() -> None:
    builder = _base()
    with pytest.raises(
        GraphValidationError, match=r"unknown step 'mapp'.*known: 'src', 'map', 'out'"
    ):
        builder.connect("src", "mapp")  # type: ignore[attr-defined]


def test_cycle_is_reported_with_its_path() -> None:
    builder = (
        StreamGraph.builder()
        .add_source("src", TestingSource([1]))
        .add_operator("a", Operators.map(str))
        .add_operator("b", Operators.map(str))
        .add_sink("out", TestingSink())
        .connect("src", "a")
        .connect("a", "b")
        .connect("b", "a")
        .connect("b", "out")
    )
    with pytest.raises(GraphValidationError, match=r"cycle: a -> b -> a"):
        builder.build()


def test_unconnected_operator_is_rejected() -> None:
    builder = _base().connect("src", "out")  # type: ignore[attr-defined]
    with pytest.raises(GraphValidationError, match=r"operator 'map' has no input"):
        builder.build()


def test_operator_without_output_is_rejected() -> None:
    builder = _base().connect("src", "map").connect("src", "out")  # type: ignore[attr-defined]
    with pytest.raises(GraphValidationError, match=r"operator 'map' has no output"):
        builder.build()


def test_no_source() -> None:
    builder = StreamGraph.builder("g").add_sink("out", TestingSink())
    with pytest.raises(GraphValidationError, match=r"has no source"):
        builder.build()


def test_no_sink() -> None:
    builder = (
        StreamGraph.builder("g")
        .add_source("src", TestingSource([1]))
        .add_operator("m", Operators.map(str))
        .connect("src", "m")
    )
    with pytest.raises(GraphValidationError, match=r"has no sink"):
        builder.build()


def test_connect_into_a_source_or_out_of_a_sink() -> None:
    builder = _base()
    with pytest.raises(GraphValidationError, match=r"'src' is a source and takes no input"):
        builder.connect("map", "src")  # type: ignore[attr-defined]
    with pytest.raises(GraphValidationError, match=r"'out' is a sink and has no output"):
        builder.connect("out", "map")  # type: ignore[attr-defined]


def test_self_loop_and_duplicate_edge() -> None:
    builder = _base()
    with pytest.raises(GraphValidationError, match=r"cannot feed itself"):
        builder.connect("map", "map")  # type: ignore[attr-defined]
    builder.connect("src", "map")  # type: ignore[attr-defined]
    with pytest.raises(GraphValidationError, match=r"given twice"):
        builder.connect("src", "map")  # type: ignore[attr-defined]


@pytest.mark.parametrize("bad", ["", "has space", "-lead", "a/b", 7])
def test_invalid_step_ids(bad: object) -> None:
    with pytest.raises(GraphValidationError, match=r"invalid step id"):
        StreamGraph.builder().add_source(bad, TestingSource([1]))  # type: ignore[arg-type]


def test_bad_parallelism() -> None:
    with pytest.raises(GraphValidationError, match=r"parallelism must be a whole number >= 1"):
        StreamGraph.builder().add_source("s", TestingSource([1]), parallelism=0)


def test_forward_edge_with_different_parallelism_is_rejected() -> None:
    graph = (
        StreamGraph.builder()
        .add_source("src", TestingSource([1]), parallelism=2)
        .add_sink("out", TestingSink(), parallelism=1)
        .connect("src", "out", partitioning="forward")
        .build()
    )
    with pytest.raises(GraphValidationError, match=r"FORWARD but the parallelism differs"):
        graph.to_job_graph()


def test_job_builder_rules() -> None:
    with pytest.raises(GraphValidationError, match=r"exactly one \.source"):
        Job.builder().transform(Operators.map(str)).sink(TestingSink()).build()
    with pytest.raises(GraphValidationError, match=r"at least one \.sink"):
        Job.builder().source(TestingSource([1])).build()
    with pytest.raises(GraphValidationError, match=r"after \.sink"):
        (
            Job.builder()
            .source(TestingSource([1]))
            .sink(TestingSink())
            .transform(Operators.map(str))
            .build()
        )


def test_job_builder_gives_readable_unique_ids() -> None:
    job = (
        Job.builder()
        .source(TestingSource([1]))
        .transform(Operators.map(str))
        .transform(Operators.map(str))
        .transform(Operators.filter(bool, name="keep"))
        .sink(TestingSink())
        .build()
    )
    assert [n.step_id for n in job.stream_graph.nodes] == ["source", "map", "map-2", "keep", "sink"]
