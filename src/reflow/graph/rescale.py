"""A job at another parallelism: the graph a rescale restarts from a savepoint.

Every step that is not a source takes the new parallelism (``--parallelism``)
unless it set its own in the job, and ``steps`` sets single steps. Sources keep
theirs: their read positions belong to their subtasks (a file split, a Kafka
partition set), so a restore needs the same number of them. Keyed state moves
by key group, so no step may run more subtasks than there are key groups.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from reflow.errors import ConfigError
from reflow.graph.job import Job
from reflow.graph.partitioning import MAX_KEY_GROUPS
from reflow.graph.stream_graph import NodeKind, StreamGraph

__all__ = ["current_parallelism", "rescaled"]


def current_parallelism(job: Job) -> dict[str, int]:
    """Each step's parallelism in the job's JobGraph."""
    return {
        node.step_id: vertex.parallelism
        for vertex in job.job_graph.vertices
        for node in vertex.chained_nodes
    }


def rescaled(
    job: Job, parallelism: int | None = None, steps: Mapping[str, int] | None = None
) -> Job:
    """``job`` with ``parallelism`` for its steps (``steps``: step id -> parallelism
    for single steps); raises ConfigError naming the step and the fix."""
    steps = dict(steps or {})
    graph = job.stream_graph
    known = {node.step_id: node for node in graph.nodes}
    for value in (parallelism, *steps.values()):
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not 1 <= value <= MAX_KEY_GROUPS
        ):
            raise ConfigError(
                f"parallelism {value!r} is not allowed: use a whole number from 1 to "
                f"{MAX_KEY_GROUPS} (keyed state moves by key group; there are {MAX_KEY_GROUPS})"
            )
    for step in steps:
        if step not in known:
            raise ConfigError(
                f"no step {step!r} in job {job.job_name!r}; its steps: {', '.join(known)}"
            )
    now = current_parallelism(job)
    for step, value in steps.items():
        if known[step].kind is NodeKind.SOURCE and value != now[step]:
            raise ConfigError(
                f"step {step!r} is a source: sources keep their parallelism across a "
                f"restore (their read positions belong to their subtasks); leave it at {now[step]}"
            )
    if parallelism is None and not steps:
        raise ConfigError("give the new parallelism (--parallelism N) or steps (--step STEP=N)")
    nodes = []
    for node in graph.nodes:
        if node.kind is NodeKind.SOURCE:
            target: int | None = now[node.step_id]
        elif node.step_id in steps:
            target = steps[node.step_id]
        elif node.parallelism is None:
            # Steps without their own parallelism follow the job's (the new one).
            target = None if parallelism is not None else now[node.step_id]
        else:
            target = node.parallelism
        nodes.append(dataclasses.replace(node, parallelism=target))
    default = parallelism if parallelism is not None else graph.default_parallelism
    new_graph = StreamGraph(tuple(nodes), graph.edges, graph.name, default)
    job_graph = new_graph.to_job_graph(chaining=job.config.chaining)
    again = Job(
        job_graph,
        job_id=job.job_id,
        name=job.job_name,
        job_type=job.job_type,
        config=job.config
        if parallelism is None
        else dataclasses.replace(job.config, parallelism=parallelism),
        metadata=job.metadata,
    )
    again.id_generated = job.id_generated
    return again
