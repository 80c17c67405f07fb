"""The file connector: formats, globs, parallel byte-range reads, rolling sinks, bad input."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from reflow import (
    ConnectorConfigError,
    Connectors,
    ErrorMode,
    ErrorPolicy,
    Flow,
    Job,
    JobStatus,
    Operators,
)
from reflow.connectors.file.reader import plan_splits
from reflow.errors import GraphValidationError
from reflow.testing import TestingSink, TestingSource, run_job

ROWS = [{"id": i, "name": f"n{i}", "price": i * 1.5, "ok": i % 2 == 0} for i in range(3_000)]


def _copy(
    source: object, sink: object, parallelism: int = 1, policy: ErrorPolicy | None = None
) -> Any:
    builder = Job.builder().parallelism(parallelism).source(source).sink(sink)
    if policy is not None:
        builder = builder.error_policy(policy)
    result = run_job(builder.build())
    assert result.status is JobStatus.COMPLETED, result.error
    return result


@pytest.mark.parametrize("fmt", ["json", "csv", "parquet"])
def test_round_trip(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"rows.{fmt}"
    _copy(TestingSource(ROWS), Connectors.file(path=str(path), format=fmt))
    sink = TestingSink()
    types = {"id": "int", "price": "float", "ok": "bool"} if fmt == "csv" else None
    options = {"types": types} if types else {}
    _copy(Connectors.file(path=str(path), **options), sink)
    assert sink.records == ROWS


def test_text_lines(tmp_path: Path) -> None:
    path = tmp_path / "lines.txt"
    path.write_text("alpha\nbeta\r\n\ngamma")
    sink = TestingSink()
    _copy(Connectors.file(path=str(path)), sink)
    assert sink.records == ["alpha", "beta", "", "gamma"]


@pytest.mark.parametrize("parallelism", [2, 3, 7])
def test_one_file_read_by_several_readers_gives_every_line_once(
    tmp_path: Path, parallelism: int
) -> None:
    path = tmp_path / "big.jsonl"
    rows = [{"id": i, "pad": "x" * (i % 50)} for i in range(40_000)]
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    assert len(plan_splits([str(path)], parallelism, True)) == parallelism
    sink = TestingSink()
    _copy(Connectors.file(path=str(path)), sink, parallelism=parallelism)
    assert sorted(r["id"] for r in sink.records) == list(range(40_000))


def test_glob_and_folder(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"part-{i}.jsonl").write_bytes(orjson.dumps({"file": i}) + b"\n")
    (tmp_path / "notes.txt").write_text("not json")
    sink = TestingSink()
    _copy(Connectors.file(path=str(tmp_path / "part-*.jsonl")), sink)
    assert sink.records == [{"file": 0}, {"file": 1}, {"file": 2}]
    folder = tmp_path / "only"
    folder.mkdir()
    (folder / "a.jsonl").write_bytes(b'{"a":1}\n')
    sink = TestingSink()
    _copy(Connectors.file(path=str(folder), format="json"), sink)
    assert sink.records == [{"a": 1}]


def test_rolling_files_by_record_count(tmp_path: Path) -> None:
    target = tmp_path / "out" / "rows.jsonl"
    _copy(TestingSource(range(2_500)), Connectors.file(path=str(target), rolling_max_records=1_000))
    files = sorted(os.listdir(tmp_path / "out"))
    assert files == ["rows-0.jsonl", "rows-1.jsonl", "rows-2.jsonl"]
    counts = [len((tmp_path / "out" / f).read_text().splitlines()) for f in files]
    assert counts == [1_000, 1_000, 500]


def test_date_template_and_subtasks(tmp_path: Path) -> None:
    from datetime import datetime

    template = str(tmp_path / "daily-{date}.csv")
    _copy(TestingSource(ROWS[:100]), Connectors.file(path=template), parallelism=2)
    today = datetime.now().strftime("%Y-%m-%d")
    names = sorted(os.listdir(tmp_path))
    assert names == [f"daily-{today}-0.csv", f"daily-{today}-1.csv"]
    total = 0
    for name in names:
        with open(tmp_path / name) as f:
            rows = list(csv.DictReader(f))
        total += len(rows)
        assert list(rows[0]) == ["id", "name", "price", "ok"]
    assert total == 100


def test_malformed_lines_go_to_the_dead_letter_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": \n\n{"a": 3}\nnot json\n')
    sink, dead = TestingSink(), TestingSink()
    result = _copy(
        Connectors.file(path=str(path)),
        sink,
        policy=ErrorPolicy(ErrorMode.DEAD_LETTER, dead_letter=dead),
    )
    assert sink.records == [{"a": 1}, {"a": 3}]
    assert [d["record"] for d in dead.records] == ['{"a": \n', "not json\n"]
    assert f"{path}:2: invalid JSON" in dead.records[0]["error"]
    assert f"{path}:5: invalid JSON" in dead.records[1]["error"]
    assert result.metrics.step("source").rejected == 2


def test_csv_type_errors_are_rejected_with_the_line(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("id,price\n1,2.5\nx,3\n3,4\n4\n")
    sink, dead = TestingSink(), TestingSink()
    _copy(
        Connectors.file(path=str(path), types={"id": "int", "price": "float"}),
        sink,
        policy=ErrorPolicy(ErrorMode.DEAD_LETTER, dead_letter=dead),
    )
    assert sink.records == [{"id": 1, "price": 2.5}, {"id": 3, "price": 4.0}]
    assert "in.csv:3: column 'id'" in dead.records[0]["error"]
    assert "in.csv:5: expected 2 fields, got 1" in dead.records[1]["error"]


def test_csv_lines_not_valid_in_the_encoding_are_rejected_with_the_line(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(b"id,name\n1,caf\xc3\xa9\n2,caf\xe9\n3,ok\n" + b"4,x\n" * 3000)
    sink, dead = TestingSink(), TestingSink()
    _copy(
        Connectors.file(path=str(path), types={"id": "int"}),
        sink,
        policy=ErrorPolicy(ErrorMode.DEAD_LETTER, dead_letter=dead),
    )
    assert sink.records[:2] == [{"id": 1, "name": "caf\xe9"}, {"id": 3, "name": "ok"}]
    assert len(sink.records) == 2 + 3000  # every other line read
    assert len(dead.records) == 1
    assert "in.csv:3: byte 0xe9 is not utf-8 text" in dead.records[0]["error"]
    assert dead.records[0]["record"] == ["2", "caf\\xe9"]  # the byte shown, escaped
    # a header that is not text: the job fails, saying which file and how to fix it
    bad_header = tmp_path / "head.csv"
    bad_header.write_bytes(b"id,caf\xe9\n1,2\n")
    job = Job.builder().source(Connectors.file(path=str(bad_header))).sink(TestingSink()).build()
    result = run_job(job)
    assert result.status is JobStatus.FAILED
    assert "the header of" in (result.error or "") and "set the source's 'encoding'" in (
        result.error or ""
    )
    # read as latin-1 instead, every line is text
    sink = TestingSink()
    _copy(Connectors.file(path=str(path), encoding="latin-1", types={"id": "int"}), sink)
    assert sink.records[1] == {"id": 2, "name": "caf\xe9"}


def test_missing_file_fails_before_reading(tmp_path: Path) -> None:
    job = (
        Job.builder()
        .source(Connectors.file(path=str(tmp_path / "nope.jsonl")))
        .sink(TestingSink())
        .build()
    )
    result = run_job(job)
    assert result.status is JobStatus.FAILED
    assert "no file matches" in (result.error or "")


def test_options_are_validated_with_the_fix() -> None:
    builder = Job.builder().source(Connectors.file(path="data.xyz")).sink(TestingSink())
    with pytest.raises(ConnectorConfigError, match="set format to one of json, csv, text, parquet"):
        builder.build()  # refused where the job is built, before it runs
    with pytest.raises(
        ConnectorConfigError,
        match=r"unknown source or sink option 'rolling_max_record'; did you mean 'rolling_max_records'",
    ):
        Connectors.file(path="a.jsonl", rolling_max_record=5)  # refused where it is written


def test_records_that_cannot_be_written_are_rejected(tmp_path: Path) -> None:
    dead = TestingSink()
    path = tmp_path / "out.jsonl"
    _copy(
        TestingSource([{"a": 1}, {"a": object()}, {"a": 3}]),
        Connectors.file(path=str(path)),
        policy=ErrorPolicy(ErrorMode.DEAD_LETTER, dead_letter=dead),
    )
    assert path.read_text().splitlines() == ['{"a":1}', '{"a":3}']
    assert len(dead.records) == 1


@pytest.mark.parametrize(
    ("fmt", "encoding", "records", "written"),
    [
        # a lone surrogate has no UTF-8 form; latin-1 has no euro sign
        ("text", "utf-8", ["one", "tw\ud800o", "three"], "one\nthree\n"),
        ("text", "latin-1", ["caf\xe9", "5 \u20ac", "ok"], "caf\xe9\nok\n"),
        (
            "csv",
            "utf-8",
            [{"a": 1, "s": "ok"}, {"a": 2, "s": "x\ud800"}, {"a": 3, "s": "fine"}],
            "a,s\n1,ok\n3,fine\n",
        ),
        (
            "csv",
            "latin-1",
            [{"a": 1, "s": "\u20ac"}, {"a": 2, "s": "\xe9"}, 7, {"a": 4, "s": "x"}],
            "a,s\n2,\xe9\n4,x\n",
        ),
    ],
)
def test_text_and_csv_records_that_cannot_be_encoded_are_rejected_alone(
    tmp_path: Path, fmt: str, encoding: str, records: list[Any], written: str
) -> None:
    dead = TestingSink()
    path = tmp_path / f"out.{fmt}"
    result = _copy(
        TestingSource(records),
        Connectors.file(path=str(path), format=fmt, encoding=encoding),
        policy=ErrorPolicy(ErrorMode.DEAD_LETTER, dead_letter=dead),
    )
    assert result.status is JobStatus.COMPLETED, result.error
    assert path.read_bytes().decode(encoding) == written
    kept = written.count("\n") - (1 if fmt == "csv" else 0)
    assert len(dead.records) == len(records) - kept  # every record written or dead-lettered


def test_parquet_records_that_cannot_be_written_are_rejected_alone(tmp_path: Path) -> None:
    """The first row group's schema is inferred from the rows that convert (a column
    null so far takes the type it gets next, ints widen to floats); a later row group
    keeps the file's schema. Every record is written or dead-lettered."""
    import pyarrow.parquet as pq

    first = [
        {"a": 1, "b": None, "c": 1},
        {"a": "x", "b": "s", "c": 2},  # a: text where the rows before hold ints
        {"a": 3, "b": "t", "c": 2.5},
        {"a": 4, "b": "x\ud800", "c": 3},  # a lone surrogate
        {"a": object(), "b": "u", "c": 4},  # nothing Arrow holds
    ]
    later = [{"a": 6, "b": "v", "c": 5.0}, {"a": 7, "b": 8, "c": 6.0}, {"a": 9, "b": "w", "c": 7.0}]
    dead = TestingSink()
    path = tmp_path / "out.parquet"
    _copy(
        TestingSource(first + later),
        Connectors.file(path=str(path), parquet_row_group_size=5),
        policy=ErrorPolicy(ErrorMode.DEAD_LETTER, dead_letter=dead),
    )
    assert pq.read_table(path).to_pylist() == [
        {"a": 1, "b": None, "c": 1.0},
        {"a": 3, "b": "t", "c": 2.5},
        {"a": 6, "b": "v", "c": 5.0},
        {"a": 9, "b": "w", "c": 7.0},
    ]
    assert sorted(str(r["record"]["c"]) for r in dead.records) == ["2", "3", "4", "6.0"]


