"""ClickHouse sink throughput: every bid inserted as a row, 10,000 rows per columnar
(Native) insert, beside the same inserts with clickhouse-driver alone.

``python -m bench.clickhouse_sink --impl reflow|plain INPUT OUTPUT`` starts Debian's
ClickHouse server (unpacked under .venv/clickhouse by scripts/clickhouse-server) on
loopback before the timed part and counts the table's rows after it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import orjson

from bench.common import main_for

BATCH = 10_000
COLUMNS = ("auction", "bidder", "price", "channel", "url", "dateTime", "extra")
ROOT = Path(__file__).resolve().parent.parent / ".venv" / "clickhouse"


@contextlib.contextmanager
def _server() -> Iterator[int]:
    from clickhouse_driver import Client

    logging.getLogger("clickhouse_driver").setLevel(logging.CRITICAL)  # refused while starting
    port = random.randrange(20_000, 32_000)
    with tempfile.TemporaryDirectory() as data:
        config = (ROOT / "etc/clickhouse-server/config.xml").read_text()
        config = config.replace("/var/log/clickhouse-server", f"{data}/log")
        config = config.replace("/var/lib/clickhouse", f"{data}/data")
        config = config.replace("<tcp_port>9000</tcp_port>", f"<tcp_port>{port}</tcp_port>")
        config = config.replace("<http_port>8123</http_port>", f"<http_port>{port + 1}</http_port>")
        config = config.replace(
            "<interserver_http_port>9009</interserver_http_port>",
            f"<interserver_http_port>{port + 2}</interserver_http_port>",
        )
        config = config.replace("<listen_host>::1</listen_host>", "")
        Path(data, "config.xml").write_text(config)
        Path(data, "users.xml").write_text((ROOT / "etc/clickhouse-server/users.xml").read_text())
        env = {**os.environ, "LD_LIBRARY_PATH": str(ROOT / "usr/lib/x86_64-linux-gnu")}
        proc = subprocess.Popen(
            [str(ROOT / "usr/sbin/clickhouse-server"), f"--config-file={data}/config.xml"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(400):
                try:
                    Client(host="127.0.0.1", port=port).execute("SELECT 1")
                    break
                except Exception:
                    time.sleep(0.05)
            yield port
        finally:
            proc.kill()
            proc.wait()


def _create(table: str) -> None:
    from clickhouse_driver import Client

    Client(host="127.0.0.1", port=PORT).execute(
        f"CREATE TABLE {table} (auction Int64, bidder Int64, price Int64, channel String, "
        "url String, dateTime Int64, extra String) ENGINE = MergeTree ORDER BY auction"
    )


def _count(table: str) -> int:
    from clickhouse_driver import Client

    return int(Client(host="127.0.0.1", port=PORT).execute(f"SELECT count() FROM {table}")[0][0])


PORT = 0  # set by __main__ once the server runs


def run_plain(inp: Path, out: Path) -> int:
    """The reference: parse each line, insert 10,000 rows at a time as columns."""
    from clickhouse_driver import Client

    _create("plain")
    client = Client(host="127.0.0.1", port=PORT)
    loads = orjson.loads
    head = f"INSERT INTO plain ({', '.join(COLUMNS)}) VALUES"

    def insert(rows: list[dict[str, object]]) -> None:
        client.execute(head, [[r[c] for r in rows] for c in COLUMNS], columnar=True)

    rows: list[dict[str, object]] = []
    with open(inp, "rb") as fin:
        for line in fin:
            rows.append(loads(line))
            if len(rows) == BATCH:
                insert(rows)
                rows = []
    if rows:
        insert(rows)
    client.disconnect()
    return _count("plain")


def run_reflow(inp: Path, out: Path, parallelism: int = 1) -> int:
    from reflow import Connectors, Job
    from reflow.testing import run_job

    _create("flow")
    job = (
        Job.builder()
        .name("clickhouse-sink-bench")
        .parallelism(parallelism)
        .batch_size(1_000)
        .source(Connectors.file(path=str(inp), format="json"), id="bids")
        .sink(
            Connectors.clickhouse(
                url=f"clickhouse://default@127.0.0.1:{PORT}", table="flow", batch_size=BATCH
            ),
            id="out",
        )
        .build()
    )
    result = run_job(job)
    if result.error:
        raise SystemExit(result.error)
    return _count("flow")


if __name__ == "__main__":
    with _server() as PORT:
        main_for(run_plain, run_reflow)
