"""Typed rows (a source's declared schema) reach every sink: sinks that encode them
themselves (JSON lines, JSON messages) take them as they are, the others are
given the dict of each row's columns — CSV headers, Parquet columns, SQL
columns and key templates read the columns, nothing is written as a repr."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from reflow import Connectors, Flow, JobStatus
from reflow.connectors.typed import row_type
from reflow.testing import TestingSink, run_job

SCHEMA = {"id": "BIGINT", "amount": "DOUBLE", "country": "VARCHAR"}
RECORDS: list[dict[str, Any]] = [
    {"id": 1, "amount": 5.5, "country": "DE"},
    {"id": 2, "amount": -1.0, "country": None},
    {"id": 3, "amount": 7.0, "country": "FR"},
]


def _run(tmp_path: Path, sink: Any) -> None:
    source = tmp_path / "in.jsonl"
    # a field the schema does not name is not a column
    source.write_text("".join(json.dumps({**r, "extra": "x"}) + "\n" for r in RECORDS))
    flow = Flow("typed-sink")
    flow.source(Connectors.file(path=str(source), format="json", schema=SCHEMA)).sink(
        sink, id="out"
    )
    result = run_job(flow.to_job())
    assert result.status is JobStatus.COMPLETED, result.error
    assert result.records_in("out") == len(RECORDS)


def test_csv_takes_its_header_from_the_columns(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    _run(tmp_path, Connectors.file(path=str(out), format="csv"))
    assert out.read_text().splitlines() == [
        "id,amount,country",
        "1,5.5,DE",
        "2,-1.0,",
        "3,7.0,FR",
    ]


def test_parquet_writes_a_column_per_schema_column(tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    _run(tmp_path, Connectors.file(path=str(out), format="parquet"))
    assert pq.read_table(out).to_pylist() == RECORDS


def test_text_and_json_lines(tmp_path: Path) -> None:
    text, lines = tmp_path / "out.txt", tmp_path / "out.jsonl"
    _run(tmp_path, Connectors.file(path=str(text), format="text"))
    assert text.read_text().splitlines() == [str(r) for r in RECORDS]
    _run(tmp_path, Connectors.file(path=str(lines), format="json"))
    assert [json.loads(line) for line in lines.read_text().splitlines()] == RECORDS


def test_sql_inserts_the_columns(tmp_path: Path) -> None:
    db = tmp_path / "out.db"
    _run(tmp_path, Connectors.sql(url=f"sqlite:///{db}", table="t", create_table=True))
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id, amount, country FROM t ORDER BY id").fetchall()
    assert rows == [tuple(r.values()) for r in RECORDS]


def test_a_sink_in_python_gets_dicts(tmp_path: Path) -> None:
    sink = TestingSink()
    _run(tmp_path, sink)
    assert sink.records == RECORDS


def test_redis_keys_read_the_columns(tmp_path: Path, redis_prefix: str) -> None:
    """Before, the key template of a typed row was left as written: every row
    overwrote one key."""
    import redis

    key = redis_prefix + "{id}"
    _run(tmp_path, Connectors.redis(url="redis://127.0.0.1:6379/0", key=key))
    client = redis.Redis(host="127.0.0.1", port=6379)
    try:
        values = {i: client.get(f"{redis_prefix}{i}") for i in (1, 2, 3)}
    finally:
        client.close()
    assert {i: json.loads(v) for i, v in values.items() if v} == {r["id"]: r for r in RECORDS}


@pytest.mark.parametrize("mixed", [False, True])
def test_rows_as_dicts_leaves_other_records_as_they_are(mixed: bool) -> None:
    from reflow.connectors.base import rows_as_dicts

    kind = row_type(SCHEMA)
    rows: list[Any] = [kind(**r) for r in RECORDS]
    if mixed:
        rows.insert(0, {"id": 0})  # a dict first, then typed rows (a union's output)
    out = rows_as_dicts(rows)
    assert out == ([{"id": 0}] if mixed else []) + RECORDS
    plain = [{"id": 1}, "text", 3]
    assert rows_as_dicts(plain) is plain


# -- a typed row reads like a dict of its columns ------------------------------------------


def test_a_typed_row_reads_like_a_dict_of_its_columns() -> None:
    import pickle

    kind = row_type(SCHEMA)
    row: Any = kind(id=1, amount=2.5, country=None)
    assert {**row} == dict(row) == {"id": 1, "amount": 2.5, "country": None}
    assert list(row) == list(row.keys()) == ["id", "amount", "country"]
    assert list(row.values()) == [1, 2.5, None] and len(row) == 3
    assert list(row.items()) == [("id", 1), ("amount", 2.5), ("country", None)]
    assert "country" in row and "extra" not in row and 0 not in row
    assert row["amount"] == 2.5 and row.get("extra", "none") == "none"
    # only columns are items: the class's methods and attributes are not
    for name in ("keys", "get", "__class__", "__reflow_row__"):
        assert row.get(name) is None and name not in row
        with pytest.raises(KeyError):
            row[name]
    assert pickle.loads(pickle.dumps(row)) == row


def test_functions_written_for_dicts_take_typed_rows(tmp_path: Path) -> None:
    """A source given a schema for speed keeps working with the dict idioms of
    the job's functions."""
    sink = TestingSink()
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    flow = Flow("dict-idioms")
    (
        flow.source(Connectors.file(path=str(source), format="json", schema=SCHEMA))
        .filter(lambda r: "country" in r and r["country"] is not None)
        .map(lambda r: {**r, "tax": r["amount"] * 0.2})
        .sink(sink)
    )
    assert run_job(flow.to_job()).status is JobStatus.COMPLETED
    assert sink.records == [
        {**r, "tax": r["amount"] * 0.2} for r in RECORDS if r["country"] is not None
    ]
