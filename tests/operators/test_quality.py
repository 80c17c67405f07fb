"""Data-quality expectations: for each check, a stream with known violations gives
exact counts, dead-letters exactly the violating records (with the rule's name),
and flips /health to DEGRADED while the job runs; a clean stream does not."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from reflow import ErrorMode, ErrorPolicy, Flow, JobStatus
from reflow.errors import ConfigError, ExecutionError
from reflow.eventtime.clock import ManualClock
from reflow.operators import quality as q
from reflow.runtime import ExecutorSettings, LocalExecutor
from reflow.server.health import HealthChecker
from reflow.testing import TestingSink, TestingSource, run_job

N = 1000
STEP = 10  # ms of event time between records: 100 records per 1 s window


def _base(i: int) -> dict[str, Any]:
    return {
        "id": i,
        "price": float(i % 100),
        "cur": ("EUR", "USD", "GBP")[i % 3],
        "email": f"u{i}@x.org",
        "ts": i * STEP,
    }


@dataclass
class Case:
    records: list[dict[str, Any]]
    rule: q.Expectation
    failed: int
    passed: int
    dead: set[int] = field(default_factory=set)
    """ids of the records that must reach the dead-letter output."""
    timestamps: bool = False


def _spoil(every: int, change: Callable[[dict[str, Any]], None]) -> tuple[list[Any], set[int]]:
    records, bad = [], set()
    for i in range(N):
        r = _base(i)
        if i % every == 0:
            change(r)
            bad.add(i)
        records.append(r)
    return records, bad


def _not_null() -> Case:
    records, bad = _spoil(7, lambda r: r.update(price=None))
    for r in records[3::70]:  # a missing field counts as null too
        if r["id"] not in bad:
            del r["price"]
            bad.add(r["id"])
    rule = q.not_null("price", action="drop", critical=True)
    return Case(records, rule, len(bad), N - len(bad), bad)


def _range() -> Case:
    records, bad = _spoil(13, lambda r: r.update(price=-5.0))
    records[1]["price"] = None  # nulls pass a range check
    records[2]["price"] = float("nan")
    bad.add(2)
    rule = q.in_range("price", min=0, max=99, action="drop", critical=True)
    return Case(records, rule, len(bad), N - len(bad), bad)


def _in_set() -> Case:
    records, bad = _spoil(17, lambda r: r.update(cur="XXX"))
    rule = q.in_set("cur", ["EUR", "USD", "GBP"], action="drop", critical=True)
    return Case(records, rule, len(bad), N - len(bad), bad)


def _regex() -> Case:
    records, bad = _spoil(19, lambda r: r.update(email="not-an-email"))
    records[5]["email"] = 5  # not a string
    bad.add(5)
    records[7]["email"] = "u7\ud800@x.org"  # a lone surrogate: not text RE2 can read
    bad.add(7)
    rule = q.matches("email", r"u\d+@x\.org", action="drop", critical=True)
    return Case(records, rule, len(bad), N - len(bad), bad)


def _schema() -> Case:
    records, bad = _spoil(23, lambda r: r.update(price=str(r["price"])))
    del records[1]["ts"]
    bad.add(1)
    rule = q.schema({"price": "number", "id": "int"}, required=["ts"], action="drop", critical=True)
    return Case(records, rule, len(bad), N - len(bad), bad)


def _unique() -> Case:
    records = [_base(i) for i in range(N)]
    bad = set()
    for r in records[49::50]:  # same id as the record before, same 1 s window
        r["id"] = r["id"] - 1
        bad.add(r["ts"])
    rule = q.unique("id", window="1s", action="drop", critical=True)
    return Case(records, rule, len(bad), N - len(bad), bad, timestamps=True)


def _freshness() -> Case:
    now = int(time.time() * 1000)
    records, bad = _spoil(29, lambda r: r.update(seen=now - 3_600_000))
    for r in records:
        r.setdefault("seen", now + 3_600_000)
    rule = q.fresh(max_lag="10m", field="seen", action="drop", critical=True)
    return Case(records, rule, len(bad), N - len(bad), bad)


def _volume() -> Case:
    # 1 s windows 0..9 of 100 records; window 4 keeps 10, window 7 none; one record
    # in window 10 moves the watermark past window 9.
    records = [_base(i) for i in range(N) if not (410 <= i < 500 or 700 <= i < 800)]
    records.append({**_base(N), "ts": N * STEP + 50})
    rule = q.volume(window="1s", min=50, critical=True)
    return Case(records, rule, failed=2, passed=8, timestamps=True)


def _drift(shift: float) -> Case:
    rng = random.Random(7)
    records = []
    for i in range(4000):  # 1 s windows of 400 values; windows 6..9 shifted
        window = i // 400
        x = rng.uniform(0, 100) + (shift if window >= 6 else 0.0)
        records.append({"id": i, "x": x, "ts": window * 1000 + (i % 400)})
    records.append({"id": -1, "x": 0.0, "ts": 10_050})
    rule = q.drift("x", window="1s", threshold=0.2, critical=True)
    failed = 4 if shift else 0
    return Case(records, rule, failed=failed, passed=9 - failed, timestamps=True)


CASES: dict[str, Callable[[], Case]] = {
    "not_null": _not_null,
    "range": _range,
    "in_set": _in_set,
    "regex": _regex,
    "schema": _schema,
    "unique": _unique,
    "freshness": _freshness,
    "volume": _volume,
    "drift": lambda: _drift(30.0),
}


def _flow(case: Case, dead: TestingSink, out: TestingSink, *, bounded: bool) -> Flow:
    flow = Flow("quality", error_policy=ErrorPolicy(dead_letter=dead))
    stream = flow.source(TestingSource(case.records, bounded=bounded))
    if case.timestamps:
        stream = stream.assign_timestamps(lambda r: r["ts"])
    stream.expect(case.rule).sink(out)
    return flow


async def _run_live(case: Case) -> tuple[Any, Any, TestingSink, TestingSink]:
    """Run the case's job until its rule judged everything; health and the rule's
    results then, while it runs."""
    dead, out = TestingSink(), TestingSink()
    job = _flow(case, dead, out, bounded=False).to_job()
    with LocalExecutor(ExecutorSettings()) as executor:
        checker = HealthChecker(executor)
        task = asyncio.create_task(executor.execute(job))
        stats = None
        for _ in range(2000):
            if task.done():
                break
            try:
                rules = executor.snapshot(job.job_id).metrics.step("quality").quality
            except (ExecutionError, KeyError):  # not started yet
                rules = {}
            stats = rules.get(case.rule.name)
            judged = 0 if stats is None else stats.passed + stats.failed
            if judged >= case.passed + case.failed and len(dead.records) >= len(case.dead):
                break
            await asyncio.sleep(0.01)
        report = await checker.check()
        await executor.stop(job.job_id)
        await task
    return report, stats, dead, out


@pytest.mark.parametrize("check", list(CASES))
def test_each_check_counts_dead_letters_and_degrades_health(check: str) -> None:
    case = CASES[check]()
    report, stats, dead, out = asyncio.run(_run_live(case))
    assert stats is not None and stats.check == case.rule.check
    assert (stats.passed, stats.failed) == (case.passed, case.failed)
    quality = next(c for c in report.components if c.name == "quality")
    assert quality.status == "DEGRADED", quality
    assert case.rule.name in quality.reason and report.status == "DEGRADED"
    key = "ts" if check == "unique" else "id"
    assert {e["record"][key] for e in dead.records} == case.dead
    assert len(dead.records) == len(case.dead)
    assert all(e["rule"] == case.rule.name for e in dead.records)
    assert all(e["error_type"] == "QualityViolation" for e in dead.records)
    kept = [r[key] for r in out.records]
    assert sorted(kept) == sorted(r[key] for r in case.records if r[key] not in case.dead)


def test_a_clean_stream_keeps_health_up() -> None:
    case = _drift(0.0)
    report, stats, dead, out = asyncio.run(_run_live(case))
    assert (stats.passed, stats.failed) == (9, 0)
    quality = next(c for c in report.components if c.name == "quality")
    assert quality.status == "UP" and report.status == "UP", report
    assert dead.records == [] and len(out.records) == len(case.records)


def test_drift_triggers_on_a_shifted_distribution_only() -> None:
    for shift, failed in ((0.0, 0), (30.0, 4), (-25.0, 4)):
        case = _drift(shift)
        result = run_job(_flow(case, TestingSink(), TestingSink(), bounded=True).to_job())
        stats = result.metrics.step("quality").quality[case.rule.name]
        # Bounded: the last window (one record, under min_records) is not judged.
        assert (stats.failed, stats.passed) == (failed, 9 - failed), shift
        assert stats.value is not None and (stats.value > 0.2) == bool(failed)


def test_volume_against_a_rolling_baseline() -> None:
    counts = [100, 100, 100, 100, 300, 100, 100]
    records = [{"ts": w * 1000 + i} for w, n in enumerate(counts) for i in range(n)]
    flow = Flow("volume")
    (
        flow.source(TestingSource(records))
        .assign_timestamps(lambda r: r["ts"])
        .expect(q.volume(window="1s", baseline=3, tolerance=0.5))
        .sink(TestingSink())
    )
    stats = run_job(flow.to_job()).metrics.step("quality").quality["volume"]
    # Windows 0-2 fill the baseline; 3, 5, 6 are near the mean, 4 is 3x it.
    assert (stats.passed, stats.failed) == (3, 1)


def test_processing_time_windows_when_the_stream_has_no_timestamps() -> None:
    records = [{"id": i % 600} for i in range(1000)]  # ids 0..399 twice
    flow, out = Flow("unique-pt"), TestingSink()
    flow.source(TestingSource(records)).expect(q.unique("id", window="1h")).sink(out)
    settings = ExecutorSettings(clock=ManualClock(start_ms=1_000))
    stats = run_job(flow.to_job(), settings).metrics.step("quality").quality["unique:id"]
    assert (stats.passed, stats.failed) == (600, 400)
    assert len(out.records) == 1000  # warn keeps them


def test_action_fail_fails_the_job_with_the_rule_and_the_record() -> None:
    flow = Flow("strict")
    records = [{"p": 1}, {"p": 2}, {"p": 500}, {"p": 3}]
    flow.source(TestingSource(records)).expect(
        q.in_range("p", max=100, action="fail", name="p-cap")
    ).sink(TestingSink())
    result = run_job(flow.to_job())
    assert result.status is JobStatus.FAILED
    assert "p-cap" in (result.error or "") and "500" in (result.error or "")


@pytest.mark.local_only  # reads the log of this process
def test_drop_without_a_dead_letter_output_counts_and_logs(caplog: Any) -> None:
    flow, out = Flow("no-dlq", error_policy=ErrorPolicy(ErrorMode.FAIL)), TestingSink()
    flow.source(TestingSource([{"p": i} for i in range(-3, 7)])).expect(
        q.in_range("p", min=0, action="drop")
    ).sink(out)
    result = run_job(flow.to_job())
    assert result.status is JobStatus.COMPLETED, result.error
    assert [r["p"] for r in out.records] == list(range(7))
    summary = result.metrics.step("quality")
    assert summary.rejected == 3 and summary.quality["range:p"].failed == 3
    assert caplog.text.count("QualityViolation") == 3


def test_five_rules_on_one_step_each_count_their_own() -> None:
    case_records, _ = _spoil(7, lambda r: r.update(price=None))
    rules = (
        q.not_null("price"),
        q.in_range("price", min=0, max=99),
        q.in_set("cur", ["EUR", "USD"]),
        q.matches("email", r"u\d+@x\.org"),
        q.schema({"price": "number"}, required=["id"]),
    )
    flow, out = Flow("five"), TestingSink()
    flow.source(TestingSource(case_records)).expect(*rules).sink(out)
    rules_out = run_job(flow.to_job()).metrics.step("quality").quality
    nulls = sum(1 for r in case_records if r["price"] is None)
    gbp = sum(1 for r in case_records if r["cur"] == "GBP")
    assert rules_out["not_null:price"].failed == nulls
    assert rules_out["range:price"].failed == 0
    assert rules_out["in_set:cur"].failed == gbp
    assert rules_out["regex:email"].failed == 0 and rules_out["schema"].failed == 0
    assert len(out.records) == N


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: q.in_range("p"), "needs 'min', 'max'"),
        (lambda: q.in_range("p", min=5, max=1), "above max"),
        (lambda: q.volume(window="1s", min=1, action="drop"), "does not apply"),
        (lambda: q.matches("s", "(a)\\1"), "not a valid RE2"),
        (lambda: q.not_null("p", action="explode"), "unknown action"),
        (lambda: q.schema({"p": "decimal128"}), "unknown type"),
        (lambda: q.unique("id", window="soon"), "not a duration"),
    ],
)
def test_bad_rules_are_refused_with_the_fix(build: Callable[[], Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build()


def test_regex_takes_linear_time_on_a_pathological_pattern() -> None:
    """(a+)+$ backtracks exponentially in Python's re; RE2 answers at once."""
    flow, out = Flow("redos"), TestingSink()
    records = [{"s": "a" * 40 + "!"} for _ in range(50)]
    flow.source(TestingSource(records)).expect(q.matches("s", "(a+)+")).sink(out)
    stats = run_job(flow.to_job()).metrics.step("quality").quality["regex:s"]
    assert stats.failed == 50


