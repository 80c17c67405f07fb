"""SQL scripts as jobs: the entry points (reflow.sql, reflow sql FILE, reflow run
FILE.sql), user functions, SET, errors that name line:column, and a SQL job that is
killed and resumes from its checkpoint with the same output as an uninterrupted run."""

from __future__ import annotations

import io
import random
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

import reflow
from reflow import JobStatus
from reflow.cli import main
from reflow.table import SqlError
from reflow.testing import memory_store, run_job
from tests.checkpoint.test_kill import _run  # reflow run --resume, SIGKILLed after a checkpoint

BIDS = [{"auction": i % 5, "price": 10 + i % 17, "ts": 1_000 * i} for i in range(100)]


def _tables(collection: str, out: str) -> str:
    return f"""
        CREATE TABLE bids (auction BIGINT, price BIGINT, ts BIGINT,
                           WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
        WITH ('connector' = 'memory', 'collection' = '{collection}');
        CREATE SINK results (auction BIGINT, n BIGINT)
        WITH ('connector' = 'memory', 'collection' = '{out}', 'append' = 'false');
    """


def test_reflow_sql_returns_a_job_and_user_functions_are_callable_by_name() -> None:
    memory_store["sql-bids"] = list(BIDS)
    job = reflow.sql(
        _tables("sql-bids", "sql-out")
        + "INSERT INTO results SELECT auction, discounted(price) AS p FROM bids WHERE auction = 2;",
        functions={"discounted": lambda price: price * 9 // 10},
    )
    assert run_job(job).status is JobStatus.COMPLETED
    expected = [{"auction": 2, "p": b["price"] * 9 // 10} for b in BIDS if b["auction"] == 2]
    assert memory_store["sql-out"] == expected


def test_create_function_names_a_python_function(tmp_path: Path, monkeypatch: Any) -> None:
    (tmp_path / "sqludfs.py").write_text("def bucket(price):\n    return price // 5 * 5\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    memory_store["udf-bids"] = list(BIDS)
    job = reflow.sql(
        _tables("udf-bids", "udf-out")
        + "CREATE FUNCTION bucket AS 'sqludfs:bucket' LANGUAGE PYTHON;\n"
        + "INSERT INTO results SELECT bucket(price) AS b, COUNT(*) AS n FROM bids "
        + "GROUP BY bucket(price);"
    )
    assert run_job(job).status is JobStatus.COMPLETED
    counts: dict[int, int] = {}
    for b in BIDS:
        counts[b["price"] // 5 * 5] = counts.get(b["price"] // 5 * 5, 0) + 1
    assert {r["b"]: r["n"] for r in memory_store["udf-out"]} == counts


def test_set_configures_the_job() -> None:
    job = reflow.sql(
        "SET 'job.id' = 'sql-settings'; SET 'parallelism' = '3'; SET 'batch.size' = '7';\n"
        "SET 'checkpoint.path' = '/tmp/ckpt'; SET 'checkpoint.interval' = '2s';\n"
        + _tables("x", "y")
        + "INSERT INTO results SELECT auction FROM bids;"
    )
    assert job.job_id == "sql-settings"
    assert {v.parallelism for v in job.job_graph.vertices} == {3}
    assert job.config.batch_size == 7
    assert job.config.checkpoint is not None
    assert (job.config.checkpoint.path, job.config.checkpoint.interval_ms) == ("/tmp/ckpt", 2_000)


@pytest.mark.parametrize(
    ("statement", "line", "column", "says"),
    [
        ("INSERT INTO results SELECT auction, bogus FROM bids;", 7, 41, "no column bogus"),
        ("INSERT INTO results SELECT auction FROM nowhere;", 7, 45, "no table nowhere"),
        (
            "INSERT INTO results SELECT price, COUNT(*) AS n FROM bids GROUP BY auction;",
            7,
            32,
            "must be in GROUP BY",
        ),
        (
            "INSERT INTO results SELECT a.auction FROM bids a JOIN bids b ON a.auction = b.auction;",
            7,
            0,
            "the JOIN needs a time bound",
        ),
        (
            "INSERT INTO results SELECT a.auction FROM bids a CROSS JOIN bids b;",
            7,
            0,
            "CROSS JOIN is not supported; JOIN, LEFT, RIGHT and FULL [OUTER] JOIN are",
        ),
        (
            "INSERT INTO results SELECT auction FROM bids WHERE upper_case(price) = 1;",
            7,
            0,
            "function UPPER_CASE is not supported",
        ),
        ("SET 'speed' = 'fast';", 7, 0, "'speed' is not a setting"),
        ("INSERT INTO results SELECT auction FROM bids WHERE;", 7, 0, "cannot parse the SQL"),
    ],
)
def test_errors_name_the_line_and_column_and_the_fix(
    statement: str, line: int, column: int, says: str
) -> None:
    with pytest.raises(SqlError) as caught:
        reflow.sql(_tables("x", "y") + statement)
    error = caught.value
    assert says in str(error), str(error)
    assert error.line == line, str(error)
    if column:
        assert error.column == column, str(error)
        assert f"line {line}:{column}: " in str(error)


def test_a_computed_column_is_refused_with_the_way_to_declare_event_time() -> None:
    """It was taken as a column the records hold, always NULL: every row then had
    no event time."""
    with pytest.raises(SqlError) as caught:
        reflow.sql(
            "CREATE TABLE t (k BIGINT, ms BIGINT,\n"
            "  ts AS TO_TIMESTAMP_LTZ(ms, 3), WATERMARK FOR ts AS ts)\n"
            "WITH ('connector' = 'memory', 'collection' = 'a');\n"
            "SELECT k FROM t;"
        )
    assert caught.value.line == 2, str(caught.value)
    assert "computed column ts AS TO_TIMESTAMP_LTZ(ms, 3) is not supported" in str(caught.value)
    assert "WATERMARK FOR dateTime AS dateTime - INTERVAL" in str(caught.value)


def test_options_may_be_written_unquoted() -> None:
    """format = 'json' is a word of the SQL dialect's own: it was read as an option
    named 'json'."""
    memory_store["unquoted-in"] = [{"k": 1}, {"k": 2}]
    job = reflow.sql(
        "CREATE TABLE t (k BIGINT) WITH (connector = 'memory', collection = 'unquoted-in');\n"
        "CREATE TABLE o (k BIGINT) WITH (connector = memory, collection = 'unquoted-out', "
        "append = 'false');\n"
        "INSERT INTO o SELECT k * 10 AS k FROM t;"
    )
    assert run_job(job).status is JobStatus.COMPLETED
    assert memory_store["unquoted-out"] == [{"k": 10}, {"k": 20}]
    with pytest.raises(SqlError, match="option PARTITIONED_BY='k': write options as quoted names"):
        reflow.sql(
            "CREATE TABLE t (k BIGINT) WITH (connector = 'memory', partitioned_by = 'k');\n"
            "SELECT k FROM t;"
        )


def test_a_window_needs_a_declared_watermark() -> None:
    with pytest.raises(SqlError, match="WATERMARK FOR ts AS ts - INTERVAL"):
        reflow.sql(
            "CREATE TABLE t (k BIGINT, ts BIGINT) WITH ('connector' = 'memory', 'collection' = 'a');\n"
            "SELECT k, COUNT(*) AS n FROM TUMBLE(t, ts, INTERVAL '1' SECOND) GROUP BY window_end, k;"
        )


WINDOWED = """
INSERT INTO totals
SELECT auction, window_end, COUNT(*) AS n, SUM(slow(price)) AS total
FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '1' SECOND))
GROUP BY window_start, window_end, auction;
"""

# every row with its auction's last 20 prices: the frames live in keyed state
OVER = """
INSERT INTO totals
SELECT auction, ts AS window_end, COUNT(*) OVER w AS n, SUM(slow(price)) OVER w AS total
FROM bids WINDOW w AS (PARTITION BY auction ORDER BY ts ROWS BETWEEN 19 PRECEDING AND CURRENT ROW);
"""


def _script(folder: Path, rows: list[dict[str, Any]], name: str, query: str = WINDOWED) -> Path:
    data = folder / "bids.jsonl"
    if not data.exists():
        data.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    (folder / "slowudf.py").write_text(
        "import time\n\ndef slow(x):\n    time.sleep(0.0005)\n    return x\n"
    )
    script = folder / f"{name}.sql"
    script.write_text(
        f"""
SET 'job.id' = '{name}';
SET 'batch.size' = '40';
SET 'checkpoint.path' = '{folder / (name + "-ckpt")}';
SET 'checkpoint.interval' = '150ms';
CREATE FUNCTION slow AS 'slowudf:slow';
CREATE TABLE bids (auction BIGINT, price BIGINT, ts BIGINT,
                   WATERMARK FOR ts AS ts - INTERVAL '50' MILLISECOND)
WITH ('connector' = 'file', 'path' = '{data}', 'format' = 'json');
CREATE SINK totals (auction BIGINT, window_end BIGINT, n BIGINT, total BIGINT)
WITH ('connector' = 'file', 'path' = '{folder / (name + "-out")}/totals.jsonl',
      'format' = 'json', 'delivery' = 'exactly-once');
{query}"""
    )
    return script


def _lines(folder: Path) -> list[bytes]:
    return sorted(
        line for f in folder.glob("totals*.jsonl") for line in f.read_bytes().splitlines()
    )


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("query", "kill_between", "count"),
    # An OVER's frames fill once the watermark passes rows, every 1,000 records read
    # in a backlog: its runs are killed later, so the checkpoints they resume from
    # hold frames. The slow UDF bounds a run's pace (at most ~2,000 rows a second),
    # so three runs killed that late cannot reach the end of its 10,000 rows.
    [(WINDOWED, (0.05, 0.4), 6_000), (OVER, (0.7, 1.2), 10_000)],
    ids=["window", "over"],
)
def test_a_killed_sql_job_resumes_from_its_checkpoint_with_identical_output(
    tmp_path: Path, query: str, kill_between: tuple[float, float], count: int
) -> None:
    rng = random.Random(7)
    rows = [
        {"auction": rng.randrange(9), "price": rng.randrange(100), "ts": i * 7 - rng.randrange(40)}
        for i in range(count)
    ]
    _run(_script(tmp_path, rows, "reference", query), kill_after=None)
    expected = _lines(tmp_path / "reference-out")
    assert len(expected) > 300

    script = _script(tmp_path, rows, "killed", query)
    rng = random.Random(3)
    killed = 0
    while killed < 3:
        if _run(script, kill_after=rng.uniform(*kill_between)) is None:
            killed += 1
        else:
            break
    err = _run(script, kill_after=None)
    assert err is not None and "resuming job killed" in err
    assert killed >= 3, "the job must have been killed at least 3 times"
    assert _lines(tmp_path / "killed-out") == expected


def test_the_cli_runs_validates_and_explains_a_sql_file(tmp_path: Path) -> None:
    data = tmp_path / "bids.jsonl"
    data.write_bytes(b"".join(orjson.dumps(b) + b"\n" for b in BIDS))
    script = tmp_path / "top.sql"
    script.write_text(
        f"""CREATE TABLE bids (auction BIGINT, price BIGINT, ts BIGINT,
                   WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
WITH ('connector' = 'file', 'path' = '{data}', 'format' = 'json');
CREATE TABLE out_t (auction BIGINT, n BIGINT)
WITH ('connector' = 'file', 'path' = '{tmp_path / "out.jsonl"}', 'format' = 'json');
INSERT INTO out_t
SELECT auction, window_end, COUNT(*) AS n, MAX(price) AS top
FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '10' SECOND))
GROUP BY window_start, window_end, auction;
"""
    )
    out = io.StringIO()
    assert main(["sql", str(script), "--validate"], out=out) == 0, out.getvalue()
    assert "valid" in out.getvalue()
    out = io.StringIO()
    assert main(["sql", str(script), "--explain"], out=out) == 0
    # one subtask to one: the keyed exchange is chained
    assert "bids -> timestamps -> window-aggregate -> out_t" in out.getvalue()
    parallel = tmp_path / "top2.sql"
    parallel.write_text("SET 'parallelism' = '2';\n" + script.read_text())
    out = io.StringIO()
    assert main(["sql", str(parallel), "--explain"], out=out) == 0
    assert "timestamps -> window-aggregate: HASH by the key of 'group-by'" in out.getvalue()
    out = io.StringIO()
    assert main(["sql", str(script), "--no-progress"], out=out) == 0, out.getvalue()
    rows = [orjson.loads(line) for line in (tmp_path / "out.jsonl").read_bytes().splitlines()]
    assert len(rows) == 10 * 5  # ten 10 s windows, five auctions in each
    assert sum(r["n"] for r in rows) == len(BIDS)
    out = io.StringIO()
    assert main(["run", "--no-progress", str(script)], out=out) == 0  # reflow run takes .sql too

    bad = tmp_path / "bad.sql"
    bad.write_text(script.read_text().replace("MAX(price)", "MAX(cost)"))
    assert main(["sql", str(bad), "--validate"], out=io.StringIO()) == 2

    # a job that fails as it runs: its error, not a traceback of the CLI
    failing = tmp_path / "failing.sql"
    failing.write_text(
        script.read_text().replace(str(tmp_path / "out.jsonl"), "/proc/no/out.jsonl")
    )
    out = io.StringIO()
    assert main(["sql", str(failing), "--no-progress"], out=out) == 1


YAML_SQL = """
job:
  name: yaml-sql
  checkpoint: {path: "CKPT", interval: 1s}
  sql: |
    CREATE TABLE bids (auction BIGINT, price BIGINT, ts BIGINT)
    WITH ('connector' = 'memory', 'collection' = 'yaml-sql-in');
    CREATE SINK out_t (auction BIGINT)
    WITH ('connector' = 'memory', 'collection' = 'yaml-sql-out', 'append' = 'false');
    INSERT INTO out_t SELECT auction, SUM(price) AS total FROM bids GROUP BY auction;
"""


def test_a_yaml_job_may_be_a_sql_script(tmp_path: Path) -> None:
    from reflow.config import load_job_text

    memory_store["yaml-sql-in"] = list(BIDS)
    job = load_job_text(YAML_SQL.replace("CKPT", str(tmp_path / "ckpt")), "job.yaml")
    assert job.job_name == "yaml-sql"
    assert job.config.checkpoint is not None  # the YAML's job-level keys apply
    assert run_job(job).status is JobStatus.COMPLETED
    totals: dict[int, int] = {}
    for b in BIDS:
        totals[b["auction"]] = totals.get(b["auction"], 0) + b["price"]
    assert {r["auction"]: r["total"] for r in memory_store["yaml-sql-out"]} == totals


def test_a_sql_error_in_yaml_names_the_yaml_line_and_the_sql_line() -> None:
    from reflow.config import load_job_text
    from reflow.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        load_job_text(YAML_SQL.replace("SUM(price)", "SUM(cost)"), "job.yaml")
    text = str(caught.value)
    assert text.startswith("job.yaml:5: ")  # the sql: key
    assert "line 5:39 of the SQL: no column cost in table bids" in text


def test_submitted_sql_is_held_to_the_submission_policy(tmp_path: Path) -> None:
    from reflow.config import load_job_text
    from reflow.config.policy import SubmissionPolicy
    from reflow.errors import ConfigError

    outside = YAML_SQL.replace('  checkpoint: {path: "CKPT", interval: 1s}\n', "").replace(
        "'connector' = 'memory', 'collection' = 'yaml-sql-in'",
        "'connector' = 'file', 'path' = '/etc/passwd', 'format' = 'text'",
    )
    with pytest.raises(ConfigError, match="is outside the folders submitted jobs may use"):
        load_job_text(outside, "<submitted>", policy=SubmissionPolicy(path_roots=(str(tmp_path),)))
    udf = YAML_SQL.replace('  checkpoint: {path: "CKPT", interval: 1s}\n', "").replace(
        "    INSERT INTO", "    CREATE FUNCTION run AS 'os:system';\n    INSERT INTO"
    )
    with pytest.raises(ConfigError, match="not from an allowed module"):
        load_job_text(udf, "<submitted>", policy=SubmissionPolicy())


def test_vectorised_functions_take_and_return_arrow_arrays() -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    from reflow.table import vectorized

    calls: list[int] = []

    @vectorized
    def with_tax(prices: pa.Array) -> pa.Array:
        calls.append(len(prices))
        return pc.multiply(prices, 2)

    @vectorized
    def is_hot(auctions: pa.Array, prices: pa.Array) -> pa.Array:
        return pc.and_(pc.equal(auctions, 2), pc.greater(prices, 15))

    memory_store["vec-bids"] = list(BIDS)
    job = reflow.sql(
        _tables("vec-bids", "vec-out")
        + "INSERT INTO results SELECT auction, with_tax(price) AS taxed FROM bids "
        + "WHERE is_hot(auction, price);",
        functions={"with_tax": with_tax, "is_hot": is_hot},
    )
    assert run_job(job).status is JobStatus.COMPLETED
    expected = [
        {"auction": 2, "taxed": b["price"] * 2}
        for b in BIDS
        if b["auction"] == 2 and b["price"] > 15
    ]
    assert memory_store["vec-out"] == expected
    assert calls and max(calls) > 1  # called per batch, not per row

    with pytest.raises(SqlError, match="vectorised function with_tax can be called in the SELECT"):
        reflow.sql(
            _tables("x", "y") + "INSERT INTO results SELECT SUM(with_tax(price)) AS s FROM bids;",
            functions={"with_tax": with_tax},
        )


def test_a_json_file_table_decodes_into_typed_rows_and_a_violation_is_rejected(
    tmp_path: Path,
) -> None:
    from reflow.config import load_job_text

    data = tmp_path / "bids.jsonl"
    lines = [orjson.dumps(b) for b in BIDS]
    lines[7] = b'{"auction": "seven", "price": 1, "ts": 7000}'  # not a BIGINT
    data.write_bytes(b"\n".join(lines) + b"\n")
    text = f"""
job:
  name: typed
  error_policy: {{mode: skip}}
  sql: |
    CREATE TABLE bids (auction BIGINT, price BIGINT, ts BIGINT)
    WITH ('connector' = 'file', 'path' = '{data}', 'format' = 'json');
    CREATE SINK out_t (auction BIGINT)
    WITH ('connector' = 'memory', 'collection' = 'typed-out', 'append' = 'false');
    INSERT INTO out_t SELECT auction, price FROM bids;
"""
    job = load_job_text(text, "typed.yaml")
    source = job.stream_graph.sources[0]
    assert source.payload.options["schema"] == {
        "auction": "BIGINT",
        "price": "BIGINT",
        "ts": "BIGINT",
    }
    result = run_job(job)
    assert result.status is JobStatus.COMPLETED, result.error
    assert result.metrics.step("bids").rejected == 1  # the row that breaks the schema
    expected = [
        {"auction": b["auction"], "price": b["price"]} for i, b in enumerate(BIDS) if i != 7
    ]
    assert memory_store["typed-out"] == expected


def test_typed_rows_are_written_to_a_json_file_without_dicts(tmp_path: Path) -> None:
    """A JSON file table to a JSON file sink: typed rows all the way, the file holds
    what the same query over dict rows writes (NULLs included), and rows the
    expressions fail on are counted, not written."""
    data = tmp_path / "bids.jsonl"
    rows: list[dict[str, Any]] = [
        {**b, "price": None} if i % 5 == 0 else b for i, b in enumerate(BIDS)
    ]
    rows[3] = {**rows[3], "auction": -1, "price": None}  # 10 / (auction + 1) fails
    data.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    out = tmp_path / "out.jsonl"
    from reflow.config import load_job_text

    text = f"""
job:
  name: typed-to-file
  error_policy: {{mode: skip}}
  sql: |
    CREATE TABLE bids (auction BIGINT, price BIGINT, ts BIGINT)
    WITH ('connector' = 'file', 'path' = '{data}', 'format' = 'json');
    CREATE SINK out_t (auction BIGINT) WITH ('connector' = 'file', 'path' = '{out}');
    INSERT INTO out_t SELECT auction, price * 2 AS doubled, 10 / (auction + 1) AS tenth
    FROM bids WHERE auction % 2 = 0 OR price IS NULL;
"""
    job = load_job_text(text, "typed.yaml")
    select = job.stream_graph.node("select")
    assert select.payload.kernel is not None
    result = run_job(job)
    assert result.status is JobStatus.COMPLETED, result.error
    expected = [
        {
            "auction": r["auction"],
            "doubled": None if r["price"] is None else r["price"] * 2,
            "tenth": 10 // (r["auction"] + 1),
        }
        for r in rows
        if (r["auction"] % 2 == 0 or r["price"] is None) and r["auction"] != -1
    ]
    written = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert written == expected
    assert result.metrics.step("select").rejected == 1


@pytest.mark.parametrize(
    ("sets", "query", "message"),
    [
        (
            "SET 'changelog.mode' = 'append';",
            "SELECT auction FROM bids",
            "is 'retract' or 'upsert'",
        ),
        (
            "SET 'changelog.column' = 'kind';",
            "SELECT auction FROM bids",
            "needs SET 'changelog.mode'",
        ),
        (
            "SET 'changelog.mode' = 'upsert';",
            "SELECT auction, COUNT(*) AS op FROM bids GROUP BY auction",
            "output column op is named twice",
        ),
    ],
)
def test_changelog_settings_are_checked(sets: str, query: str, message: str) -> None:
    text = f"""{sets}
        CREATE TABLE bids (auction BIGINT, price BIGINT, ts BIGINT)
        WITH ('connector' = 'memory', 'collection' = 'unused');
        INSERT INTO bids {query};
    """
    with pytest.raises(SqlError, match=re.escape(message)):
        reflow.sql(text)


def test_a_script_may_end_with_a_comment() -> None:
    job = reflow.sql(
        """CREATE TABLE bids (auction BIGINT) WITH ('connector' = 'memory', 'collection' = 'x');
        INSERT INTO bids SELECT auction FROM bids WHERE auction > 1;
        -- a closing comment, as SQL files often have
        """
    )
    assert [n.step_id for n in job.stream_graph.sinks] == ["bids-2"]  # after the source "bids"


def test_late_rows_of_window_aggregates_go_to_the_late_table() -> None:
    """SET 'late.table': rows behind the watermark are written there, as read (two
    window aggregates' late rows into one table), and counted on their steps."""
    events = [
        {"auction": 1, "ts": 1_000},
        {"auction": 2, "ts": 5_000},
        {"auction": 1, "ts": 2_100},  # both its windows ended before the watermark (4,499)
        {"auction": 3, "ts": 5_200},
        {"auction": 2, "ts": 900},  # late for both windows too
    ]
    memory_store["late-in"] = events
    text = """
        SET 'batch.size' = '1';
        SET 'late.table' = 'late_rows';
        CREATE TABLE bids (auction BIGINT, ts BIGINT,
                           WATERMARK FOR ts AS ts - INTERVAL '500' MILLISECOND)
        WITH ('connector' = 'memory', 'collection' = 'late-in');
        CREATE SINK counts (auction BIGINT)
        WITH ('connector' = 'memory', 'collection' = 'late-counts', 'append' = 'false');
        CREATE SINK late_rows (auction BIGINT)
        WITH ('connector' = 'memory', 'collection' = 'late-out', 'append' = 'false');
        INSERT INTO counts
        SELECT auction, window_end, COUNT(*) AS n
        FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '1' SECOND))
        GROUP BY window_start, window_end, auction;
        INSERT INTO counts
        SELECT auction, window_end, COUNT(*) AS n
        FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '2' SECOND))
        GROUP BY window_start, window_end, auction;
    """
    result = run_job(reflow.sql(text))
    assert result.status is JobStatus.COMPLETED, result.error
    late = sorted(memory_store["late-out"], key=repr)
    assert late == sorted([events[2], events[2], events[4], events[4]], key=repr)
    windows = [s for s in result.metrics.steps if s.step_id.startswith("window-aggregate")]
    assert [s.late for s in windows] == [2, 2]
    assert len(memory_store["late-counts"]) == 2 * 3  # every other row counted


def test_late_rows_of_an_over_aggregate_go_to_the_late_table() -> None:
    """A row behind the watermark cannot take its place in the frames: it is written
    to the late table and counted, and the other rows' frames leave it out."""
    events = [
        {"auction": 1, "price": 1, "ts": 1_000},
        {"auction": 1, "price": 2, "ts": 3_000},
        {"auction": 1, "price": 4, "ts": 2_000},  # the watermark is 2,500: late
        {"auction": 1, "price": 8, "ts": 3_500},
    ]
    memory_store["over-late-in"] = events
    text = """
        SET 'batch.size' = '1';
        SET 'late.table' = 'late_rows';
        CREATE TABLE bids (auction BIGINT, price BIGINT, ts BIGINT,
                           WATERMARK FOR ts AS ts - INTERVAL '500' MILLISECOND)
        WITH ('connector' = 'memory', 'collection' = 'over-late-in');
        CREATE SINK sums (auction BIGINT)
        WITH ('connector' = 'memory', 'collection' = 'over-late-sums', 'append' = 'false');
        CREATE SINK late_rows (auction BIGINT)
        WITH ('connector' = 'memory', 'collection' = 'over-late-out', 'append' = 'false');
        INSERT INTO sums
        SELECT price, SUM(price) OVER (PARTITION BY auction ORDER BY ts
                                       ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS total
        FROM bids;
    """
    result = run_job(reflow.sql(text))
    assert result.status is JobStatus.COMPLETED, result.error
    assert memory_store["over-late-out"] == [events[2]]
    assert memory_store["over-late-sums"] == [
        {"price": 1, "total": 1},
        {"price": 2, "total": 3},
        {"price": 8, "total": 11},
    ]
    assert [s.late for s in result.metrics.steps if s.step_id.startswith("over")] == [1]


def _memory_sql_job(
    name: str, policy: str, key: str, select: str, batch_size: int | None = None
) -> str:
    """A YAML job of one SQL query from memory collection NAME-in (columns ``key``,
    price, ts; 1 ms of disorder) into NAME-out, under the error policy ``policy``."""
    setting = f"SET 'batch.size' = '{batch_size}';" if batch_size else ""
    return f"""
job:
  name: {name}
  error_policy: {policy}
  sql: |
    {setting}
    CREATE TABLE bids ({key}, price BIGINT, ts BIGINT,
                       WATERMARK FOR ts AS ts - INTERVAL '1' MILLISECOND)
    WITH ('connector' = 'memory', 'collection' = '{name}-in');
    CREATE SINK sums (ts BIGINT)
    WITH ('connector' = 'memory', 'collection' = '{name}-out', 'append' = 'false');
    INSERT INTO sums
    {select}
"""


@pytest.mark.parametrize(
    ("frame", "totals"),
    [
        ("ROWS BETWEEN 1 PRECEDING", [1, 1 + 2, 2 + 30, 30 + 4, 4 + 5, 5 + 6]),
        ("RANGE BETWEEN INTERVAL '1' SECOND PRECEDING", [1, 1 + 2, 2 + 30, 30 + 4, 4 + 5, 5 + 6]),
        ("ROWS BETWEEN UNBOUNDED PRECEDING", [1, 3, 33, 37, 42, 48]),
    ],
)
def test_a_value_an_over_aggregate_cannot_add_is_rejected_and_the_frame_kept(
    frame: str, totals: list[int]
) -> None:
    """A price that is text cannot be summed: its row alone goes to the error policy
    (here skip: counted and logged), not the row of the same time with a number, and
    the frames go on as if it had not come."""
    from reflow.config import load_job_text

    prices: list[tuple[int, Any]] = [
        (1_000, 1),
        (2_000, 2),
        (3_000, "three"),
        (3_000, 30),
        (4_000, 4),
        (5_000, 5),
        (6_000, 6),
    ]
    memory_store["over-bad-in"] = [{"auction": 1, "price": p, "ts": t} for t, p in prices]
    text = _memory_sql_job(
        "over-bad",
        "{mode: skip}",
        "auction BIGINT",
        "SELECT ts, COUNT(price) OVER w AS n, SUM(price) OVER w AS total FROM bids\n"
        f"    WINDOW w AS (PARTITION BY auction ORDER BY ts {frame} AND CURRENT ROW);",
        batch_size=2,
    )
    result = run_job(load_job_text(text, "over-bad.yaml"))
    assert result.status is JobStatus.COMPLETED, result.error
    times = [1_000, 2_000, 3_000, 4_000, 5_000, 6_000]
    # COUNT comes before SUM: "three" is counted in neither
    counts = [i + 1 if "UNBOUNDED" in frame else min(i + 1, 2) for i in range(6)]
    assert memory_store["over-bad-out"] == [
        {"ts": t, "n": n, "total": total} for t, n, total in zip(times, counts, totals, strict=True)
    ]
    over = next(s for s in result.metrics.steps if s.step_id.startswith("over"))
    assert over.rejected == 1


def test_a_row_whose_partition_key_cannot_be_hashed_is_rejected_alone() -> None:
    """A JSON array in the PARTITION BY column cannot key a frame: that row goes to the
    dead-letter output, every other row comes out."""
    from reflow.config import load_job_text

    memory_store["over-key-in"] = [
        {"tags": "a", "price": 1, "ts": 1_000},
        {"tags": ["a", "b"], "price": 2, "ts": 2_000},
        {"tags": "a", "price": 3, "ts": 3_000},
    ]
    text = _memory_sql_job(
        "over-key",
        "{mode: dead-letter, dead_letter: "
        "{connector: memory, config: {collection: over-key-dead, append: false}}}",
        "tags VARCHAR",
        "SELECT ts, SUM(price) OVER (PARTITION BY tags ORDER BY ts) AS total FROM bids;",
    )
    result = run_job(load_job_text(text, "over-key.yaml"))
    assert result.status is JobStatus.COMPLETED, result.error
    assert memory_store["over-key-out"] == [{"ts": 1_000, "total": 1}, {"ts": 3_000, "total": 4}]
    dead = memory_store["over-key-dead"]
    assert [d["record"]["price"] for d in dead] == [2]
    assert "unhashable" in dead[0]["error"]


@pytest.mark.parametrize(
    ("select", "says"),
    [
        (
            "SELECT SUM(price) OVER (PARTITION BY auction ORDER BY ts ROWS BETWEEN 1 PRECEDING "
            "AND 1 FOLLOWING) AS x FROM bids",
            "frames end at the current row",
        ),
        (
            "SELECT SUM(price) OVER (PARTITION BY auction ORDER BY ts DESC) AS x FROM bids",
            "ORDER BY the event-time column, ascending",
        ),
        (
            "SELECT SUM(price) OVER (PARTITION BY auction ORDER BY ts) AS x, "
            "COUNT(*) OVER (ORDER BY ts) AS n FROM bids",
            "every OVER of a query must use the same window",
        ),
        (
            "SELECT SUM(price) OVER (ORDER BY ts RANGE BETWEEN 10 PRECEDING AND CURRENT ROW) "
            "AS x FROM bids",
            "RANGE BETWEEN INTERVAL '10' SECOND PRECEDING",
        ),
        ("SELECT SUM(price) OVER v AS x FROM bids WINDOW w AS (ORDER BY ts)", "no window v"),
        ("SELECT LAG(price) OVER (ORDER BY ts) AS x FROM bids", "LAG(price) OVER is not supported"),
        (
            "SELECT auction, SUM(price) OVER (ORDER BY ts) AS x FROM bids GROUP BY auction",
            "cannot be combined with GROUP BY",
        ),
        ("SELECT price, SUM(price) AS x, COUNT(*) OVER (ORDER BY ts) AS n FROM bids", "needs OVER"),
        ("SELECT price FROM bids WINDOW w AS (ORDER BY ts)", "names a window no OVER uses"),
        ("SELECT SUM(price) OVER (ORDER BY price) AS x FROM bids", "no watermark for price"),
    ],
)
def test_over_errors_say_what_is_supported(select: str, says: str) -> None:
    with pytest.raises(SqlError) as caught:
        reflow.sql(_tables("x", "y") + f"INSERT INTO results {select};")
    assert says in str(caught.value), str(caught.value)
    assert caught.value.line == 7, str(caught.value)


def test_a_late_table_needs_a_window_and_a_sink() -> None:
    base = """
        CREATE TABLE bids (auction BIGINT, ts BIGINT)
        WITH ('connector' = 'memory', 'collection' = 'x');
        INSERT INTO bids SELECT auction, ts FROM bids;
    """
    with pytest.raises(SqlError, match="no window or OVER aggregate has late rows"):
        reflow.sql("SET 'late.table' = 'bids';" + base)
