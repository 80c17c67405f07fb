"""Nexmark Q5 (hot items, simplified): bids per auction per event-time window.

Tumbling: 10 s windows; sliding (``bench.q5_sliding``): 60 s windows every 5 s.
Timestamps are the bids' ``dateTime``, watermarks 200 ms behind the largest
seen; a window's counts are written (JSON lines) when the watermark passes its
end, and the rest at end of input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from bench.common import main_for

SIZE_MS = 10_000
SLIDE_MS = 10_000
OUT_OF_ORDERNESS_MS = 200


def run_plain(inp: Path, out: Path, size: int = SIZE_MS, slide: int = SLIDE_MS) -> int:
    """The reference: a hand-written loop keeping counts per window end and auction."""
    loads, dumps = orjson.loads, orjson.dumps
    windows: dict[int, dict[int, int]] = {}
    max_ts = -(2**63)
    written = 0
    with open(inp, "rb") as fin, open(out, "wb") as fout:
        write = fout.write

        def flush(bound: int) -> int:
            count = 0
            for end in sorted(e for e in windows if e <= bound):
                for auction, n in windows.pop(end).items():
                    row = {
                        "key": auction,
                        "window_start": end - size,
                        "window_end": end,
                        "value": n,
                    }
                    write(dumps(row) + b"\n")
                    count += 1
            return count

        for line in fin:
            bid = loads(line)
            ts = bid["dateTime"]
            auction = bid["auction"]
            end = ts - ts % slide + slide
            while end - size <= ts:
                bucket = windows.get(end)
                if bucket is None:
                    bucket = windows[end] = {}
                bucket[auction] = bucket.get(auction, 0) + 1
                end += slide
            if ts > max_ts:
                max_ts = ts
                watermark = max_ts - OUT_OF_ORDERNESS_MS - 1
                if windows and min(windows) <= watermark + 1:
                    written += flush(watermark + 1)
        written += flush(2**63)
    return written


def run_reflow(
    inp: Path,
    out: Path,
    parallelism: int = 1,
    size: int = SIZE_MS,
    slide: int = SLIDE_MS,
    schema: dict[str, str] | None = None,
) -> int:
    from reflow import Connectors, Flow
    from reflow.operators import Windows
    from reflow.testing import run_job

    window = Windows.tumbling(size) if size == slide else Windows.sliding(size, slide)
    flow = Flow("nexmark-q5", parallelism=parallelism)
    typed = {} if schema is None else {"schema": schema}
    (
        flow.source(Connectors.file(path=str(inp), format="json", **typed), id="bids")
        .assign_timestamps("dateTime", max_out_of_orderness_ms=OUT_OF_ORDERNESS_MS)
        .key_by("auction")
        .window(window)
        .count(id="counts")
        .sink(Connectors.file(path=str(out), format="json"), id="out")
    )
    result = run_job(flow.to_job())
    if result.error:
        raise SystemExit(result.error)
    late: Any = result.metrics.step("counts").late
    if late:
        raise SystemExit(f"{late} late records")
    return result.records_in("out")


if __name__ == "__main__":
    main_for(run_plain, run_reflow)
