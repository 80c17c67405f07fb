"""Nexmark Q5 (``bench.q5``) in the Python API with a declared schema on the source:
the bids are decoded straight into typed rows of the two columns the query reads
(``Connectors.file(..., schema={"auction": "BIGINT", "dateTime": "BIGINT"})``),
and ``key_by("auction")`` / ``assign_timestamps("dateTime")`` read them by name.
"""

from __future__ import annotations

from pathlib import Path

from bench.common import main_for
from bench.q5 import run_plain
from bench.q5 import run_reflow as run_q5

SCHEMA = {"auction": "BIGINT", "dateTime": "BIGINT"}


def run_reflow(inp: Path, out: Path, parallelism: int = 1) -> int:
    return run_q5(inp, out, parallelism, schema=SCHEMA)


if __name__ == "__main__":
    main_for(run_plain, run_reflow)
