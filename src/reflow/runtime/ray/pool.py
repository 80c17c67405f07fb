"""Idle subtask actors kept for the next job, as a session cluster keeps Flink's
task slots between jobs.

Starting a subtask actor means a new Ray worker process importing reflow and the
job's modules: 1.5 s for one actor here, 2.7 s for four, far more than a short
job's own run. An actor whose job ended cleanly is empty again (its subtask's
state, threads and connections released by ``end_of_input``), so the driver
gives it back here and the next job's subtask of the same placement takes it.

Only actors that reserve nothing are kept: an idle actor holding reserved CPUs or
memory would keep them from other jobs. Their placement is the pool's key (the
node an actor is pinned to). The actors of a job that failed, was cancelled or
lost an actor are killed, never kept: a restart always runs on new processes.
At most ``max_idle`` actors wait (the longest idle are killed first), each at most
``idle_seconds``; the pool of one Ray session is dropped with its session.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["IDLE_SECONDS", "MAX_IDLE", "ActorPool", "placement_key"]

MAX_IDLE = 16
"""Idle actors kept at most (each a Ray worker process of ~150 MB)."""
IDLE_SECONDS = 300.0
"""An actor idle longer is killed when the pool is next used."""


def placement_key(options: dict[str, Any]) -> Hashable | None:
    """The pool's key for an actor created with ``options`` (its Ray options), or
    None when it must not be kept: it reserves CPUs or memory."""
    if options.get("num_cpus") or options.get("memory") or options.get("resources"):
        return None
    strategy = options.get("scheduling_strategy")
    node = getattr(strategy, "node_id", None)
    if node is not None:
        return ("node", node, bool(getattr(strategy, "soft", False)))
    return ("strategy", str(strategy))


class ActorPool:
    """Idle actors by placement key; ``kill`` ends one (``ray.kill``)."""

    def __init__(
        self,
        kill: Callable[[Any], None],
        *,
        max_idle: int = MAX_IDLE,
        idle_seconds: float = IDLE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kill = kill
        self.max_idle = max_idle
        self.idle_seconds = idle_seconds
        self.clock = clock
        self._idle: list[tuple[float, Hashable, Any]] = []
        """(since, key, actor), the longest idle first."""

    def __len__(self) -> int:
        return len(self._idle)

    def take(self, key: Hashable) -> Any | None:
        """The most recently given back actor of ``key`` (warmest), or None."""
        self._expire()
        for index in range(len(self._idle) - 1, -1, -1):
            if self._idle[index][1] == key:
                return self._idle.pop(index)[2]
        return None

    def give(self, key: Hashable, actor: Any) -> None:
        """Keep ``actor`` (empty, its job ended cleanly) for a later job."""
        self._idle.append((self.clock(), key, actor))
        self._expire()
        while len(self._idle) > self.max_idle:
            self.kill(self._idle.pop(0)[2])

    def clear(self) -> None:
        """Kill every idle actor."""
        idle, self._idle = self._idle, []
        for _, _, actor in idle:
            self.kill(actor)

    def _expire(self) -> None:
        limit = self.clock() - self.idle_seconds
        while self._idle and self._idle[0][0] < limit:
            self.kill(self._idle.pop(0)[2])
