"""The CLI talks to a running reflow serve through its REST API."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

from reflow.cli import main
from tests.conftest import start_serve

JOB = """
job:
  id: via-api
  name: via-api
  source: {connector: datagen, config: {number_of_rows: 50}}
  sink: {connector: file, config: {path: "%s/out.jsonl"}}
"""


@pytest.mark.timeout(60)
def test_submit_status_trigger_and_events_through_the_api(tmp_path: Path) -> None:
    (tmp_path / "system.yaml").write_text(
        f"system:\n  security:\n    path_roots: [{str(tmp_path)!r}]\n"
    )
    proc, api = start_serve(tmp_path, "--token", "tok", "--config", str(tmp_path / "system.yaml"))
    try:
        (tmp_path / "job.yaml").write_text(JOB % tmp_path)
        (tmp_path / "outside.yaml").write_text(JOB.replace("via-api", "outside") % "/tmp")

        def cli(*args: str) -> tuple[int, str]:
            out = io.StringIO()
            words = 2 if args[0] == "events" else 1
            code = main([*args[:words], "--api", api, "--api-token", "tok", *args[words:]], out=out)
            return code, out.getvalue()

        # The server's policy: files under its path_roots only.
        code, _ = cli("submit", str(tmp_path / "outside.yaml"))
        assert code == 2
        code, text = cli("submit", str(tmp_path / "job.yaml"), "--on-event", "go")
        assert code == 0 and "submitted via-api" in text
        assert cli("events", "post", "go") == (0, "ok: 1 runs queued\n")
        deadline = time.monotonic() + 20
        while "COMPLETED" not in cli("status", "via-api")[1]:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert (tmp_path / "out.jsonl").read_text().count("\n") == 50
        code, listing = cli("jobs")
        assert code == 0 and "via-api" in listing and "on_event" in listing
        assert cli("pause", "via-api")[0] == 0
        out = io.StringIO()
        assert main(["jobs", "--api", api, "--api-token", "wrong"], out=out) == 2
    finally:
        proc.terminate()
        proc.wait(timeout=10)
