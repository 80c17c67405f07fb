"""A deterministic Nexmark-style bid generator, written as JSON lines.

Bids look like Nexmark's: auction, bidder, price (in cents, dollars), channel,
url, dateTime (epoch milliseconds, increasing with bounded disorder) and
extra padding. The same seed always gives the same file.
"""

from __future__ import annotations

import argparse
import os
import random
from pathlib import Path

import orjson

__all__ = ["ensure_bids", "generate_bids"]

CHANNELS = ("Google", "Facebook", "Baidu", "Apple")
BASE_TIME_MS = 1_700_000_000_000
# Events per second of event time, and the bound on disorder of timestamps.
EVENTS_PER_SECOND = 10_000
MAX_DISORDER_MS = 200


def generate_bids(path: Path, count: int, seed: int = 42) -> None:
    rng = random.Random(seed)
    dumps = orjson.dumps
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as out:
        lines = []
        for i in range(count):
            # Half the bids go to 100 hot auctions, the rest spread over 10,000.
            hot = rng.random() < 0.5
            auction = 1000 + (rng.randrange(100) if hot else rng.randrange(10_000))
            ts = BASE_TIME_MS + i * 1000 // EVENTS_PER_SECOND - rng.randrange(MAX_DISORDER_MS)
            bid = {
                "auction": auction,
                "bidder": 2000 + rng.randrange(50_000),
                "price": 100 + rng.randrange(1_000_000),
                "channel": CHANNELS[rng.randrange(len(CHANNELS))],
                "url": f"https://www.nexmark.com/item.htm?query={rng.randrange(100_000)}",
                "dateTime": ts,
                "extra": "x" * rng.randrange(8, 32),
            }
            lines.append(dumps(bid))
            if len(lines) >= 10_000:
                out.write(b"\n".join(lines) + b"\n")
                lines.clear()
        if lines:
            out.write(b"\n".join(lines) + b"\n")
    os.replace(tmp, path)


def ensure_bids(directory: Path, count: int, seed: int = 42) -> Path:
    """The bids file for ``count`` and ``seed``, generated once and reused."""
    path = directory / f"bids-{count}-{seed}.jsonl"
    if not path.exists():
        generate_bids(path, count, seed)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path", type=Path)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    generate_bids(args.path, args.count, args.seed)


if __name__ == "__main__":
    main()