# -- the batch pre-check ----------------------------------------------------------------

_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 105),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["EUR", "USD", "", "x", "ÉUR", "EU\nR", "GBP\n"]),
    st.lists(st.integers(), max_size=2),
)
_RECORDS = st.lists(
    st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), _VALUES, min_size=3),
    min_size=1,
    max_size=8,
)


def _inline_rules() -> tuple[q.Expectation, ...]:
    return (
        q.not_null("a", "b"),
        q.in_range("b", min=0, max=100),
        q.in_set("c", ["EUR", "USD"]),
        q.schema({"a": "int", "d": "number"}, required=["c"]),
        q.in_range("d", max=10.5),
        q.matches("c", "[A-Z]{2}.?"),
    )


def _logic(rules: tuple[q.Expectation, ...], **context: Any) -> Any:
    from reflow.operators.base import OperatorContext
    from reflow.operators.quality.step import QualityOp

    ctx = OperatorContext("quality", 0, 1, lambda record, error: None, **context)
    return QualityOp(rules).build(ctx)


@settings(max_examples=200, deadline=None)
@given(_RECORDS)
@example([{"a": 0, "b": 0, "c": "EUR"}])  # no "d" (optional): the one-call read raised KeyError
def test_the_pre_check_passes_a_batch_exactly_when_no_rule_fails(batch: list[Any]) -> None:
    """Against the rules' exact, column-at-a-time checks on the same batch."""
    from reflow.operators.quality.base import Columns

    logic = _logic(_inline_rules())
    assert logic.not_inlined == [] and logic.precheck is not None
    columns = Columns(batch)
    failing = {r.expectation.name for r in logic.rules if r.logic.failures(batch, columns)}
    assert logic.precheck(batch) is (not failing), failing


