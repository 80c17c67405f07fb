"""Checkpoint storage: atomic, authenticated, retained, verified on read.

A checkpoint is one blob: a magic header, an HMAC-SHA256 of the payload under
the checkpoint key, then the pickled payload. Unpickling runs code, so a blob
is unpickled only once its HMAC verifies: a file planted in the storage or
handed to ``--from-savepoint`` that this installation did not write is refused
(docs/security.md). The key is ``$REFLOW_CHECKPOINT_KEY``, else the file
``$REFLOW_CHECKPOINT_KEY_FILE`` (default ``~/.reflow/checkpoint.key``),
generated on first use with mode 0600. In a folder a checkpoint is written to a
temporary file, fsynced and renamed (``<path>/<job_id>/chk-<id>.ckpt``), so a
crash leaves either the whole file or none; on S3 (``s3://bucket/prefix``) one PUT
is atomic. A blob that fails its signature (torn, corrupt or forged) is skipped
with a warning and the
previous good checkpoint is used. Savepoints go to ``.../<job_id>/savepoints/``
and are never deleted by retention.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import pickle
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reflow.errors import ReflowError

__all__ = [
    "CheckpointData",
    "CheckpointError",
    "CheckpointStorage",
    "FileCheckpointStorage",
    "S3CheckpointStorage",
    "checkpoint_key",
    "open_storage",
    "read_checkpoint",
]

logger = logging.getLogger(__name__)

MAGIC = b"RFLWCKP2"
_UNSIGNED_MAGIC = b"RFLWCKP1"  # before checkpoints were authenticated
_DIGEST = 32
KEY_ENV = "REFLOW_CHECKPOINT_KEY"
KEY_FILE_ENV = "REFLOW_CHECKPOINT_KEY_FILE"
DEFAULT_KEY_FILE = Path("~/.reflow/checkpoint.key")
_KEY_BYTES = 32


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


def key_file() -> Path:
    """Where the checkpoint key is kept when ``$REFLOW_CHECKPOINT_KEY`` is not set."""
    return Path(os.environ.get(KEY_FILE_ENV) or DEFAULT_KEY_FILE).expanduser()


# Key files read, by path: a checkpoint is signed or verified without reading the file again.
_KEYS: dict[Path, bytes] = {}


def checkpoint_key() -> bytes:
    """The key that signs and verifies checkpoints (made on first use, mode 0600)."""
    value = os.environ.get(KEY_ENV)
    if value:
        return value.encode()
    path = key_file()
    if path in _KEYS:
        return _KEYS[path]
    _KEYS[path] = key = _read_or_make_key(path)
    return key


def _read_or_make_key(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise CheckpointError(
            f"cannot read the checkpoint key {path}: {exc.strerror}; set {KEY_ENV} instead"
        ) from exc
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = secrets.token_hex(_KEY_BYTES).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()  # another process made it first
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    logger.info("made the checkpoint key %s (keep it: it authenticates checkpoints)", path)
    return key


def encode(data: CheckpointData) -> bytes:
    payload = pickle.dumps(data, protocol=5)
    return MAGIC + hmac.new(checkpoint_key(), payload, hashlib.sha256).digest() + payload


def decode(blob: bytes, where: str) -> CheckpointData:
    if blob.startswith(_UNSIGNED_MAGIC):
        raise CheckpointError(
            f"{where} is an unauthenticated checkpoint of an older reflow; it is not loaded "
            "(loading it would run whatever it contains): take a new savepoint"
        )
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + _DIGEST:
        raise CheckpointError(f"{where} is not a reflow checkpoint (bad header)")
    digest = blob[len(MAGIC) : len(MAGIC) + _DIGEST]
    payload = blob[len(MAGIC) + _DIGEST :]
    expected = hmac.new(checkpoint_key(), payload, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, digest):
        raise CheckpointError(
            f"{where} does not verify with this installation's checkpoint key: it is corrupt, "
            f"partial, forged, or written under another key (set {KEY_ENV} or "
            f"{KEY_FILE_ENV} to the writer's key); it was not loaded"
        )
    data: CheckpointData = pickle.loads(payload)  # authenticated above
    data.path = where
    return data


def _name(data: CheckpointData) -> str:
    return f"{'sp' if data.savepoint else 'chk'}-{data.checkpoint_id:010d}.ckpt"


def _id_of(location: str) -> int:
    return int(location.rsplit("/", 1)[-1].split("-")[1].split(".")[0])


class CheckpointStorage:
    """Where checkpoints live: a folder, or an S3 bucket and prefix."""

    retained: int = 3

    def write(self, data: CheckpointData) -> str:
        """Persist ``data`` atomically; returns where."""
        raise NotImplementedError

    def read(self, location: str) -> CheckpointData:
        """Read and verify one checkpoint or savepoint."""
        raise NotImplementedError

    def checkpoints(self, job_id: str) -> list[str]:
        """The job's checkpoints, oldest first."""
        raise NotImplementedError

    def savepoints(self, job_id: str) -> list[str]:
        raise NotImplementedError

    def latest(self, job_id: str) -> CheckpointData | None:
        """The newest checkpoint that verifies; corrupt ones are skipped with a warning."""
        for candidate in reversed(self.checkpoints(job_id)):
            try:
                return self.read(candidate)
            except CheckpointError as exc:
                logger.warning(
                    "job %s: skipping checkpoint %s: %s; trying the previous one",
                    job_id,
                    candidate,
                    exc,
                    extra={"job_id": job_id},
                )
        return None

    def next_id(self, job_id: str) -> int:
        ids = [_id_of(loc) for loc in [*self.checkpoints(job_id), *self.savepoints(job_id)]]
        return max(ids, default=0) + 1


