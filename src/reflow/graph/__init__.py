"""StreamGraph, JobGraph, partitioning, chaining, explain and the Job model; pure data."""

from reflow.graph.explain import explain_mermaid, explain_text
from reflow.graph.job import ErrorMode, ErrorPolicy, Job, JobConfig, JobStatus, JobType
from reflow.graph.job_graph import (
    CHAIN_RULES,
    ChainDecision,
    JobEdge,
    JobGraph,
    JobVertex,
    ResourceProfile,
    compile_job_graph,
)
from reflow.graph.partitioning import MAX_KEY_GROUPS, Partitioning, key_group_of, stable_hash
from reflow.graph.stream_graph import (
    NodeKind,
    Overflow,
    StreamEdge,
    StreamGraph,
    StreamNode,
)

__all__ = [
    "CHAIN_RULES",
    "MAX_KEY_GROUPS",
    "ChainDecision",
    "ErrorMode",
    "ErrorPolicy",
    "Job",
    "JobConfig",
    "JobEdge",
    "JobGraph",
    "JobStatus",
    "JobType",
    "JobVertex",
    "NodeKind",
    "Overflow",
    "Partitioning",
    "ResourceProfile",
    "StreamEdge",
    "StreamGraph",
    "StreamNode",
    "compile_job_graph",
    "explain_mermaid",
    "explain_text",
    "key_group_of",
    "stable_hash",
]
