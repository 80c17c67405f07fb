"""Barrier alignment over a subtask's senders (Flink's aligned checkpoints).

A subtask with several senders snapshots checkpoint *n* only once barrier *n*
has arrived from every one of them. Meanwhile, what a sender whose barrier has
arrived sends next belongs to the next checkpoint: it is held back, and
replayed once the snapshot is taken. A newer barrier supersedes an alignment
that never completed (its checkpoint was aborted); a barrier of an aborted
checkpoint is ignored; a sender that finished is no longer waited for.

The subtask owns the data path: it asks ``holds(sender)`` for each item
(cheap: one attribute test while not aligning), hands barriers and finished
senders here, and snapshots when told the alignment completed.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Hashable, Iterable
from typing import Any

from reflow.checkpoint.barrier import Barrier

__all__ = ["BarrierAligner"]


class BarrierAligner:
    """The alignment state of one subtask's input."""

    __slots__ = ("aligning", "blocked", "expected", "held", "replay", "started")

    def __init__(self, senders: Iterable[Hashable]) -> None:
        self.expected = set(senders)
        """Senders whose barriers are awaited (finished senders are removed)."""
        self.aligning: int | None = None
        """The checkpoint being aligned, if any."""
        self.blocked: set[Hashable] = set()
        """Senders whose barrier for ``aligning`` arrived: their items are held."""
        self.held: list[Any] = []
        self.replay: deque[Any] = deque()
        """Items held during the last alignment, to process before reading on."""
        self.started = 0.0

    def holds(self, sender: Hashable) -> bool:
        """Whether an item from ``sender`` must wait for the alignment to complete."""
        return self.aligning is not None and sender in self.blocked

    def on_barrier(self, barrier: Barrier) -> tuple[int, float] | None:
        """Take a barrier; (checkpoint id, seconds aligning) when the alignment completed."""
        if self.aligning is None or barrier.checkpoint_id > self.aligning:
            if self.aligning is not None:  # a newer checkpoint supersedes an aborted one
                self.release()
            self.aligning = barrier.checkpoint_id
            self.blocked = set()
            self.started = time.perf_counter()
        elif barrier.checkpoint_id < self.aligning:
            return None  # a barrier of an aborted checkpoint
        self.blocked.add(barrier.sender)
        return self._completed()

    def on_sender_finished(self, sender: Hashable) -> tuple[int, float] | None:
        """A finished sender sends no more barriers: stop waiting for them."""
        self.expected.discard(sender)
        return self._completed()

    def _completed(self) -> tuple[int, float] | None:
        if self.aligning is None or not self.blocked >= self.expected:
            return None
        checkpoint_id = self.aligning
        self.aligning = None
        self.blocked = set()
        return checkpoint_id, time.perf_counter() - self.started

    def release(self) -> None:
        """Queue what was held for replay and end any alignment in progress."""
        self.replay.extend(self.held)
        self.held = []
        self.aligning = None
        self.blocked = set()
