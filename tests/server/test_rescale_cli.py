"""``reflow rescale`` against a running ``reflow serve``: through the REST API and
through the job store; the job graph shows the new parallelism and the history
the rescale with its downtime."""

from __future__ import annotations

import io
import time
from pathlib import Path

import httpx
import pytest

from reflow.cli import main
from tests.conftest import start_serve

JOB = """
job:
  id: scaled
  name: scaled
  checkpoint: {path: "FOLDER/checkpoints", interval: 500ms}
  source:
    connector: datagen
    parallelism: 1
    config: {rows_per_second: 200, seed: 3}
  operators:
    - {name: by-id, type: key_by, key: id}
    - {name: doubled, type: map, expression: "{'id': r['id'], 'twice': r['id'] * 2}"}
  sink: {connector: file, config: {path: "FOLDER/out.jsonl", delivery: exactly-once}}
"""


def _parallelism(api: str, step: str) -> int:
    graph = httpx.get(f"{api}/api/jobs/scaled/graph", headers={"X-Reflow-Token": "tok"}).json()
    return int(next(v["parallelism"] for v in graph["vertices"] if step in v["steps"]))


@pytest.mark.timeout(120)
def test_rescale_through_the_api_and_through_the_store(tmp_path: Path) -> None:
    (tmp_path / "system.yaml").write_text(
        f"system:\n  security:\n    path_roots: [{str(tmp_path)!r}]\n"
    )
    proc, api = start_serve(
        tmp_path, "--token", "tok", "--slots", "6", "--config", str(tmp_path / "system.yaml")
    )
    store = ["--store", f"sqlite:///{tmp_path}/jobs.db"]
    try:
        (tmp_path / "job.yaml").write_text(JOB.replace("FOLDER", str(tmp_path)))

        def cli(*args: str, via_api: bool = True) -> tuple[int, str]:
            out = io.StringIO()
            extra = ["--api", api, "--api-token", "tok"] if via_api else store
            return main([args[0], *extra, *args[1:]], out=out), out.getvalue()

        assert cli("submit", str(tmp_path / "job.yaml"))[0] == 0
        deadline = time.monotonic() + 30
        while "RUNNING" not in cli("status", "scaled")[1]:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert _parallelism(api, "doubled") == 1

        code, text = cli("rescale", "scaled", "--parallelism", "3")
        assert code == 0, text
        assert "doubled 1->3" in text and "running again after" in text
        assert _parallelism(api, "doubled") == 3 and _parallelism(api, "source") == 1

        code, text = cli("rescale", "scaled", "--step", "doubled=2", via_api=False)
        assert code == 0, text
        assert text.startswith("ok: run ") and "doubled 3->2" in text
        assert _parallelism(api, "doubled") == 2

        code, _ = cli("rescale", "scaled", "--step", "source=2")
        assert code == 2  # sources keep their parallelism: refused with the reason
        code, text = cli("rescale", "scaled", "--step", "source=2", via_api=False)
        assert code == 2 and "is a source" in text
        code, status = cli("status", "scaled", via_api=False)
        assert status.count("RESCALED") == 2
    finally:
        proc.terminate()
        proc.wait(timeout=10)
