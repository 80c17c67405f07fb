"""Exactly-once file sinks own their in-progress files: a restoring writer removes
only its own leftovers (not another job's, nor another sink's in the same folder),
and a completed checkpoint whose file is gone is an error, not a silent loss."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from reflow.connectors.base import ConnectorContext
from reflow.connectors.file import FileConnector
from reflow.errors import ConnectorError


def _writer(folder: Path, name: str, job_id: str, step: str) -> Any:
    sink = FileConnector().create_sink(
        {"path": str(folder / f"{name}.jsonl"), "delivery": "exactly-once"}
    )
    return sink.create_writer(ConnectorContext(step, job_id=job_id))


def _rows(folder: Path, name: str) -> list[int]:
    """The committed rows of the files named ``name-<part>.jsonl``, in order."""
    files = sorted(folder.glob(f"{name}-*.jsonl"))
    return [orjson.loads(line)["n"] for f in files for line in f.read_bytes().splitlines()]


@pytest.mark.parametrize(
    ("other_job", "other_step"),
    [("job-b", "out"), ("job-a", "audit")],  # another job; a second sink of the same job
)
def test_a_restoring_writer_leaves_other_writers_files_alone(
    tmp_path: Path, other_job: str, other_step: str
) -> None:
    async def scenario() -> None:
        a = _writer(tmp_path, "a", "job-a", "out")
        await a.open()
        await a.write([{"n": i} for i in range(500)])
        state = await a.pre_commit(1)  # in progress until checkpoint 1 completes
        # Meanwhile another writer in the same folder (same subtask index) restores.
        b = _writer(tmp_path, "b", other_job, other_step)
        await b.open()
        await b.restore([])
        await b.write([{"n": 1_000 + i} for i in range(300)])
        await b.flush()
        await b.close()
        await a.commit(1)
        await a.close()
        assert state["files"]

    asyncio.run(scenario())
    assert _rows(tmp_path, "a") == list(range(500))
    assert _rows(tmp_path, "b") == [1_000 + i for i in range(300)]
    assert not list(tmp_path.glob(".*inprogress"))


def test_a_restoring_writer_still_removes_its_own_leftovers(tmp_path: Path) -> None:
    async def scenario() -> None:
        crashed = _writer(tmp_path, "a", "job-a", "out")
        await crashed.open()
        await crashed.write([{"n": 1}])
        state = await crashed.pre_commit(1)
        await crashed.write([{"n": 2}])  # after the barrier: must not survive a restore
        await crashed.pre_commit(2)  # written, never committed (the process died)
        restarted = _writer(tmp_path, "a", "job-a", "out")
        await restarted.open()
        await restarted.restore([state])
        await restarted.close()

    asyncio.run(scenario())
    assert not list(tmp_path.glob(".*inprogress"))
    assert _rows(tmp_path, "a") == [1]


def test_a_missing_file_at_commit_is_an_error(tmp_path: Path) -> None:
    async def scenario() -> None:
        a = _writer(tmp_path, "a", "job-a", "out")
        await a.open()
        await a.write([{"n": i} for i in range(10)])
        await a.pre_commit(1)
        for stray in tmp_path.glob(".*inprogress"):
            stray.unlink()  # something else cleaned the folder
        with pytest.raises(ConnectorError, match="is gone"):
            await a.commit(1)

    asyncio.run(scenario())


def test_a_rescale_to_fewer_subtasks_leaves_no_in_progress_file(tmp_path: Path) -> None:
    """3 subtasks write after their last checkpoint (their stop came later), then
    the job runs again at 2: subtask 0 publishes every old subtask's checkpointed
    files and removes the leftovers of subtask 2, which no longer exists; subtask
    1 removes its own, keeping the checkpointed ones subtask 0 publishes."""

    def writer(index: int, parallelism: int) -> Any:
        sink = FileConnector().create_sink(
            {"path": str(tmp_path / "out.jsonl"), "delivery": "exactly-once"}
        )
        ctx = ConnectorContext("out", index, parallelism, job_id="job-a")
        return sink.create_writer(ctx)

    async def scenario() -> None:
        old = [writer(i, 3) for i in range(3)]
        states = []
        for i, w in enumerate(old):
            await w.open()
            await w.write([{"n": i * 100 + k} for k in range(10)])
            states.append(await w.pre_commit(7))  # the savepoint, not yet committed
            await w.write([{"n": -1}] * 5)  # after it: must never be published
            await w.close()
        assert len(list(tmp_path.glob(".*inprogress"))) == 6
        second = writer(1, 2)
        await second.open()
        await second.adopt(states)  # before subtask 0 published the savepoint's files
        first = writer(0, 2)
        await first.open()
        await first.restore(states)
        for w in (first, second):
            await w.flush()
            await w.close()

    asyncio.run(scenario())
    assert sorted(_rows(tmp_path, "out")) == [i * 100 + k for i in range(3) for k in range(10)]
    assert sorted(p.name for p in tmp_path.glob(".*")) == []
