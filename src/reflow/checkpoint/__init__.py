"""Checkpoint storage: atomic, checksummed snapshots of a job's state."""

from reflow.checkpoint.storage import CheckpointData, CheckpointError, FileCheckpointStorage

__all__ = ["CheckpointData", "CheckpointError", "FileCheckpointStorage"]
