"""The in-band messages of checkpointing: barriers and the end of a sender.

Both travel through the data channels, in order with the records around them:
a ``Barrier`` splits a sender's stream into what belongs to checkpoint *n* and
what comes after; ``SenderFinished`` says a sender will send nothing more, so
no barrier is to be awaited from it (checkpoints after finished tasks, as in
Flink's FLIP-147).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

__all__ = ["Barrier", "SenderFinished"]


@dataclass(frozen=True, slots=True)
class Barrier:
    """Checkpoint ``checkpoint_id`` passed this sender: what came before belongs to it."""

    sender: Hashable
    checkpoint_id: int


@dataclass(frozen=True, slots=True)
class SenderFinished:
    """``sender`` sent everything it will ever send: checkpoint barriers are no longer
    awaited from it (checkpoints go on after some subtasks finished)."""

    sender: Hashable
