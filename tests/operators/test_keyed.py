"""Keyed operators: rolling aggregates, deduplication, process functions with timers, joins."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import pytest

from reflow import Connectors, Flow, Job, JobStatus, Operators
from reflow.eventtime import ManualClock
from reflow.operators import Aggregations, Collectors, KeyedProcessFunction, ProcessContext, Windows
from reflow.runtime import ExecutorSettings, LocalExecutor
from reflow.testing import TestingSink, TestingSource, run_job

ORDERS = [
    {"region": r, "amount": a}
    for r, a in [("n", 10.0), ("s", 5.0), ("n", 2.5), ("e", 1.0), ("s", 4.0)]
]


@pytest.mark.parametrize("parallelism", [1, 3])
def test_seed_92_aggregate_emits_final_values_at_end_of_bounded_input(parallelism: int) -> None:
    sink = TestingSink()
    job = (
        Job.builder()
        .parallelism(parallelism)
        .source(TestingSource(ORDERS))
        .transform(
            Operators.aggregate(lambda o: o["region"], lambda o: o["amount"], lambda a, b: a + b)
        )
        .sink(sink)
        .build()
    )
    assert run_job(job).status is JobStatus.COMPLETED
    assert sorted(sink.records, key=lambda r: r["key"]) == [
        {"key": "e", "value": 1.0},
        {"key": "n", "value": 12.5},
        {"key": "s", "value": 9.0},
    ]


def test_rolling_updates() -> None:
    flow = Flow("rolling")
    sink = TestingSink()
    flow.source(TestingSource(ORDERS)).key_by("region").reduce(
        lambda a, b: a + b, value="amount", emit="updates"
    ).sink(sink)
    run_job(flow.to_job())
    assert [(r["region"], r["amount"]) for r in sink.records] == [
        ("n", 10.0),
        ("s", 5.0),
        ("n", 12.5),
        ("e", 1.0),
        ("s", 9.0),
    ]


def test_seed_93_window_aggregate_with_collectors() -> None:
    events = [
        {"user": u, "amount": a, "ts": t}
        for u, a, t in [
            ("u1", 1.5, 10),
            ("u2", 2.0, 20),
            ("u1", 3.0, 299_000),
            ("u1", 1.0, 301_000),
        ]
    ]
    sink_count, sink_sum = TestingSink(), TestingSink()
    graph_flow = Flow("seed-9.3")
    parsed = graph_flow.source(TestingSource(events)).assign_timestamps("ts")
    parsed.transform(
        Operators.window_aggregate(5 * 60_000, lambda e: e["user"], Collectors.counting())
    ).sink(sink_count)
    parsed.transform(
        Operators.window_aggregate(
            5 * 60_000, lambda e: e["user"], Collectors.summingDouble(lambda e: e["amount"])
        )
    ).sink(sink_sum)
    run_job(graph_flow.to_job())
    assert sorted((r["key"], r["window_start"], r["value"]) for r in sink_count.records) == [
        ("u1", 0, 2),
        ("u1", 300_000, 1),
        ("u2", 0, 1),
    ]
    assert sorted((r["key"], r["value"]) for r in sink_sum.records) == [
        ("u1", 1.0),
        ("u1", 4.5),
        ("u2", 2.0),
    ]


def test_top_n_min_max_avg() -> None:
    events = [{"k": "a", "ts": t, "v": v} for t, v in [(1, 5), (2, 9), (3, 1), (4, 7)]]
    results = {}
    for name, agg in [
        ("top", Aggregations.top_n(2, "v")),
        ("min", Aggregations.min("v")),
        ("max", Aggregations.max("v")),
        ("avg", Aggregations.avg("v")),
    ]:
        flow = Flow(name)
        sink = TestingSink()
        flow.source(TestingSource(events)).assign_timestamps("ts").key_by("k").window(
            Windows.tumbling(100)
        ).aggregate(agg).sink(sink)
        run_job(flow.to_job())
        results[name] = sink.records[0]["value"]
    assert results == {"top": [9, 7], "min": 1, "max": 9, "avg": 5.5}


def test_global_window_with_count_trigger() -> None:
    flow = Flow("every-3")
    sink = TestingSink()
    flow.source(TestingSource(range(8))).key_by(lambda x: x % 2).window(
        Windows.global_count(3)
    ).aggregate(Aggregations.collect()).sink(sink)
    run_job(flow.to_job())
    assert [r["value"] for r in sink.records] == [[0, 2, 4], [1, 3, 5], [6], [7]]


def test_deduplicate_within_event_time_ttl() -> None:
    events = [{"id": i, "ts": t} for i, t in [(1, 0), (2, 10), (1, 500), (1, 1_500), (2, 1_000)]]
    flow = Flow("dedup")
    sink = TestingSink()
    flow.source(TestingSource(events)).assign_timestamps("ts").key_by("id").deduplicate(
        ttl_ms=1_000
    ).sink(sink)
    run_job(flow.to_job())
    assert [(e["id"], e["ts"]) for e in sink.records] == [(1, 0), (2, 10), (1, 1_500)]


class Alerts(KeyedProcessFunction):
    """Emit a user's total 1 s (event time) after their first purchase."""

    def process_element(self, record: Any, ctx: ProcessContext) -> Iterable[Any]:
        total = ctx.state.value_state("total")
        if total.value() is None:
            assert ctx.timestamp is not None
            ctx.register_event_time_timer(ctx.timestamp + 1_000)
        total.update((total.value() or 0) + record["amount"])
        return []

    def on_timer(self, timestamp: int, ctx: ProcessContext) -> Iterable[Any]:
        yield {"user": ctx.key, "total": ctx.state.value_state("total").value(), "at": timestamp}
        ctx.state.value_state("total").clear()


