"""What a restored job's subtasks take over from a checkpoint or savepoint.

A step keeps its state per subtask. Restored at the parallelism it was
checkpointed with, subtask *i* takes the state of subtask *i*. At another
parallelism (rescaling from a savepoint), operator state is handed to each new
subtask whole (the operator merges it), and keyed state is redistributed entry
by entry by the key group of its record key, as Flink does; a source keeps its
parallelism across a restore, since its position cannot be split.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reflow.checkpoint.storage import CheckpointData, CheckpointError
from reflow.graph.partitioning import MAX_KEY_GROUPS, key_group_table, stable_hash
from reflow.state.backend import ScopeSnapshot, StateBackend

__all__ = ["RestorePlan"]


class RestorePlan:
    """The states of one checkpoint, as the subtasks of a (possibly rescaled) job
    ask for them. ``data`` None: a fresh start, nothing to take over."""

    def __init__(self, data: CheckpointData | None) -> None:
        self.data = data
        self._rescaled: dict[str, list[ScopeSnapshot]] = {}

    def states(self, step_id: str, index: int, parallelism: int) -> list[dict[str, Any]]:
        """The checkpointed states of ``step_id`` that subtask ``index`` takes over:
        its own at the same parallelism, every old subtask's otherwise."""
        data = self.data
        if data is None or step_id not in data.parallelism:
            return []
        old = data.parallelism[step_id]
        if old == parallelism:
            own = data.states.get((step_id, index))
            return [own] if own is not None else []
        return [data.states[(step_id, i)] for i in range(old) if (step_id, i) in data.states]

    def dead_letter_states(self) -> list[Any]:
        """The dead-letter writer's states, as each subtask's snapshot left it."""
        if self.data is None:
            return []
        entries = [e for e in self.data.states.values() if isinstance(e, dict)]
        return [e["dead_letters"] for e in entries if e.get("dead_letters") is not None]

    def rescaled(self, step_id: str, parallelism: int) -> bool:
        """True when ``step_id`` ran with another parallelism in the checkpoint."""
        data = self.data
        return data is not None and data.parallelism.get(step_id, parallelism) != parallelism

    def source_position(self, step_id: str, index: int, parallelism: int) -> Any:
        """Where subtask ``index`` of source ``step_id`` resumes reading (None: the start).

        Raises:
            CheckpointError: the source's parallelism changed since the checkpoint.
        """
        previous = self.states(step_id, index, parallelism)
        positions = [p.get("source") for p in previous]
        if not any(p is not None for p in positions):
            return None
        if len(previous) != 1:
            assert self.data is not None
            raise CheckpointError(
                f"source {step_id!r} ran with parallelism "
                f"{self.data.parallelism[step_id]} in the checkpoint and {parallelism} now; "
                "a source keeps its parallelism across a restore (set it on the source), "
                "other steps may change"
            )
        return positions[0]

    def restore_keyed(
        self,
        backend: StateBackend | None,
        step_id: str,
        index: int,
        parallelism: int,
        partition_key: Callable[[str, Any], Any],
    ) -> None:
        """Put the keyed state subtask ``index`` of ``step_id`` owns into ``backend``;
        ``partition_key(state name, state key)`` gives the record key an entry
        belongs to (for redistribution by key group)."""
        data = self.data
        if data is None or backend is None:
            return
        old = data.parallelism.get(step_id)
        if old == parallelism:
            snapshot = data.states.get((step_id, index), {}).get("keyed")
            if snapshot is not None:
                backend.restore_scope(step_id, index, snapshot)
            return
        if step_id not in self._rescaled:
            # Redistribute every entry by the key group of its record key.
            merged = ScopeSnapshot()
            for i in range(old or 0):
                part = data.states.get((step_id, i), {}).get("keyed")
                if part is not None:
                    merged.merge(part)
            table = key_group_table(parallelism)

            def owner(name: str, key: Any) -> int:
                return table[stable_hash(partition_key(name, key)) % MAX_KEY_GROUPS]

            self._rescaled[step_id] = merged.split(owner, parallelism)
        backend.restore_scope(step_id, index, self._rescaled[step_id][index])
