"""SQL scalar functions one by one: times given as ISO-8601 text and as ``datetime``,
errors found as the job is planned (units, date formats, argument counts), and
inputs from untrusted SQL that must not take the job down (LIKE patterns that
backtrack, texts built too long). The comparisons with DuckDB are in
``test_sql_vs_duckdb.py``."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlglot
from hypothesis import given, settings
from hypothesis import strategies as st

from reflow import JobStatus
from reflow.table import SqlError, sql_job
from reflow.table.expressions import compile_expression
from reflow.table.functions import MAX_TEXT, like_matcher
from reflow.table.parser import _ReflowDialect
from reflow.testing import memory_store, run_job


def _value(sql: str, row: dict[str, Any] | None = None) -> Any:
    node = sqlglot.parse_one(f"SELECT {sql}", read=_ReflowDialect).expressions[0]
    return compile_expression(node)(row or {})


MAY_1 = 1_714_557_600_000  # 2024-05-01T10:00:00Z


@pytest.mark.parametrize(
    "ts",
    [
        MAY_1,
        "2024-05-01T10:00:00Z",
        "2024-05-01 10:00:00",
        "2024-05-01T12:00:00+02:00",
        datetime(2024, 5, 1, 10, tzinfo=UTC),
        datetime(2024, 5, 1, 10),  # no zone: UTC
        datetime(2024, 5, 1, 5, tzinfo=timezone(timedelta(hours=-5))),
    ],
    ids=["millis", "iso-z", "iso-space", "iso-offset", "datetime", "naive", "other-zone"],
)
def test_a_time_is_read_from_millis_iso_text_or_a_datetime(ts: Any) -> None:
    row = {"ts": ts}
    assert _value("HOUR(ts)", row) == 10
    assert _value("DATE_FORMAT(ts, 'yyyy-MM-dd''T''HH:mm')", row) == "2024-05-01T10:00"
    assert _value("FLOOR(ts TO DAY)", row) == MAY_1 - 10 * 3_600_000
    assert _value("ts + INTERVAL '1' MONTH", row) == MAY_1 + 31 * 86_400_000
    assert _value("TIMESTAMPDIFF(MINUTE, ts, TIMESTAMPADD(HOUR, 2, ts))", row) == 120


def test_a_date_is_its_midnight_and_month_ends_are_kept() -> None:
    assert _value("DATE_FORMAT(d, 'yyyy-MM-dd HH:mm')", {"d": date(2024, 2, 29)}) == (
        "2024-02-29 00:00"
    )
    jan_31 = datetime(2023, 1, 31, 8, tzinfo=UTC)
    feb_28 = _value("TIMESTAMPADD(MONTH, 1, ts)", {"ts": jan_31})
    assert datetime.fromtimestamp(feb_28 / 1000, UTC) == datetime(2023, 2, 28, 8, tzinfo=UTC)
    # Jan 31 to Feb 28 is not a whole month; to Mar 31 it is two.
    assert _value("TIMESTAMPDIFF(MONTH, a, b)", {"a": jan_31, "b": feb_28}) == 0
    assert _value("TIMESTAMPDIFF(MONTH, a, b)", {"a": jan_31, "b": jan_31.replace(month=3)}) == 2
    assert _value("TIMESTAMPDIFF(MONTH, b, a)", {"a": jan_31, "b": jan_31.replace(month=3)}) == -2


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("EXTRACT(FORTNIGHT FROM ts)", "the unit must be one of YEAR"),
        ("TIMESTAMPADD(DECADE, 1, ts)", "the unit must be one of MILLISECOND"),
        ("FLOOR(ts TO WEEK)", "the unit must be one of"),
        ("DATE_FORMAT(ts, 'yyyy-MM-dd Q')", "the letter 'Q' is not supported"),
        ("DATE_FORMAT(ts, 'yyyy ''oops')", "a quote ' is not closed"),
        ("TO_TIMESTAMP(s, 'EEE yyyy')", "can format a time but not read one"),
        ("TO_TIMESTAMP(s, 'yy-MM-dd')", "to read a year, write yyyy"),
        ("UNIX_TIMESTAMP(s, 'dd MMM yyyy')", "MMM can format a time but not read one"),
        ("TO_TIMESTAMP_LTZ(ts, 6)", "the precision is 0 (seconds) or 3 (milliseconds)"),
        ("DATE_FORMAT(ts)", "DATE_FORMAT takes 2 arguments, not 1"),
        ("TIMESTAMPADD(HOUR, 1, ts, 2)", "TIMESTAMPADD takes 3 arguments, not 4"),
        ("CURRENT_TIMESTAMP", "function CURRENT_TIMESTAMP is not supported"),
        ("REGEXP_REPLACE(s, '(?=a)', 'b')", "is not a regular expression RE2 takes"),
        ("SIMILAR_TO(s)", "function SIMILAR_TO is not supported"),
        ("STDDEV(a)", "aggregate STDDEV is not supported: the aggregates are COUNT"),
    ],
)
def test_a_wrong_call_is_refused_where_it_is_written(sql: str, message: str) -> None:
    memory_store["fn-in"] = []
    text = f"""CREATE TABLE t (a BIGINT, b BIGINT, c BIGINT, s VARCHAR, ts BIGINT)
