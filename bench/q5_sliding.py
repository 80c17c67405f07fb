"""Q5 with sliding windows: 60 s every 5 s (see bench/q5.py)."""

from __future__ import annotations

from pathlib import Path

from bench import q5
from bench.common import main_for

SIZE_MS = 60_000
SLIDE_MS = 5_000


def run_plain(inp: Path, out: Path) -> int:
    """The straightforward loop: each bid counted in each of its 12 windows."""
    return q5.run_plain(inp, out, SIZE_MS, SLIDE_MS)


def run_reflow(inp: Path, out: Path, parallelism: int = 1) -> int:
    return q5.run_reflow(inp, out, parallelism, SIZE_MS, SLIDE_MS)


if __name__ == "__main__":
    main_for(run_plain, run_reflow)
