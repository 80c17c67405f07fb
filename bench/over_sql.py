"""An OVER aggregate in streaming SQL: each bid with the average price of its
auction's last 11 bids (itself and the 10 before it, in event-time order), 200 ms
of allowed disorder.

The plain reference is the hand-written loop doing the same: bids held until the
watermark (200 ms behind the largest time seen) passes their time, then taken in
time order into a deque of each auction's last 11 prices.
"""

from __future__ import annotations

import heapq
from collections import deque
from pathlib import Path
from typing import Any

import orjson

from bench.common import main_for, run_sql

DELAY_MS = 200
FRAME = 11

SQL = """
SET 'parallelism' = '{parallelism}';
CREATE TABLE bids (auction BIGINT, price BIGINT, dateTime BIGINT,
                   WATERMARK FOR dateTime AS dateTime - INTERVAL '200' MILLISECOND)
WITH ('connector' = 'file', 'path' = '{inp}', 'format' = 'json');
CREATE SINK out_t (auction BIGINT) WITH ('connector' = 'file', 'path' = '{out}', 'format' = 'json');
INSERT INTO out_t
SELECT auction, price, dateTime,
       AVG(price) OVER (PARTITION BY auction ORDER BY dateTime
                        ROWS BETWEEN 10 PRECEDING AND CURRENT ROW) AS recent_avg
FROM bids;
"""


def run_plain(inp: Path, out: Path) -> int:
    loads, dumps = orjson.loads, orjson.dumps
    pending: dict[int, list[dict[str, Any]]] = {}  # time -> bids of that time
    times: list[int] = []  # a heap of the pending times
    frames: dict[int, deque[int]] = {}
    written = 0
    largest = -(2**63)
    with open(inp, "rb") as fin, open(out, "wb") as fout:
        write = fout.write

        def release(watermark: int) -> int:
            count = 0
            while times and times[0] <= watermark:
                for bid in pending.pop(heapq.heappop(times)):
                    auction = bid["auction"]
                    frame = frames.get(auction)
                    if frame is None:
                        frame = frames[auction] = deque(maxlen=FRAME)
                    frame.append(bid["price"])
                    row = {
                        "auction": auction,
                        "price": bid["price"],
                        "dateTime": bid["dateTime"],
                        "recent_avg": sum(frame) / len(frame),
                    }
                    write(dumps(row) + b"\n")
                    count += 1
            return count

        for line in fin:
            bid = loads(line)
            ts = bid["dateTime"]
            if ts <= largest - DELAY_MS - 1:  # behind the watermark
                continue  # late: none in the generated bids
            held = pending.get(ts)
            if held is None:
                pending[ts] = [bid]
                heapq.heappush(times, ts)
            else:
                held.append(bid)
            if ts > largest:
                largest = ts
                written += release(largest - DELAY_MS - 1)
        written += release(2**63)
    return written


def run_reflow(inp: Path, out: Path, parallelism: int = 1) -> int:
    return run_sql(SQL.format(inp=inp, out=out, parallelism=parallelism), "out_t")


if __name__ == "__main__":
    main_for(run_plain, run_reflow, imports=("reflow.table",))