WITH ('connector' = 'memory', 'collection' = 'fn-in');
CREATE TABLE o (x BIGINT) WITH ('connector' = 'memory', 'collection' = 'fn-out');
INSERT INTO o
SELECT {sql} AS x FROM t;
"""
    with pytest.raises(SqlError, match=re.escape(message)) as caught:
        sql_job(text)
    assert str(caught.value).startswith("line 5:")


def test_a_value_a_function_cannot_take_goes_to_the_error_policy_with_the_rest_kept() -> None:
    memory_store["fn-bad"] = [
        {"id": 1, "ts": "2024-05-01T10:00:00Z", "s": "3"},
        {"id": 2, "ts": "next tuesday", "s": "x"},  # no time
        {"id": 3, "ts": MAY_1, "s": "4.5"},
    ]
    memory_store["fn-good"] = []
    memory_store["fn-rejected"] = []
    job = sql_job(
        """SET 'error.policy' = 'dead-letter';
SET 'dead-letter.table' = 'rejected';
CREATE TABLE t (id BIGINT, ts TIMESTAMP, s VARCHAR)
WITH ('connector' = 'memory', 'collection' = 'fn-bad');
CREATE TABLE o (id BIGINT, h BIGINT, n BIGINT)
WITH ('connector' = 'memory', 'collection' = 'fn-good');
CREATE SINK rejected (step_id VARCHAR, error VARCHAR)
WITH ('connector' = 'memory', 'collection' = 'fn-rejected');
INSERT INTO o SELECT id, HOUR(ts) AS h, TRY_CAST(s AS BIGINT) AS n FROM t;
"""
    )
    result = run_job(job)
    assert result.status is JobStatus.COMPLETED, result.error
    assert memory_store["fn-good"] == [{"id": 1, "h": 10, "n": 3}, {"id": 3, "h": 10, "n": 4}]
    [rejected] = memory_store["fn-rejected"]
    assert rejected["record"] == {"id": 2, "ts": "next tuesday", "s": "x"}
    assert "'next tuesday' is not a time" in rejected["error"]


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        ("SET 'error.policy' = 'ignore';", "is 'fail', 'skip' or 'dead-letter', not 'ignore'"),
        ("SET 'error.policy' = 'dead-letter';", "go together"),
        ("SET 'dead-letter.table' = 'o';", "go together"),
    ],
)
def test_error_policy_settings_are_checked(sets: str, message: str) -> None:
    text = f"""{sets}
CREATE TABLE t (a BIGINT) WITH ('connector' = 'memory', 'collection' = 'fn-in');
CREATE TABLE o (a BIGINT) WITH ('connector' = 'memory', 'collection' = 'fn-out');
INSERT INTO o SELECT a FROM t;
"""
    with pytest.raises(SqlError, match=re.escape(message)):
        sql_job(text)


def _like_by_regex(pattern: str, text: str) -> bool:
    """The textbook translation (a backtracking regex): the reference on short texts."""
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, text, re.DOTALL) is not None


@settings(max_examples=400, deadline=None)
@given(
    pattern=st.text(alphabet="ab%_", max_size=8),
    text=st.text(alphabet="ab\n", max_size=10),
)
def test_like_matches_as_the_regex_translation_does(pattern: str, text: str) -> None:
    assert like_matcher(pattern)(text) == _like_by_regex(pattern, text)


def test_like_escapes_and_ignores_case() -> None:
    assert like_matcher("100!%", "!")("100%")
    assert not like_matcher("100!%", "!")("1000")
    assert like_matcher("A%_z", ignore_case=True)("abcZ")
    assert not like_matcher("a%_z")("az")


@pytest.mark.timeout(60)
def test_a_like_pattern_of_many_wildcards_takes_linear_time() -> None:
    # As a regex of six '.*', this took 3.7 s on 100 characters (minutes on 200):
    # a single record could hold a job for good.
    text = "a" * 200_000
    assert not like_matcher("%a%a%a%a%a%b")(text)
    assert like_matcher("%a%a%a%a%a%")(text)
    assert _value("s LIKE '%a%a%a%a%a%b'", {"s": text}) is False


def test_texts_built_from_sql_are_bounded() -> None:
    with pytest.raises(ValueError, match="more than the"):
        _value("REPEAT(s, 100000000)", {"s": "abc"})
    with pytest.raises(ValueError, match="more than the"):
        _value(f"LPAD(s, {MAX_TEXT + 1}, '*')", {"s": "abc"})
    assert _value("RPAD(s, 6, 'xy')", {"s": "abc"}) == "abcxyx"
    assert _value("LPAD(s, 2, 'xy')", {"s": "abc"}) == "ab"
    assert _value("REPEAT(s, -1)", {"s": "abc"}) == ""


@pytest.mark.timeout(60)
def test_regular_expressions_run_in_linear_time_and_name_a_missing_group() -> None:
    # RE2: the nested repetition that takes a backtracking engine exponential time.
    assert _value("REGEXP(s, '(a+)+b')", {"s": "a" * 100_000}) is False
    assert _value("REGEXP_REPLACE(s, '(a)(b)?', '[$1$2]')", {"s": "aab"}) == "[a][ab]"
    with pytest.raises(ValueError, match="has no group 2"):
        _value("REGEXP_EXTRACT(s, 'a(b)', 2)", {"s": "ab"})
