"""Run reflow's benchmarks beside their plain-Python loops and print the ratios.

    python -m bench.run [--events 1000000] [--repeat 3] [--query q1|q5|q5_sliding|all]
    python -m bench.run --query redis_sink     # connector sinks: need their server
    python -m bench.run --query kafka_sink     # starts its own broker (noida-db)
    python -m bench.run --query mongo_sink     # starts its own server (SecantusDB)
    python -m bench.run --query clickhouse_sink  # starts Debian's ClickHouse server
    python -m bench.run --query q1_quality  # Q1 with 5 quality expectations vs without

Each implementation runs in a fresh process (so peak RSS is its own); the
best of ``--repeat`` runs counts. The ratio is reflow's records/s over the
plain loop's: 1.0 means the framework costs nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.nexmark import ensure_bids

DATA_DIR = Path(__file__).parent / "data"
QUERIES = [
    "q1",
    "q5",
    "q5_typed",
    "q5_sliding",
    "q5_checkpointed",
    "q1_sql",
    "q5_sql",
    "over_sql",
    "q1_quality",
]
# Sink throughput against a real server on this machine: not part of "all".
CONNECTORS = [
    "redis_sink",
    "kafka_sink",
    "rabbitmq_sink",
    "nats_sink",
    "mqtt_sink",
    "http_sink",
    "s3_sink",
    "sql_sink",
    "mongo_sink",
    "clickhouse_sink",
]


def _run(module: str, impl: str, inp: Path, extra: list[str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.jsonl"
        proc = subprocess.run(
            [sys.executable, "-m", module, "--impl", impl, *extra, str(inp), str(out)],
            capture_output=True,
            text=True,
            check=False,
        )
    if proc.returncode != 0:
        raise SystemExit(f"{module} --impl {impl} failed:\n{proc.stderr}")
    figures: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return figures


def bench_query(
    module: str, inp: Path, events: int, repeat: int, extra: list[str]
) -> dict[str, dict[str, float]]:
    best: dict[str, dict[str, float]] = {}
    for _ in range(repeat):
        for impl in ("plain", "reflow"):
            figures = _run(module, impl, inp, extra if impl == "reflow" else [])
            if impl not in best or figures["seconds"] < best[impl]["seconds"]:
                best[impl] = figures
    plain, ours = best["plain"], best["reflow"]
    if plain["written"] != ours["written"]:
        raise SystemExit(
            f"outputs differ: plain wrote {plain['written']}, reflow {ours['written']}"
        )
    print(f"{module}: {events:,} events, best of {repeat}")
    for impl in ("plain", "reflow"):
        f = best[impl]
        print(
            f"  {impl:<7} {events / f['seconds']:>12,.0f} records/s  {f['seconds']:7.3f} s  "
            f"cpu {f['cpu_seconds']:7.3f} s  +startup {f['startup_seconds']:5.3f} s  "
            f"peak RSS {f['peak_rss_mb']:6.1f} MB  written {int(f['written']):,}"
        )
    ratio = plain["seconds"] / ours["seconds"]
    whole = (plain["seconds"] + plain["startup_seconds"]) / (
        ours["seconds"] + ours["startup_seconds"]
    )
    print(f"  ratio reflow/plain, records/s of the run:        {ratio:.3f}")
    print(f"  ratio reflow/plain, including imports (startup): {whole:.3f}")
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--query", choices=[*QUERIES, *CONNECTORS, "all"], default="all")
    parser.add_argument("--parallelism", type=int, default=1)
    parser.add_argument(
        "--quality-rules",
        choices=["five", "single"],
        default="five",
        help="q1_quality: the five rules over ten field checks, or five of one field each",
    )
    args = parser.parse_args()
    inp = ensure_bids(DATA_DIR, args.events)
    extra = ["--parallelism", str(args.parallelism)]
    queries = QUERIES if args.query == "all" else [args.query]
    rules = ["--rules=single"] if args.quality_rules == "single" else []
    results = {
        q: bench_query(
            f"bench.{q}",
            inp,
            args.events,
            args.repeat,
            extra + (rules if q == "q1_quality" else []),
        )
        for q in queries
    }
    if "q5" in results and "q5_sliding" in results:
        cost = results["q5_sliding"]["reflow"]["seconds"] / results["q5"]["reflow"]["seconds"]
        print(f"reflow sliding (60 s / 5 s) costs {cost:.2f}x its tumbling Q5")
    if "q5" in results and "q5_checkpointed" in results:
        kept = results["q5"]["reflow"]["seconds"] / results["q5_checkpointed"]["reflow"]["seconds"]
        print(f"reflow Q5 with 1 s checkpoints keeps {kept:.2f}x its throughput without")
    if "q1_quality" in results:
        kept_by_pair = paired_ratios(
            "bench.q1_quality", inp, args.repeat, [*extra, *rules], [*extra, *rules, "--checks=0"]
        )
        print(
            "reflow Q1 with 5 quality expectations keeps "
            f"{statistics.median(kept_by_pair):.2f}x its throughput without "
            f"(median of {len(kept_by_pair)} back-to-back pairs: "
            + ", ".join(f"{k:.2f}" for k in kept_by_pair)
            + ")"
        )


def paired_ratios(
    module: str, inp: Path, repeat: int, extra: list[str], baseline: list[str]
) -> list[float]:
    """reflow's run with ``baseline`` options over its run with ``extra``, measured
    back to back ``repeat`` times: a pair sees the machine in the same state, where
    best-of figures taken minutes apart see its drift."""
    ratios = []
    for _ in range(repeat):
        measured = _run(module, "reflow", inp, extra)["seconds"]
        reference = _run(module, "reflow", inp, baseline)["seconds"]
        ratios.append(reference / measured)
    return sorted(ratios)


if __name__ == "__main__":
    main()
