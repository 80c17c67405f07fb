"""Checkpoint storage on a filesystem: atomic, checksummed, retained, verified on read.

A checkpoint is one file ``<path>/<job_id>/chk-<id>.ckpt``: a magic header, a
SHA-256 of the payload, then the pickled payload. It is written to a temporary
file, fsynced and renamed, so a crash leaves either the whole file or none. A
file that fails its checksum (a torn or corrupt write) is skipped with a
warning and the previous good checkpoint is used. Savepoints go to
``<path>/<job_id>/savepoints/`` and are never deleted by retention.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reflow.errors import ReflowError

__all__ = ["CheckpointData", "CheckpointError", "FileCheckpointStorage"]

logger = logging.getLogger(__name__)

MAGIC = b"RFLWCKP1"
_DIGEST = 32


class CheckpointError(ReflowError):
    """A checkpoint could not be written or read."""


@dataclass(slots=True)
class CheckpointData:
    """What a complete checkpoint holds."""

    job_id: str
    checkpoint_id: int
    states: dict[tuple[str, int], dict[str, Any]]
    """(step_id, subtask) -> {"source": position, "logic": state, "keyed": ScopeSnapshot,
    "sink": pre-commit state}."""
    parallelism: dict[str, int]
    savepoint: bool = False
    created: float = field(default_factory=time.time)
    path: str = ""


class FileCheckpointStorage:
    def __init__(self, path: str | Path, retained: int = 3) -> None:
        self.root = Path(path)
        self.retained = retained

    def _job_dir(self, job_id: str) -> Path:
        return self.root / job_id

    def write(self, data: CheckpointData) -> Path:
        """Persist ``data`` atomically; returns the file."""
        folder = self._job_dir(data.job_id)
        if data.savepoint:
            folder = folder / "savepoints"
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{'sp' if data.savepoint else 'chk'}-{data.checkpoint_id:010d}.ckpt"
        target = folder / name
        data.path = str(target)
        payload = pickle.dumps(data, protocol=5)
        blob = MAGIC + hashlib.sha256(payload).digest() + payload
        tmp = folder / f".{name}.tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(blob)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
            dir_fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise CheckpointError(f"cannot write checkpoint {target}: {exc}") from exc
        if not data.savepoint:
            self._retain(folder)
        return target

    def _retain(self, folder: Path) -> None:
        files = sorted(folder.glob("chk-*.ckpt"))
        for old in files[: -self.retained]:
            old.unlink(missing_ok=True)

    @staticmethod
    def read(path: str | Path) -> CheckpointData:
        """Read and verify one checkpoint or savepoint file."""
        try:
            blob = Path(path).read_bytes()
        except OSError as exc:
            raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
        if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + _DIGEST:
            raise CheckpointError(f"{path} is not a reflow checkpoint (bad header)")
        digest = blob[len(MAGIC) : len(MAGIC) + _DIGEST]
        payload = blob[len(MAGIC) + _DIGEST :]
        if hashlib.sha256(payload).digest() != digest:
            raise CheckpointError(f"{path} is corrupt or partial (checksum mismatch)")
        data: CheckpointData = pickle.loads(payload)
        data.path = str(path)
        return data

    def latest(self, job_id: str) -> CheckpointData | None:
        """The newest checkpoint that verifies; corrupt ones are skipped with a warning."""
        folder = self._job_dir(job_id)
        for candidate in sorted(folder.glob("chk-*.ckpt"), reverse=True):
            try:
                return self.read(candidate)
            except CheckpointError as exc:
                logger.warning(
                    "job %s: skipping checkpoint %s: %s; trying the previous one",
                    job_id,
                    candidate.name,
                    exc,
                    extra={"job_id": job_id},
                )
        return None

    def checkpoints(self, job_id: str) -> list[Path]:
        return sorted(self._job_dir(job_id).glob("chk-*.ckpt"))

    def savepoints(self, job_id: str) -> list[Path]:
        return sorted((self._job_dir(job_id) / "savepoints").glob("sp-*.ckpt"))

    def next_id(self, job_id: str) -> int:
        ids = [
            int(p.stem.split("-")[1]) for p in [*self.checkpoints(job_id), *self.savepoints(job_id)]
        ]
        return max(ids, default=0) + 1