def test_append_mode(tmp_path: Path) -> None:
    path = tmp_path / "log.txt"
    for word in ("one", "two"):
        _copy(TestingSource([word]), Connectors.file(path=str(path), mode="append"))
    assert path.read_text() == "one\ntwo\n"


def test_map_between_file_source_and_sink(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"".join(orjson.dumps({"v": i}) + b"\n" for i in range(10)))
    out = tmp_path / "out.jsonl"
    job = (
        Job.builder()
        .source(Connectors.file(path=str(src)))
        .transform(Operators.map(lambda r: {"v": r["v"] * 2}))
        .sink(Connectors.file(path=str(out)))
        .build()
    )
    run_job(job)
    assert [orjson.loads(line)["v"] for line in out.read_bytes().splitlines()] == [
        i * 2 for i in range(10)
    ]


def test_a_quiet_stream_reaches_the_file_within_the_flush_interval(tmp_path: Path) -> None:
    import asyncio

    from reflow.runtime import LocalExecutor

    path = tmp_path / "live.jsonl"
    job = (
        Job.builder()
        .source(TestingSource([{"n": 1}, {"n": 2}], bounded=False))
        .sink(Connectors.file(path=str(path), flush_interval="50ms"))
        .build()
    )

    async def scenario() -> str:
        with LocalExecutor() as executor:
            task = asyncio.create_task(executor.execute(job))
            await asyncio.sleep(0.4)
            seen = path.read_text()
            await executor.stop(job.job_id)
            await task
            return seen

    assert asyncio.run(scenario()) == '{"n":1}\n{"n":2}\n'