@pytest.mark.parametrize("backend", ["memory", "rocksdb"])
def test_process_function_with_state_and_event_time_timers(backend: str) -> None:
    events = [
        {"u": u, "amount": a, "ts": t}
        for u, a, t in [("a", 1, 0), ("b", 5, 100), ("a", 2, 900), ("a", 4, 1_200), ("b", 1, 3_000)]
    ]
    # One subtask and one record per batch: the watermark follows the records in order.
    flow = Flow("alerts", batch_size=1)
    sink = TestingSink()
    flow.source(TestingSource(events)).assign_timestamps("ts").key_by("u").process(Alerts()).sink(
        sink
    )
    run_job(flow.to_job(), ExecutorSettings(state_backend=backend))
    # The record at 1200 is counted before the watermark it raises fires the timer at 1000.
    assert sink.records == [
        {"user": "a", "total": 7, "at": 1_000},
        {"user": "b", "total": 5, "at": 1_100},
        {"user": "b", "total": 1, "at": 4_000},
    ]


class Reminder(KeyedProcessFunction):
    def process_element(self, record: Any, ctx: ProcessContext) -> Iterable[Any]:
        ctx.register_processing_time_timer(ctx.current_processing_time() + 2_000)
        return []

    def on_timer(self, timestamp: int, ctx: ProcessContext) -> Iterable[Any]:
        return [(ctx.key, timestamp)]


def test_processing_time_timers_fire_on_the_clock() -> None:
    clock = ManualClock(start_ms=0)
    flow = Flow("remind")
    sink = TestingSink()
    flow.source(TestingSource(["x"], bounded=False)).key_by(lambda r: r).process(Reminder()).sink(
        sink
    )
    job = flow.to_job()

    async def scenario() -> tuple[list[Any], list[Any]]:
        with LocalExecutor(ExecutorSettings(clock=clock)) as executor:
            task = asyncio.create_task(executor.execute(job))
            for _ in range(20):
                await asyncio.sleep(0)  # the record is processed at clock time 0
            await clock.advance_and_settle(1.0, step=0.1)
            early = list(sink.records)
            await clock.advance_and_settle(1.5, step=0.1)
            late = list(sink.records)
            await executor.stop(job.job_id)
            await task
            return early, late

    early, late = asyncio.run(scenario())
    assert early == [] and late == [("x", 2_000)]


def test_window_join() -> None:
    flow = Flow("wjoin", parallelism=2)
    orders = flow.source(
        TestingSource(
            [
                {"user": "a", "ts": 100, "o": 1},
                {"user": "b", "ts": 1_500, "o": 2},
                {"user": "a", "ts": 1_100, "o": 3},
            ]
        ),
        id="orders",
    ).assign_timestamps("ts")
    clicks = flow.source(
        TestingSource(
            [
                {"user": "a", "ts": 900, "c": "x"},
                {"user": "a", "ts": 1_900, "c": "y"},
                {"user": "c", "ts": 100, "c": "z"},
            ]
        ),
        id="clicks",
    ).assign_timestamps("ts")
    sink = TestingSink()
    orders.window_join(clicks, "user", "user", 1_000, join=lambda o, c: (o["o"], c["c"])).sink(sink)
    assert run_job(flow.to_job()).status is JobStatus.COMPLETED
    assert sorted(sink.records) == [(1, "x"), (3, "y")]