@settings(max_examples=60, deadline=None)
@given(_RECORDS)
def test_counts_with_and_without_the_pre_check_are_the_same(batch: list[Any]) -> None:
    rules = (*_inline_rules(), q.matches("c", "[A-Z]{3}", name="three"), q.matches("a", "(a+)+"))
    fast, slow = _logic(rules), _logic(rules)
    slow.precheck = None
    assert fast.process(list(batch)) == slow.process(list(batch))
    assert {n: (s.passed, s.failed) for n, s in fast.ctx.quality.items()} == {
        n: (s.passed, s.failed) for n, s in slow.ctx.quality.items()
    }


def test_the_pre_check_reads_hostile_field_names_as_values() -> None:
    """Field names and values from a job file never become source text."""
    names = ["a'] or True or _r['", "__import__('os').system('false')", "x\n    return True"]
    rules = (
        q.not_null(names[0]),
        q.in_set(names[1], ["'); raise SystemExit('"]),
        q.in_range(names[2], min=0, max=1),
    )
    logic = _logic(rules)
    good = {names[0]: 1, names[1]: "'); raise SystemExit('", names[2]: 0.5}
    assert logic.precheck([good]) is True
    for bad in ({**good, names[0]: None}, {**good, names[1]: "x"}, {**good, names[2]: 2}):
        assert logic.precheck([good, bad]) is False
        logic.process([bad])
    assert {n: s.failed for n, s in logic.ctx.quality.items()} == {rule.name: 1 for rule in rules}