@pytest.mark.parametrize("fmt", ["json", "csv", "parquet"])
def test_100k_records_round_trip(tmp_path: Path, fmt: str) -> None:
    records = [{"id": i, "name": f"n{i}", "price": i * 0.25} for i in range(100_000)]
    path = str(tmp_path / f"out-{{subtask}}.{fmt}")
    sink = Connectors.file(path=path, rolling_max_records=40_000, parallelism=2)
    result = run_job(Job.builder().source(TestingSource(records)).sink(sink).build())
    assert result.status is JobStatus.COMPLETED, result.error
    out = TestingSink()
    options = {"types": {"id": "int", "price": "float"}} if fmt == "csv" else {}
    source = Connectors.file(path=str(tmp_path / f"*.{fmt}"), parallelism=3, **options)
    result = run_job(Job.builder().source(source).sink(out).build())
    assert result.status is JobStatus.COMPLETED, result.error
    assert sorted(out.records, key=lambda r: r["id"]) == records


def test_typed_rows_are_encoded_with_their_odd_values_and_bad_ones_rejected() -> None:
    from decimal import Decimal

    from reflow.connectors.file.formats import encode_json_lines
    from reflow.connectors.typed import row_type

    kind = row_type({"a": "ANY", "b": "ANY"})
    rejected: list[Any] = []
    good = encode_json_lines(
        [kind(1, Decimal("1.5")), kind(None, {2}), {"a": 3, "b": None}],
        lambda r, e: rejected.append(r),
    )
    assert good.splitlines() == [b'{"a":1,"b":1.5}', b'{"a":null,"b":[2]}', b'{"a":3,"b":null}']
    bad = kind(2, object())
    out = encode_json_lines([kind(1, 2), bad], lambda r, e: rejected.append(r))
    assert out == b'{"a":1,"b":2}\n'
    assert rejected == [bad]


