"""Nexmark Q1 (currency conversion) with a filter: parse, price x 0.908, keep auction % 10 < 4.

Run one implementation in this process and print a JSON line of its figures:
``python -m bench.q1 --impl reflow|plain INPUT OUTPUT``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import orjson

DOLLAR_TO_EURO = 0.908


def convert(bid: dict[str, Any]) -> dict[str, Any]:
    bid["price"] = bid["price"] * DOLLAR_TO_EURO
    return bid


def keep(bid: dict[str, Any]) -> bool:
    return bool(bid["auction"] % 10 < 4)


def run_plain(inp: Path, out: Path) -> int:
    """The reference: a hand-written loop with the same JSON library."""
    loads, dumps = orjson.loads, orjson.dumps
    written = 0
    with open(inp, "rb") as fin, open(out, "wb") as fout:
        write = fout.write
        for line in fin:
            bid = loads(line)
            bid["price"] = bid["price"] * DOLLAR_TO_EURO
            if bid["auction"] % 10 < 4:
                write(dumps(bid) + b"\n")
                written += 1
    return written


def import_reflow() -> None:
    """Import what the reflow run needs, so that startup is timed on its own."""
    import reflow.connectors.file
    import reflow.testing  # noqa: F401


def run_reflow(inp: Path, out: Path, parallelism: int = 1) -> int:
    from reflow import Connectors, Job, Operators
    from reflow.testing import run_job

    job = (
        Job.builder()
        .name("nexmark-q1")
        .parallelism(parallelism)
        .source(Connectors.file(path=str(inp), format="json"), id="bids")
        .transform(Operators.map(convert), id="to-euro")
        .transform(Operators.filter(keep), id="keep")
        .sink(Connectors.file(path=str(out), format="json"), id="out")
        .build()
    )
    result = run_job(job)
    if result.error:
        raise SystemExit(result.error)
    return result.records_in("out")


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--impl", choices=["plain", "reflow"], required=True)
    parser.add_argument("--parallelism", type=int, default=1)
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)
    args = parser.parse_args()
    began = time.perf_counter()
    if args.impl == "reflow":
        import_reflow()
    started = time.perf_counter()
    cpu0 = time.process_time()
    if args.impl == "plain":
        written = run_plain(args.input, args.output)
    else:
        written = run_reflow(args.input, args.output, args.parallelism)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu0
    rss_mb = peak_rss_mb()
    json.dump(
        {
            "impl": args.impl,
            "seconds": elapsed,
            "startup_seconds": started - began,
            "cpu_seconds": cpu,
            "written": written,
            "peak_rss_mb": rss_mb,
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
