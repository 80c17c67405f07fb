"""Checkpoint storage: atomic, checksummed snapshots of a job's state (folders or S3)."""

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
    "CheckpointData",
    "CheckpointError",
    "CheckpointStorage",
    "FileCheckpointStorage",
    "S3CheckpointStorage",
    "open_storage",
    "read_checkpoint",
]