def test_the_default_join_merges_typed_rows_as_it_merges_dicts(tmp_path: Any) -> None:
    """A source with a declared schema gives typed rows: joined with dicts (or with
    typed rows), the default join merges the fields, the left's winning."""
    import json

    from reflow import Connectors

    path = tmp_path / "orders.jsonl"
    orders = [{"user": "a", "ts": 100, "o": 1}, {"user": "b", "ts": 1_500, "o": 2}]
    path.write_text("".join(json.dumps(r) + "\n" for r in orders))
    schema = {"user": "VARCHAR", "ts": "BIGINT", "o": "BIGINT"}
    flow = Flow("typed-join")
    left = flow.source(
        Connectors.file(path=str(path), format="json", schema=schema), id="orders"
    ).assign_timestamps("ts")
    right = flow.source(
        TestingSource([{"user": "a", "ts": 900, "c": "x"}, {"user": "b", "ts": 100, "c": "y"}]),
        id="clicks",
    ).assign_timestamps("ts")
    sink = TestingSink()
    left.window_join(right, "user", "user", 1_000).sink(sink)
    assert run_job(flow.to_job()).status is JobStatus.COMPLETED
    assert sink.records == [{"user": "a", "ts": 100, "c": "x", "o": 1}]


def test_interval_join() -> None:
    flow = Flow("ijoin")
    left = flow.source(
        TestingSource([{"k": 1, "ts": 1_000}, {"k": 1, "ts": 5_000}]), id="l"
    ).assign_timestamps("ts")
    right = flow.source(
        TestingSource([{"k": 1, "ts": 1_400}, {"k": 1, "ts": 2_600}, {"k": 2, "ts": 1_000}]), id="r"
    ).assign_timestamps("ts")
    sink = TestingSink()
    left.interval_join(right, "k", "k", 0, 1_500, join=lambda a, b: (a["ts"], b["ts"])).sink(sink)
    run_job(flow.to_job())
    assert sink.records == [(1_000, 1_400)]


@pytest.mark.parametrize(
    ("outer", "extra"),
    [
        ("left", [(5_000, None), (7_000, None)]),
        ("right", [(None, 2_600), (None, 1_000), (None, 9_000)]),
        ("full", [(5_000, None), (7_000, None), (None, 2_600), (None, 1_000), (None, 9_000)]),
    ],
)
def test_outer_interval_join_pads_what_joined_nothing(
    outer: Literal["left", "right", "full"], extra: list[Any]
) -> None:
    """Unmatched records of the outer side come out once the watermark passes their
    interval (end of input for the last ones); a None key joins nothing; a pair the
    condition refuses is no match."""
    flow = Flow("ijoin-outer", batch_size=1)
    left = flow.source(
        TestingSource([{"k": 1, "ts": 1_000}, {"k": 1, "ts": 5_000}, {"k": None, "ts": 7_000}]),
        id="l",
    ).assign_timestamps("ts")
    right = flow.source(
        TestingSource(
            [
                {"k": 1, "ts": 1_400},
                {"k": 1, "ts": 2_600},
                {"k": 2, "ts": 1_000},
                {"k": None, "ts": 9_000},
                {"k": 1, "ts": 5_100, "no": True},
            ]
        ),
        id="r",
    ).assign_timestamps("ts")
    sink = TestingSink()
    left.interval_join(
        right,
        "k",
        "k",
        0,
        1_500,
        join=lambda a, b: (a and a["ts"], b and b["ts"]),
        outer=outer,
        condition=lambda pair: pair[1] != 5_100,
    ).sink(sink)
    assert run_job(flow.to_job()).status is JobStatus.COMPLETED
    expected = [(1_000, 1_400), *extra]
    if outer in ("right", "full"):
        expected.append((None, 5_100))  # refused by the condition: unmatched
    key = repr
    assert sorted(sink.records, key=key) == sorted(expected, key=key)


