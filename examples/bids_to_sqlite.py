"""The quickstart job in Python: JSON-lines bids -> parse, convert, filter -> SQLite.

The twin of bids_to_sqlite.yaml. Run it with ``reflow run examples/bids_to_sqlite.py``
(progress, summary, exit codes, --resume) or ``python examples/bids_to_sqlite.py``.
Bad records (a non-numeric price, a broken line) go to a dead-letter file.
"""

from __future__ import annotations

from transforms import to_euro

import reflow
from reflow import Connectors, Job, Operators

job = (
    Job.builder()
    .id("bids-to-sqlite-py")
    .name("bids-to-sqlite-py")
    .error_policy("dead-letter", dead_letter=Connectors.file(path="out/bids-py-dead-letter.jsonl"))
    .source(Connectors.file(path="examples/data/bids.jsonl", format="json"), id="bids")
    .transform(Operators.map(to_euro), id="to-euro")
    .transform(Operators.filter(lambda bid: bid["price_eur"] >= 100), id="big-bids")
    .sink(
        Connectors.sql(
            url="sqlite:///out/bids-py.db",
            table="big_bids",
            create_table=True,
            mode="upsert",
            key=["auction", "bidder", "date_time"],
            batchSize=500,
        ),
        id="warehouse",
    )
    .build()
)

if __name__ == "__main__":
    print(reflow.run(job))
