"""A CPU-heavy job on the local and the Ray executor, at parallelism 1 and 2:
parse each bid, burn ~20 µs of CPU in a map (calibrated on the machine at
start), then a keyed exchange by auction into a per-auction count (Nexmark Q5's
tumbling 10 s windows), written as JSON lines.

    python -m bench.ray_cpu [--events 200000] [--repeat 2]

Ray binds to the host's network address unless it only sees loopback, so the
benchmark runs itself inside a network namespace of its own (``unshare -n``,
as root) with one local Ray instance for all runs. The local executor runs one
Python process, so its parallelism shares one core's worth of GIL; Ray runs one
process per subtask. It prints records/s of each configuration, the speed-up of
parallelism 2 over 1 on Ray, and the CPU cost of the keyed exchange's crossings
between actors (CPU-seconds per million records, over all processes, against the
same job fully chained on Ray).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.nexmark import ensure_bids

DATA_DIR = Path(__file__).parent / "data"
MAP_MICROSECONDS = 20.0


class Burn:
    """About ``MAP_MICROSECONDS`` of pure-Python work per record (``loops`` is
    calibrated on the machine that runs the benchmark, see ``calibrate``)."""

    def __init__(self, loops: int) -> None:
        self.loops = loops

    def __call__(self, bid: dict[str, Any]) -> dict[str, Any]:
        acc = bid["price"]
        for i in range(self.loops):
            acc = (acc * 31 + i) % 1_000_003
        bid["check"] = acc
        return bid


def calibrate(target_us: float = MAP_MICROSECONDS) -> tuple[int, float]:
    """Loops for ``Burn`` to cost ``target_us`` per call here; (loops, measured µs)."""
    bid = {"price": 12_345}

    def cost(loops: int) -> float:
        burn = Burn(loops)
        best = float("inf")
        for _ in range(3):
            began = time.perf_counter()
            for _ in range(5_000):
                burn(bid)
            best = min(best, (time.perf_counter() - began) / 5_000 * 1e6)
        return best

    loops = 500
    for _ in range(3):  # the cost is not quite linear in the loops: converge
        loops = max(1, round(loops * target_us / cost(loops)))
    return loops, cost(loops)


def _job(inp: Path, out: Path, parallelism: int, exchange: bool, loops: int) -> Any:
    from reflow import Connectors, Flow, Operators
    from reflow.operators import Windows

    flow = Flow(f"cpu-{parallelism}", parallelism=parallelism)
    stream = flow.source(Connectors.file(path=str(inp), format="json"), id="bids").map(
        Burn(loops), id="heavy"
    )
    if exchange:
        stream = (
            stream.assign_timestamps("dateTime", max_out_of_orderness_ms=200)
            .key_by("auction")
            .window(Windows.tumbling(10_000))
            .count(id="counts")
        )
    else:
        stream = stream.transform(Operators.filter(lambda b: b["auction"] >= 0))
    stream.sink(Connectors.file(path=str(out), format="json"), id="out")
    return flow.to_job()


def _run(
    executor: str, inp: Path, parallelism: int, loops: int, exchange: bool = True
) -> dict[str, float]:
    from reflow.runtime.ray import RayExecutor
    from reflow.testing import run_job

    cpu = start = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        job = _job(inp, Path(tmp) / "out.jsonl", parallelism, exchange, loops)
        began = time.perf_counter()
        if executor == "ray":
            ray_executor = RayExecutor()
            result = asyncio.run(ray_executor.execute(job))
            cpu = ray_executor.last_cpu_seconds
            start = ray_executor.last_start_seconds
        else:
            cpu0 = time.process_time()
            result = run_job(job)
            cpu = time.process_time() - cpu0
        seconds = time.perf_counter() - began
    if result.error:
        raise SystemExit(f"{executor} p={parallelism}: {result.error}")
    return {"seconds": seconds, "written": result.records_in("out"), "cpu": cpu, "start": start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    if os.environ.get("REFLOW_BENCH_NETNS") != "1":
        if shutil.which("unshare") is None or os.geteuid() != 0:
            raise SystemExit("bench.ray_cpu needs root and unshare (a network namespace for Ray)")
        command = f"ip link set lo up && exec {sys.executable} -m bench.ray_cpu " + " ".join(
            sys.argv[1:]
        )
        env = {**os.environ, "REFLOW_BENCH_NETNS": "1", "RAY_USAGE_STATS_ENABLED": "0"}
        raise SystemExit(subprocess.call(["unshare", "-n", "sh", "-c", command], env=env))

    import ray

    inp = ensure_bids(DATA_DIR, args.events)
    loops, map_us = calibrate()
    ray.init(include_dashboard=False, log_to_driver=False)
    best: dict[str, dict[str, float]] = {}
    for _ in range(args.repeat):
        for executor in ("local", "ray"):
            for parallelism in (1, 2):
                name = f"{executor} p={parallelism}"
                figures = _run(executor, inp, parallelism, loops)
                if name not in best or figures["seconds"] < best[name]["seconds"]:
                    best[name] = figures
    written = {f["written"] for f in best.values()}
    if len(written) != 1:
        raise SystemExit(f"outputs differ: {best}")
    print(
        f"bench.ray_cpu: {args.events:,} bids, map of {map_us:.1f} µs ({loops} loops), "
        f"keyed count; best of {args.repeat}"
    )
    for name, figures in best.items():
        rate = args.events / figures["seconds"]
        print(
            f"  {name:<9} {rate:>10,.0f} records/s  {figures['seconds']:7.3f} s  "
            f"cpu {figures['cpu']:7.2f} s"
            + (f"  (actors started in {figures['start']:.2f} s)" if figures["start"] else "")
        )
    speedup = best["ray p=1"]["seconds"] / best["ray p=2"]["seconds"]
    versus_local = best["local p=2"]["seconds"] / best["ray p=2"]["seconds"]
    print(f"  ray p=2 vs ray p=1: {speedup:.2f}x;  ray p=2 vs local p=2: {versus_local:.2f}x")

    # The crossing cost: the actors' CPU with the keyed exchange vs the same job
    # fully chained (no record leaves its actor), at parallelism 2.
    crossing = _run("ray", inp, 2, loops, True)["cpu"]
    chained = _run("ray", inp, 2, loops, False)["cpu"]
    per_million = (crossing - chained) / args.events * 1_000_000
    print(
        f"  actors' CPU at p=2: {crossing:.2f} s with the keyed exchange, {chained:.2f} s "
        f"chained; crossing cost ~{per_million:.2f} CPU-s per million records"
    )
    ray.shutdown()


if __name__ == "__main__":
    main()