def _typed_rows_read(
    path: Path,
    splits: list[Any],
    batch: int,
    stop_after: int | None = None,
    position: Any = None,
    rejected: list[tuple[Any, BaseException]] | None = None,
) -> tuple[list[Any], Any]:
    """What a TypedLineReader returns (and its position), stopped after some batches."""
    import asyncio

    from reflow.connectors.base import ConnectorContext
    from reflow.connectors.file.reader import TypedLineReader
    from reflow.connectors.typed import row_type

    kind = row_type({"id": "BIGINT", "name": "VARCHAR"})
    sink = rejected if rejected is not None else []
    ctx = ConnectorContext("src", batch_size=batch, reject=lambda r, e: sink.append((r, e)))
    reader = TypedLineReader(splits, ctx, kind)

    async def read() -> tuple[list[Any], Any]:
        if position is not None:
            reader.restore(position)
        rows: list[Any] = []
        batches = 0
        while stop_after is None or batches < stop_after:
            got = await reader.read_batch()
            if got is None:
                break
            rows += [(r.id, r.name) for r in got]
            batches += 1
        snapshot = reader.snapshot()
        await reader.close()
        return rows, snapshot

    return asyncio.run(read())


def test_typed_reader_decodes_whole_chunks_splits_and_resumes_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reflow.connectors.file import reader as file_reader

    monkeypatch.setattr(file_reader, "READ_CHUNK_BYTES", 1000)  # many chunks, cut mid-line
    path = tmp_path / "rows.jsonl"
    rows = [(i, "n" * (i % 13)) for i in range(2_000)]
    body = b"".join(orjson.dumps({"id": i, "name": n}) + b"\n" for i, n in rows)
    path.write_bytes(body[:-1])  # the last line has no line end
    whole = [file_reader.FileSplit(str(path))]
    for batch in (1, 7, 100, 5_000):
        assert _typed_rows_read(path, whole, batch)[0] == rows
    # Three readers of byte ranges: every row once.
    splits = file_reader.plan_splits([str(path)], 3, True)
    parts = [_typed_rows_read(path, [s], 50)[0] for s in splits]
    assert sorted(row for part in parts for row in part) == rows
    # Stopped after 9 batches, resumed from the position: the rest, nothing twice.
    head, position = _typed_rows_read(path, whole, 37, stop_after=9)
    rest, _ = _typed_rows_read(path, whole, 37, position=position)
    assert head + rest == rows


