"""What every benchmark query shares: the per-process runner and its JSON report."""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["import_reflow", "main_for", "peak_rss_mb", "run_sql"]


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM), in MiB.

    Unlike ``ru_maxrss``, VmHWM starts afresh at exec, so a child does not
    inherit its parent's peak.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def import_reflow(*modules: str) -> None:
    """Import what a reflow run needs (and ``modules``), so that startup is timed on
    its own."""
    import importlib

    import reflow.connectors.file
    import reflow.testing  # noqa: F401

    for module in modules:
        importlib.import_module(module)


def main_for(
    run_plain: Callable[[Path, Path], int],
    run_reflow: Callable[[Path, Path, int], int],
    imports: tuple[str, ...] = (),
) -> None:
    """``python -m bench.QUERY --impl plain|reflow INPUT OUTPUT``: run once, print a JSON line.
    ``imports``: modules the reflow run imports besides the usual (timed as startup)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--impl", choices=["plain", "reflow"], required=True)
    parser.add_argument("--parallelism", type=int, default=1)
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)
    args = parser.parse_args()
    began = time.perf_counter()
    if args.impl == "reflow":
        import_reflow(*imports)
    started = time.perf_counter()
    cpu0 = time.process_time()
    if args.impl == "plain":
        written = run_plain(args.input, args.output)
    else:
        written = run_reflow(args.input, args.output, args.parallelism)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu0
    json.dump(
        {
            "impl": args.impl,
            "seconds": elapsed,
            "startup_seconds": started - began,
            "cpu_seconds": cpu,
            "written": written,
            "peak_rss_mb": peak_rss_mb(),
        },
        sys.stdout,
    )
    print()


def run_sql(script: str, sink: str) -> int:
    """Run a SQL script with reflow; the records its ``sink`` table received."""
    from reflow.table import sql_job
    from reflow.testing import run_job

    result = run_job(sql_job(script))
    if result.error:
        raise SystemExit(result.error)
    return result.records_in(sink)