def test_lookup_enrichment_from_a_sql_table_with_cache(sqlite_url: str) -> None:
    users = [{"id": 1, "tier": "gold"}, {"id": 2, "tier": "basic"}]
    run_job(
        Job.builder()
        .source(TestingSource(users))
        .sink(Connectors.sql(url=sqlite_url, table="users", create_table=True, key="id"))
        .build()
    )
    flow = Flow("enrich")
    sink = TestingSink()
    flow.source(
        TestingSource([{"user": 2, "n": 1}, {"user": 1, "n": 2}, {"user": 9, "n": 3}])
    ).lookup(
        Connectors.sql(url=sqlite_url, table="users"),
        key="user",
        lookup_key="id",
        join=lambda r, u: {**r, "tier": u["tier"] if u else None},
    ).sink(sink)
    run_job(flow.to_job())
    assert sink.records == [
        {"user": 2, "n": 1, "tier": "basic"},
        {"user": 1, "n": 2, "tier": "gold"},
        {"user": 9, "n": 3, "tier": None},
    ]


def test_seed_92_rolling_aggregate_goes_to_a_csv_file_as_it_is(tmp_path: Path) -> None:
    """Rolling aggregates emit dicts named after their fields, so the seed's §9.2
    (aggregate -> CSV file) needs no 'columns' option."""

    def get_region(order: dict[str, Any]) -> str:
        return str(order["region"])

    path = tmp_path / "daily.csv"
    job = (
        Job.builder()
        .source(TestingSource(ORDERS))
        .transform(Operators.aggregate(get_region, "amount", lambda a, b: a + b))
        .sink(Connectors.file(path=str(path), format="csv"))
        .build()
    )
    assert run_job(job).status is JobStatus.COMPLETED
    lines = path.read_text().splitlines()
    assert lines[0] == "region,amount"
    assert sorted(lines[1:]) == ["e,1.0", "n,12.5", "s,9.0"]


@pytest.mark.parametrize("retract", [True, False])
def test_changelog_with_visible_deletes_keys_that_leave_and_inserts_those_that_enter(
    retract: bool,
) -> None:
    """``visible`` (SQL's HAVING): a key shows only while its result meets it."""
    flow = Flow("having")
    sink = TestingSink()
    amounts = [5, -10, 10, 10, -100, 1]  # totals 5, -5, 5, 15, -85, -84
    flow.source(TestingSource([{"k": "a", "v": v} for v in amounts])).key_by("k").aggregate(
        Aggregations.sum("v"),
        emit="changelog",
        retract=retract,
        visible=lambda key, total: total > 0,
    ).sink(sink)
    assert run_job(flow.to_job()).status is JobStatus.COMPLETED
    kinds = [(r["op"], r["v"]) for r in sink.records]
    assert kinds == [
        ("+I", 5),
        ("-D", 5),  # the total left: the row sent before is deleted
        ("+I", 5),  # back in
        *([("-U", 5)] if retract else []),
        ("+U", 15),
        ("-D", 15),
        # -84 stays out: nothing
    ]


@pytest.mark.parametrize("retract", [True, False])
def test_changelog_aggregate_sends_inserts_and_updates(retract: bool) -> None:
    """+I for a key's first result (even a falsy one), -U/+U for each change, nothing
    for a record that leaves the result as it was."""
    flow = Flow("changelog")
    sink = TestingSink()
    values = [("a", 0), ("a", 1), ("b", 5), ("a", 1), ("a", 2)]
    flow.source(TestingSource([{"k": k, "v": v} for k, v in values])).key_by("k").aggregate(
        Aggregations.reduce(lambda acc, v: v, "v"),
        emit="changelog",
        retract=retract,
        changelog_column="kind",
    ).sink(sink)
    assert run_job(flow.to_job()).status is JobStatus.COMPLETED
    expected = [
        {"k": "a", "v": 0, "kind": "+I"},
        *([{"k": "a", "v": 0, "kind": "-U"}] if retract else []),
        {"k": "a", "v": 1, "kind": "+U"},
        {"k": "b", "v": 5, "kind": "+I"},
        *([{"k": "a", "v": 1, "kind": "-U"}] if retract else []),
        {"k": "a", "v": 2, "kind": "+U"},
    ]
    assert sink.records == expected