def test_lines_longer_than_a_chunk_are_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line that spans several chunks is carried from chunk to chunk until its end."""
    from reflow.connectors.file import reader as file_reader

    monkeypatch.setattr(file_reader, "READ_CHUNK_BYTES", 1000)
    path = tmp_path / "rows.jsonl"
    rows = [(i, "n" * (3_500 if i % 5 == 2 else i)) for i in range(40)]
    path.write_bytes(b"".join(orjson.dumps({"id": i, "name": n}) + b"\n" for i, n in rows))
    for batch in (1, 3, 100):
        assert _typed_rows_read(path, [file_reader.FileSplit(str(path))], batch)[0] == rows


def test_typed_reader_rejects_a_bad_line_with_its_line_number(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reflow.connectors.file import reader as file_reader

    monkeypatch.setattr(file_reader, "READ_CHUNK_BYTES", 1000)
    path = tmp_path / "rows.jsonl"
    lines = [orjson.dumps({"id": i, "name": "x"}) for i in range(500)]
    lines[333] = b'{"id": "three", "name": "x"}'
    lines[401] = b"{not json"
    path.write_bytes(b"\n".join(lines) + b"\n")
    rejected: list[tuple[Any, BaseException]] = []
    got, _ = _typed_rows_read(path, [file_reader.FileSplit(str(path))], 20, rejected=rejected)
    assert [i for i, _ in got] == [i for i in range(500) if i not in (333, 401)]
    assert [r for r, _ in rejected] == [lines[333] + b"\n", lines[401] + b"\n"]
    assert f"{path}:334: does not fit the schema" in str(rejected[0][1])
    assert f"{path}:402: invalid JSON" in str(rejected[1][1])


@pytest.mark.parametrize("parallelism", [1, 2])
def test_typed_rows_from_a_declared_schema_work_with_field_names_in_the_python_api(
    tmp_path: Path, parallelism: int
) -> None:
    """A Python-API job reads the rows a ``schema`` decodes by field name (key_by,
    assign_timestamps, map): same windows as the same job on dict records."""
    from reflow import Flow
    from reflow.operators import Windows

    path = tmp_path / "bids.jsonl"
    bids = [
        {"auction": i % 7, "price": i, "dateTime": 1_000 + i * 37, "x": "y"} for i in range(3_000)
    ]
    path.write_bytes(b"".join(orjson.dumps(b) + b"\n" for b in bids))

    def windows(schema: dict[str, str] | None) -> list[Any]:
        flow = Flow("typed", parallelism=parallelism)
        sink = TestingSink()
        typed = {} if schema is None else {"schema": schema}
        (
            flow.source(Connectors.file(path=str(path), format="json", **typed))
            .assign_timestamps("dateTime", max_out_of_orderness_ms=0)
            .key_by("auction")
            .window(Windows.tumbling(10_000))
            .count()
            .sink(sink)
        )
        assert run_job(flow.to_job()).status is JobStatus.COMPLETED
        return sorted(sink.records, key=lambda r: (r["window_start"], r["key"]))

    typed_rows = windows({"auction": "BIGINT", "dateTime": "BIGINT"})
    assert typed_rows == windows(None)
    assert sum(r["value"] for r in typed_rows) == 3_000


def test_a_typed_row_answers_by_name_and_refuses_other_names() -> None:
    from reflow.connectors.typed import row_type

    row: Any = row_type({"a": "BIGINT", "b": "VARCHAR"})(1, "x")
    assert (row["a"], row["b"], row.get("c", 0)) == (1, "x", 0)
    with pytest.raises(KeyError, match="'c'"):
        row["c"]


def test_two_sinks_of_one_path_are_refused_naming_both(tmp_path: Path) -> None:
    # Both wrote the file from its start: one half of the records was lost, silently.
    flow = Flow("two-writers")
    numbers = flow.source(TestingSource([{"n": i} for i in range(100)]), id="numbers")
    numbers.filter(lambda r: r["n"] % 2 == 0).sink(
        Connectors.file(path=str(tmp_path / "out.jsonl")), id="evens"
    )
    numbers.filter(lambda r: r["n"] % 2 == 1).sink(
        Connectors.file(path=str(tmp_path / "sub" / ".." / "out.jsonl")), id="odds"
    )
    with pytest.raises(GraphValidationError, match="sinks 'evens' and 'odds' both write"):
        flow.to_job()
    # Each its own path, or one sink of the union: every record written.
    flow = Flow("one-writer")
    numbers = flow.source(TestingSource([{"n": i} for i in range(100)]), id="numbers")
    evens = numbers.filter(lambda r: r["n"] % 2 == 0)
    odds = numbers.filter(lambda r: r["n"] % 2 == 1)
    evens.union(odds).sink(Connectors.file(path=str(tmp_path / "all.jsonl")), id="all")
    assert run_job(flow.to_job()).status is JobStatus.COMPLETED
    lines = (tmp_path / "all.jsonl").read_bytes().splitlines()
    assert sorted(orjson.loads(line)["n"] for line in lines) == list(range(100))


def test_a_dead_letter_file_that_a_sink_writes_too_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "out.jsonl")
    flow = Flow(
        "shared-file",
        error_policy=ErrorPolicy(ErrorMode.DEAD_LETTER, dead_letter=Connectors.file(path=path)),
    )
    flow.source(TestingSource([{"n": 1}])).sink(Connectors.file(path=path), id="out")
    with pytest.raises(GraphValidationError, match="the dead-letter sink and sink 'out' both"):
        flow.to_job()


@pytest.mark.parametrize(("fmt", "mode"), [("json", "overwrite"), ("csv", "error")])
def test_a_restarted_at_least_once_file_sink_keeps_what_earlier_attempts_wrote(
    tmp_path: Path, fmt: str, mode: str
) -> None:
    """The job fails at record 700 after some checkpoints and restarts from the
    latest. Its file sink (at least once, the default) must not start the file
    again from empty (it did: 300 of 1,000 records were left) nor, in mode
    'error', refuse its own file; it cuts the file back to where the checkpoint
    had it and appends: every record once, a CSV header once."""
    import asyncio
    from collections import Counter

    from reflow.graph.restart import FixedDelayRestart

    failed: list[int] = []

    async def fail_once(record: dict[str, int]) -> dict[str, int]:
        await asyncio.sleep(0.0005)  # let checkpoints complete while records flow
        if record["n"] == 700 and not failed:
            failed.append(record["n"])
            raise RuntimeError("forced failure")
        return record

    out = tmp_path / "out" / f"o.{fmt}"
    job = (
        Job.builder()
        .batch_size(20)
        .checkpointing(str(tmp_path / "ckpt"), interval_ms=10)
        .restart_strategy(FixedDelayRestart(attempts=1, delay_s=0.01))
        .source(TestingSource([{"n": n} for n in range(1_000)]))
        .transform(Operators.map(fail_once, concurrency=1))
        .sink(Connectors.file(path=str(out), format=fmt, mode=mode))
        .build()
    )

    result = run_job(job)

    assert result.status is JobStatus.COMPLETED, result.error
    assert result.restarts == 1 and failed == [700]
    assert [p.name for p in out.parent.iterdir()] == [out.name]
    if fmt == "json":
        numbers = [orjson.loads(line)["n"] for line in out.read_bytes().splitlines()]
    else:
        lines = out.read_text().splitlines()
        assert lines.count("n") == 1 and lines[0] == "n"
        numbers = [int(line) for line in lines[1:]]
    counts = Counter(numbers)
    assert sorted(counts) == list(range(1_000))  # none lost
    assert set(counts.values()) == {1}  # the file was cut back to the checkpoint


def test_parquet_at_least_once_with_checkpoints_is_refused_with_the_fix(tmp_path: Path) -> None:
    """A restart would write the Parquet file anew from empty (a file cannot be
    appended to), losing what it held before the checkpoint."""
    job = (
        Job.builder()
        .checkpointing(str(tmp_path / "ckpt"), interval_ms=50)
        .source(TestingSource([{"n": 1}]))
        .sink(Connectors.file(path=str(tmp_path / "o.parquet"), format="parquet"))
        .build()
    )
    result = run_job(job)
    assert result.status is JobStatus.FAILED
    assert "Parquet files written at least once cannot be taken up again" in str(result.error)
    assert "set delivery: exactly-once" in str(result.error)
    exactly_once = Connectors.file(
        path=str(tmp_path / "p.parquet"), format="parquet", delivery="exactly-once"
    )
    job = (
        Job.builder()
        .checkpointing(str(tmp_path / "ckpt2"), interval_ms=50)
        .source(TestingSource([{"n": 1}]))
        .sink(exactly_once)
        .build()
    )
    assert run_job(job).status is JobStatus.COMPLETED
