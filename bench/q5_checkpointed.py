"""Q5 (bench/q5.py) with a checkpoint every 200 ms, to a temporary folder (1M bids
take about a second here: a 1 s interval ended the job before its first checkpoint).

The plain reference is Q5's plain loop, which has no checkpoints: the ratio of
this query's reflow run to ``bench.q5``'s reflow run is the checkpoint cost.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from bench import q5
from bench.common import main_for

CHECKPOINT_INTERVAL_MS = 200


def run_plain(inp: Path, out: Path) -> int:
    return q5.run_plain(inp, out)


def run_reflow(inp: Path, out: Path, parallelism: int = 1) -> int:
    from reflow import Connectors, Flow
    from reflow.graph.job import CheckpointConfig
    from reflow.operators import Windows
    from reflow.testing import run_job

    flow = Flow("nexmark-q5-checkpointed", parallelism=parallelism)
    (
        flow.source(Connectors.file(path=str(inp), format="json"), id="bids")
        .assign_timestamps("dateTime", max_out_of_orderness_ms=q5.OUT_OF_ORDERNESS_MS)
        .key_by("auction")
        .window(Windows.tumbling(q5.SIZE_MS))
        .count(id="counts")
        .sink(Connectors.file(path=str(out), format="json"), id="out")
    )
    job = flow.to_job(job_id="q5-checkpointed")
    with tempfile.TemporaryDirectory() as folder:
        job.config = replace(
            job.config, checkpoint=CheckpointConfig(folder, interval_ms=CHECKPOINT_INTERVAL_MS)
        )
        result = run_job(job)
        if result.error:
            raise SystemExit(result.error)
        checkpoints = result.checkpoints
        if checkpoints is None or checkpoints.completed == 0:
            raise SystemExit("no checkpoint completed")
        print(
            f"checkpoints: {checkpoints.completed} completed, {checkpoints.failed} failed, "
            f"last {checkpoints.last_duration_s * 1000:.1f} ms, {checkpoints.last_size_bytes} B",
            file=__import__("sys").stderr,
        )
    return result.records_in("out")


if __name__ == "__main__":
    main_for(run_plain, run_reflow)
