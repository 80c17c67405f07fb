"""Nexmark Q1 (currency conversion) with a filter: parse, price x 0.908, keep auction % 10 < 4.

``python -m bench.q1 --impl reflow|plain INPUT OUTPUT`` runs one implementation
and prints a JSON line of its figures (see bench/common.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from bench.common import main_for

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


if __name__ == "__main__":
    main_for(run_plain, run_reflow)