def open_storage(path: str, retained: int = 3) -> CheckpointStorage:
    """``s3://bucket/prefix`` opens S3 storage; anything else is a folder."""
    if path.startswith("s3://"):
        return S3CheckpointStorage(path, retained)
    return FileCheckpointStorage(path, retained)


def read_checkpoint(location: str | Path) -> CheckpointData:
    """Read and verify a checkpoint or savepoint, from a file or an ``s3://`` URL."""
    text = str(location)
    if text.startswith("s3://"):
        bucket = text[5:].split("/", 1)[0]
        return S3CheckpointStorage(f"s3://{bucket}").read(text)
    try:
        blob = Path(text).read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {text}: {exc}") from exc
    return decode(blob, text)


class FileCheckpointStorage(CheckpointStorage):
    def __init__(self, path: str | Path, retained: int = 3) -> None:
        self.root = Path(path)
        self.retained = retained

    def _job_dir(self, job_id: str) -> Path:
        return self.root / job_id

    def write(self, data: CheckpointData) -> str:
        folder = self._job_dir(data.job_id)
        if data.savepoint:
            folder = folder / "savepoints"
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CheckpointError(f"cannot write checkpoint into {folder}: {exc}") from exc
        name = _name(data)
        target = folder / name
        data.path = str(target)
        blob = encode(data)
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
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)  # a full disk keeps no half-written file
            raise CheckpointError(f"cannot write checkpoint {target}: {exc}") from exc
        if not data.savepoint:
            for old in self.checkpoints(data.job_id)[: -self.retained]:
                Path(old).unlink(missing_ok=True)
        return str(target)

    def read(self, location: str) -> CheckpointData:
        return read_checkpoint(location)

    def checkpoints(self, job_id: str) -> list[str]:
        return [str(p) for p in sorted(self._job_dir(job_id).glob("chk-*.ckpt"))]

    def savepoints(self, job_id: str) -> list[str]:
        folder = self._job_dir(job_id) / "savepoints"
        return [str(p) for p in sorted(folder.glob("sp-*.ckpt"))]


class S3CheckpointStorage(CheckpointStorage):
    """Checkpoints as S3 objects (one PUT is atomic). The endpoint and credentials
    come from the usual AWS settings (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ...)."""

    def __init__(self, url: str, retained: int = 3) -> None:
        bucket, _, prefix = url[len("s3://") :].partition("/")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.retained = retained
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("s3")
        return self._client

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def write(self, data: CheckpointData) -> str:
        key = self._key(data.job_id, "savepoints" if data.savepoint else "", _name(data))
        data.path = f"s3://{self.bucket}/{key}"
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=encode(data))
        except Exception as exc:
            raise CheckpointError(f"cannot write checkpoint {data.path}: {exc}") from exc
        if not data.savepoint:
            for old in self.checkpoints(data.job_id)[: -self.retained]:
                self.client.delete_object(Bucket=self.bucket, Key=old.split("/", 3)[3])
        return data.path

    def read(self, location: str) -> CheckpointData:
        key = location.split("/", 3)[3] if location.startswith("s3://") else location
        try:
            blob = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except Exception as exc:
            raise CheckpointError(f"cannot read checkpoint {location}: {exc}") from exc
        return decode(blob, f"s3://{self.bucket}/{key}")

    def _list(self, prefix: str, start: str) -> list[str]:
        found = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix + "/"):
            for item in page.get("Contents", []):
                relative = item["Key"][len(prefix) + 1 :]
                if "/" not in relative and relative.startswith(start):
                    found.append(f"s3://{self.bucket}/{item['Key']}")
        return sorted(found)

    def checkpoints(self, job_id: str) -> list[str]:
        return self._list(self._key(job_id), "chk-")

    def savepoints(self, job_id: str) -> list[str]:
        return self._list(self._key(job_id, "savepoints"), "sp-")