def test_the_pre_check_reads_decoded_json_records_by_the_decoders_own_keys() -> None:
    """The loop's field names are the JSON decoder's key objects (a lookup by
    identity); records decoded elsewhere, or keys it does not keep, read the same."""
    import orjson

    from reflow.operators.base import decoded_key

    for name in ("a", "dateTime", "prix", "Préis", "x" * 300, "\ud800"):
        assert decoded_key(name) == name
    decoded = orjson.loads(b'[{"a": 1, "b": 5, "c": "EUR"}, {"a": 2, "b": 7, "c": "USD"}]')
    assert all(key is decoded_key(key) for record in decoded for key in record)
    logic = _logic(_inline_rules())
    assert logic.precheck(decoded) is True
    assert logic.precheck([*decoded, {"a": 3, "b": 500, "c": "EUR"}]) is False
    assert logic.precheck(orjson.loads(b'[{"a": 1, "b": 5, "c": "EURO"}]')) is False


def _rows(batch: list[Any]) -> list[Any]:
    from reflow.connectors.typed import row_type

    kind = row_type({name: "ANY" for name in "abcd"})
    return [kind(**record) for record in batch]


@settings(max_examples=200, deadline=None)
@given(_RECORDS)
def test_the_pre_check_reads_typed_rows_as_the_exact_checks_do(batch: list[Any]) -> None:
    """Typed rows (a source's declared schema) have their columns read as
    attributes; a missing column is a null."""
    from reflow.operators.quality.base import Columns

    rows = _rows(batch)
    logic = _logic(_inline_rules())
    failing = {r.expectation.name for r in logic.rules if r.logic.failures(rows, Columns(rows))}
    assert logic.precheck(rows) is (not failing), failing
    # a batch of rows and dicts: never passed where a rule fails
    mixed = [*rows, *batch]
    if logic.precheck(mixed):
        assert not any(r.logic.failures(mixed, Columns(mixed)) for r in logic.rules)


