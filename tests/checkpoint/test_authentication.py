"""Checkpoints are authenticated before they are unpickled: a forged savepoint
given to --from-savepoint, or a file planted in checkpoint storage, never runs."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import stat
from pathlib import Path
from typing import Any

import pytest

from reflow.checkpoint import CheckpointData, open_storage, read_checkpoint
from reflow.checkpoint.storage import CheckpointError
from reflow.cli import main


class _Payload:
    """Unpickling this writes a marker file: proof that the blob's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.marker, "pwned"))


def _forged(marker: Path, magic: bytes = b"RFLWCKP2") -> bytes:
    payload = pickle.dumps(_Payload(marker))
    return magic + hashlib.sha256(payload).digest() + payload  # what an attacker can compute


JOB = """
job:
  id: auth-job
  name: auth-job
  source: {{connector: datagen, config: {{number_of_rows: 10}}}}
  sink: {{connector: file, config: {{path: "{out}"}}}}
"""


def test_a_forged_savepoint_is_refused_and_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    forged = tmp_path / "sp-0000000001.ckpt"
    forged.write_bytes(_forged(marker))
    job = tmp_path / "job.yaml"
    job.write_text(JOB.format(out=tmp_path / "out.jsonl"))
    code = main(["run", str(job), "--from-savepoint", str(forged)], out=io.StringIO())
    assert code == 2
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="does not verify"):
        read_checkpoint(forged)
    assert not marker.exists()


def test_an_unauthenticated_checkpoint_of_the_old_format_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    old = tmp_path / "chk-0000000001.ckpt"
    old.write_bytes(_forged(marker, b"RFLWCKP1"))
    with pytest.raises(CheckpointError, match="older reflow"):
        read_checkpoint(old)
    assert not marker.exists()


def test_a_planted_checkpoint_is_skipped_for_the_last_authentic_one(tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path / "ckpt"))
    good = CheckpointData("job-a", 1, {("src", 0): {"source": 41}}, {"src": 1})
    storage.write(good)
    marker = tmp_path / "marker"
    (tmp_path / "ckpt" / "job-a" / "chk-0000000099.ckpt").write_bytes(_forged(marker))
    latest = storage.latest("job-a")
    assert latest is not None and latest.checkpoint_id == 1
    assert latest.states[("src", 0)]["source"] == 41
    assert not marker.exists()


def test_the_key_is_made_on_first_use_readable_by_its_owner_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "keys" / "checkpoint.key"
    monkeypatch.setenv("REFLOW_CHECKPOINT_KEY_FILE", str(key_file))
    monkeypatch.delenv("REFLOW_CHECKPOINT_KEY", raising=False)
    storage = open_storage(str(tmp_path / "ckpt"))
    written = storage.write(CheckpointData("job-b", 1, {}, {}))
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert read_checkpoint(written).checkpoint_id == 1
    # Another installation (another key) cannot read it, and says how to fix that.
    monkeypatch.setenv("REFLOW_CHECKPOINT_KEY", "another-key")
    with pytest.raises(CheckpointError, match="REFLOW_CHECKPOINT_KEY"):
        read_checkpoint(written)
