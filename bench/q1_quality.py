"""Nexmark Q1 with five data-quality expectations on the bids (not_null, range,
in_set, regex, schema): what checking costs.

``python -m bench.q1_quality --impl reflow|plain INPUT OUTPUT`` runs one
implementation; ``--checks=0`` runs reflow's Q1 without the expectations, the
reference the quality bench compares with (``python -m bench.run --query
q1_quality``); ``--rules=single`` checks five rules of one field each instead
(``python -m bench.run --query q1_quality --quality-rules single``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from bench.common import main_for
from bench.nexmark import CHANNELS
from bench.q1 import convert, keep, run_plain


def expectations() -> tuple[object, ...]:
    from reflow.operators import quality as q

    if RULES == "single":  # five rules of one field each
        return (
            q.not_null("auction"),
            q.in_range("price", min=0, max=10_000_000),
            q.in_set("channel", CHANNELS),
            q.matches("url", r"https://www\.nexmark\.com/item\.htm\?query=\d+"),
            q.schema({"bidder": "int"}),
        )
    return (
        q.not_null("auction", "bidder", "price"),
        q.in_range("price", min=0, max=10_000_000),
        q.in_set("channel", CHANNELS),
        q.matches("url", r"https://www\.nexmark\.com/item\.htm\?query=\d+"),
        q.schema({"auction": "int", "bidder": "int", "price": "int", "dateTime": "int"}),
    )


def run_reflow(inp: Path, out: Path, parallelism: int = 1) -> int:
    from reflow import Connectors, Flow
    from reflow.testing import run_job

    flow = Flow("nexmark-q1-quality", parallelism=parallelism)
    bids = flow.source(Connectors.file(path=str(inp), format="json"), id="bids")
    if CHECKS:
        bids = bids.expect(*expectations(), id="quality")  # type: ignore[arg-type]
    bids.map(convert, id="to-euro").filter(keep, id="keep").sink(
        Connectors.file(path=str(out), format="json"), id="out"
    )
    result = run_job(flow.to_job())
    if result.error:
        raise SystemExit(result.error)
    if CHECKS:
        rules = result.metrics.step("quality").quality
        failed = {name: stats.failed for name, stats in rules.items() if stats.failed}
        if failed:
            raise SystemExit(f"the bids broke quality rules: {failed}")
    return result.records_in("out")


CHECKS = True
RULES = "five"

if __name__ == "__main__":
    if "--checks=0" in sys.argv:
        sys.argv.remove("--checks=0")
        CHECKS = False
    if "--rules=single" in sys.argv:
        sys.argv.remove("--rules=single")
        RULES = "single"
    main_for(run_plain, run_reflow)
