"""Node traits are read from a payload once, when the graph is built; the graph
compiler and the runtime read the node's traits, never the payload again."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from reflow import JobStatus
from reflow.api import Flow
from reflow.graph.traits import NodeTraits
from reflow.testing import TestingSink, TestingSource, run_job


class CountingSource(TestingSource):
    """A TestingSource that counts how often each trait is asked for."""

    asked: Counter[str] = Counter()

    def __getattribute__(self, name: str) -> Any:
        if name in {"bounded", "stateful", "timestamp_extractor", "uses_event_time", "chainable"}:
            CountingSource.asked[name] += 1
        return super().__getattribute__(name)


def test_each_trait_of_a_payload_is_read_once_for_build_compile_and_run() -> None:
    CountingSource.asked.clear()
    flow = Flow("traits", parallelism=2)
    out = TestingSink()
    flow.source(CountingSource(range(1_000)), id="numbers").map(lambda x: x * 2).sink(out)
    job = flow.to_job()
    assert job.job_graph.vertices  # compiled
    result = run_job(job)
    assert result.status is JobStatus.COMPLETED, result.error
    assert sorted(out.records) == [x * 2 for x in range(1_000)]
    assert dict(CountingSource.asked) == {
        "bounded": 1,
        "stateful": 1,
        "timestamp_extractor": 1,
        "uses_event_time": 1,
        "chainable": 1,
    }


def test_traits_take_defaults_for_what_a_payload_does_not_declare() -> None:
    class Plain:
        operator_type = "custom"
        needs_timestamps = ""  # empty: no requirement
        config = {"a": 1}

    traits = NodeTraits.of(Plain(), "operator", source=True)
    assert traits.operator_type == "custom" and dict(traits.config) == {"a": 1}
    assert (traits.stateful, traits.chainable, traits.bounded) == (False, True, None)
    assert traits.needs_timestamps is None and traits.side_outputs == ()


def test_a_wrong_connector_option_fails_where_the_job_is_built() -> None:
    """Options are checked for the role the connector has in the job once, when the
    graph is built; a source whose boundedness can only be known when it runs (a
    memory collection filled later) is no error then."""
    from reflow import Connectors, Job
    from reflow.errors import ConnectorConfigError

    builder = Job.builder().source(TestingSource([1])).sink(Connectors.sql(table="t"))
    with pytest.raises(ConnectorConfigError, match="url"):
        builder.build()
    later = Job.builder().source(Connectors.memory(collection="filled-later"))
    job = later.sink(TestingSink()).build()
    assert job.stream_graph.sources[0].traits.bounded is None
