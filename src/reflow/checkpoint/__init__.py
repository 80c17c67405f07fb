"""Checkpointing: barriers and their alignment, the coordinator, restore and
rescale of state, and storage of atomic, checksummed snapshots (folders or S3)."""

from reflow.checkpoint.alignment import BarrierAligner
from reflow.checkpoint.barrier import Barrier, SenderFinished
from reflow.checkpoint.coordinator import (
    CheckpointAcks,
    CheckpointCoordinator,
    CheckpointParticipant,
    CheckpointStats,
    TooManyCheckpointFailuresError,
)
from reflow.checkpoint.restore import RestorePlan
from reflow.checkpoint.storage import (
    CheckpointData,
    CheckpointError,
    CheckpointStorage,
    FileCheckpointStorage,
    S3CheckpointStorage,
    open_storage,
    read_checkpoint,
)

__all__ = [
    "Barrier",
    "BarrierAligner",
    "CheckpointAcks",
    "CheckpointCoordinator",
    "CheckpointData",
    "CheckpointError",
    "CheckpointParticipant",
    "CheckpointStats",
    "CheckpointStorage",
    "FileCheckpointStorage",
    "RestorePlan",
    "S3CheckpointStorage",
    "SenderFinished",
    "TooManyCheckpointFailuresError",
    "open_storage",
    "read_checkpoint",
]