def test_typed_rows_are_read_by_attribute_not_by_item(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = _rows([{"a": 1, "b": 50, "c": "EUR", "d": 2.5}, {"a": 2, "b": 0, "c": "USD"}])

    def item(self: Any, name: str) -> Any:
        raise AssertionError("row[name] called")

    monkeypatch.setattr(type(rows[0]), "__getitem__", item)
    assert _logic(_inline_rules()).precheck(rows) is True
    from reflow.connectors.typed import row_type

    # a column named by a keyword cannot be written as an attribute: attrgetter reads it
    kind = row_type({"from": "BIGINT", "c": "VARCHAR"})
    monkeypatch.setattr(kind, "__getitem__", item)
    logic = _logic((q.not_null("from", "c"),))
    assert logic.precheck([kind(**{"from": 1, "c": "x"})]) is True
    assert logic.precheck([kind(**{"from": None, "c": "x"})]) is False


def test_rules_on_a_typed_source_count_and_dead_letter_exactly(tmp_path: Any) -> None:
    """A source with a declared schema hands the step typed rows: clean batches
    pass the pre-check, batches with violations are judged record by record."""
    import json

    from reflow import Connectors

    lines = []
    bad: dict[str, set[int]] = {"range:price": set(), "in_set:cur": set(), "not_null:id": set()}
    for i in range(3000):
        record: dict[str, Any] = {"id": i, "price": i % 100, "cur": "EUR", "note": "x"}
        if i % 997 == 5:
            record["price"] = 1000
            bad["range:price"].add(i)
        if i % 1201 == 7:
            record["cur"] = "XXX"
            bad["in_set:cur"].add(i)
        if i == 2999:
            del record["id"]
            bad["not_null:id"].add(i)
        lines.append(json.dumps(record))
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n")
    schema = {"id": "BIGINT", "price": "BIGINT", "cur": "VARCHAR"}
    dead, out = TestingSink(), TestingSink()
    flow = Flow("typed-quality", error_policy=ErrorPolicy(dead_letter=dead))
    flow.source(Connectors.file(path=str(path), format="json", schema=schema)).expect(
        q.not_null("id", action="drop"),
        q.in_range("price", min=0, max=99, action="drop"),
        q.in_set("cur", ["EUR", "USD"], action="drop"),
        q.schema({"price": "int"}),
    ).sink(out)
    rules = run_job(flow.to_job()).metrics.step("quality").quality
    assert {name: rules[name].failed for name in bad} == {n: len(v) for n, v in bad.items()}
    assert rules["schema"].failed == 0 and rules["schema"].passed == 3000
    dropped = set().union(*bad.values())
    assert len(out.records) == 3000 - len(dropped)
    assert sorted(e["rule"] for e in dead.records) == sorted(n for n, v in bad.items() for _ in v)
    assert {(e["record"]["price"], e["record"]["cur"]) for e in dead.records} == {
        (1000 if i % 997 == 5 else i % 100, "XXX" if i % 1201 == 7 else "EUR") for i in dropped
    }
