"""YAML job files and the system config: shapes of seed §6, errors with line numbers, ${ENV}."""

from __future__ import annotations

from pathlib import Path

import pytest

from reflow import ConfigError, JobStatus, JobType
from reflow.config import (
    executor_settings,
    load_job,
    load_job_text,
    load_system_config_text,
    load_yaml_text,
)
from reflow.testing import memory_store, run_job

JOB = """\
job:
  id: user-etl-job
  name: User Data ETL
  type: batch
  parallelism: 2
  source:
    connector: memory
    config:
      collection: {src}
  operators:
    - name: parse
      type: map
      expression: "{{'user': r['u'], 'n': r['n'] * 2}}"
    - name: filter
      type: filter
      expression: "r['n'] > 2"
  sink:
    connector: memory
    config:
      collection: {dst}
      append: false
"""


def test_job_file_runs(tmp_path: Path) -> None:
    memory_store["yaml-in"] = [{"u": f"u{i}", "n": i} for i in range(5)]
    path = tmp_path / "job.yaml"
    path.write_text(JOB.format(src="yaml-in", dst="yaml-out"))
    job = load_job(path)
    assert job.job_id == "user-etl-job"
    assert job.job_type is JobType.BATCH
    assert [v.parallelism for v in job.job_graph.vertices] == [2]
    assert run_job(job).status is JobStatus.COMPLETED
    assert sorted(r["n"] for r in memory_store["yaml-out"]) == [4, 6, 8]


@pytest.mark.parametrize(
    "text,line,message",
    [
        ("job:\n  name: x\n  source: {connector: memory\n", 4, "invalid YAML"),
        ("job:\n  name: x\n  nmae: y\n", 3, "unknown key 'nmae'"),
        # an unknown key names the close one and the keys its place takes
        ("job:\n  name: x\n  nmae: y\n", 3, "did you mean 'name'? keys here: "),
        (
            "job:\n  name: x\n  source: {connector: datagen}\n  operators:\n"
            "    - name: c\n      type: window_aggregate\n      aggregate: {kind: count}\n"
            "  sink: {connector: stdout}\n",
            7,
            "unknown key 'kind'; keys here: type, field, expression",
        ),
        (
            "job:\n  name: x\n  source: {connector: datagen}\n  restart:\n    stratgy: fixed\n"
            "  sink: {connector: stdout}\n",
            5,
            "did you mean 'strategy'?",
        ),
        (
            "job:\n  source: {connector: stdout}\n  sink: {connector: stdout}\n",
            1,
            "missing required key 'name'",
        ),
        (
            "job:\n  name: x\n  source:\n    connector: memory\n    config:\n      colection: a\n"
            "  sink: {connector: stdout}\n",
            6,  # the option's own line
            "did you mean 'collection'",
        ),
        (
            "job:\n  name: x\n  source: {connector: fiel, config: {path: a.jsonl}}\n"
            "  sink: {connector: stdout}\n",
            3,
            "did you mean 'file'",
        ),
        (
            "job:\n  name: x\n  source: {connector: datagen}\n  operators:\n"
            "    - name: m\n      type: map\n      function: no_such_module:fn\n"
            "  sink: {connector: stdout}\n",
            7,
            "cannot import module 'no_such_module'",
        ),
        (
            "job:\n  name: x\n  source: {connector: datagen}\n  operators:\n"
            "    - {name: m, type: map, expression: 'r +'}\n  sink: {connector: stdout}\n",
            5,
            "invalid expression",
        ),
        (
            "job:\n  name: x\n  source: {connector: datagen}\n  operators:\n"
            "    - {name: m, type: explode, expression: r}\n  sink: {connector: stdout}\n",
            5,
            "unknown operator type 'explode'",
        ),
        # types a user coming from elsewhere writes: the error says how reflow spells them
        (
            "job:\n  name: x\n  source: {connector: datagen}\n  operators:\n"
            "    - {name: m, type: quality}\n  sink: {connector: stdout}\n",
            5,
            "list them under 'quality:' on the source or operator",
        ),
        (
            "job:\n  name: x\n  source: {connector: datagen}\n  operators:\n"
            "    - {name: m, type: tumbling}\n  sink: {connector: stdout}\n",
            5,
            "a window is 'type: window_aggregate'",
        ),
        (
            "job:\n  name: x\n  source: {connector: datagen}\n  operators:\n"
            "    - {name: m, type: sql}\n  sink: {connector: stdout}\n",
            5,
            "write it under 'job:' as 'sql: |'",
        ),
        (
            "job:\n  name: x\n  source: {connector: datagen}\n  sink:\n    connector: stdout\n"
            "    inputs: [nowhere]\n",
            6,
            "unknown step 'nowhere'",
        ),
        ("job:\n  name: x\n  name: y\n", 3, "key 'name' appears twice"),
        (
            "job:\n  name: x\n  parallelism: 0\n  source: {connector: datagen}\n"
            "  sink: {connector: stdout}\n",
            3,
            "greater than 0",
        ),
    ],
)
def test_errors_give_file_line_and_fix(text: str, line: int, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_job_text(text, "job.yaml")
    assert err.value.file == "job.yaml"
    assert err.value.line == line, str(err.value)
    assert message in str(err.value)
    assert str(err.value).startswith(f"job.yaml:{line}: ")


def test_environment_variables_fill_secrets_and_are_marked() -> None:
    loaded = load_yaml_text(
        "sink:\n  url: postgresql://etl:${DB_PASSWORD}@db/${DB_NAME:-warehouse}\n",
        env={"DB_PASSWORD": "pa55"},
    )
    assert loaded.data["sink"]["url"] == "postgresql://etl:pa55@db/warehouse"
    assert ("sink", "url") in loaded.secret_paths


def test_missing_environment_variable_is_an_error_with_its_line() -> None:
    with pytest.raises(ConfigError, match=r"x.yaml:3: .*DB_PASSWORD is not set"):
        load_yaml_text("a: 1\nb:\n  c: ${DB_PASSWORD}\n", "x.yaml", env={})


def test_function_next_to_the_job_file(tmp_path: Path) -> None:
    (tmp_path / "udfs_for_test.py").write_text("def triple(r):\n    return r * 3\n")
    memory_store["fn-in"] = [1, 2]
    (tmp_path / "job.yaml").write_text(
        "job:\n  name: fn\n  source: {connector: memory, config: {collection: fn-in}}\n"
        "  operators:\n    - {name: t, type: map, function: 'udfs_for_test:triple'}\n"
        "  sink: {connector: memory, config: {collection: fn-out, append: false}}\n"
    )
    run_job(load_job(tmp_path / "job.yaml"))
    assert memory_store["fn-out"] == [3, 6]


def test_fan_out_and_key_by_in_yaml() -> None:
    memory_store["fan-in"] = [{"k": i % 3, "v": i} for i in range(30)]
    job = load_job_text(
        "job:\n  name: fan\n  parallelism: 3\n"
        "  source: {connector: memory, config: {collection: fan-in}}\n"
        "  operators:\n"
        "    - {name: by-k, type: key_by, key: k}\n"
        "    - {name: odd, type: filter, expression: \"r['v'] % 2\", inputs: [by-k]}\n"
        "    - {name: even, type: filter, expression: \"r['v'] % 2 == 0\", inputs: [by-k]}\n"
        "  sinks:\n"
        "    - {name: odd-out, connector: memory, config: {collection: odd, append: false}, inputs: [odd]}\n"
        "    - {name: even-out, connector: memory, config: {collection: even, append: false}, inputs: [even]}\n"
    )
    assert run_job(job).status is JobStatus.COMPLETED
    assert sorted(r["v"] for r in memory_store["odd"]) == list(range(1, 30, 2))
    assert sorted(r["v"] for r in memory_store["even"]) == list(range(0, 30, 2))


def test_system_config_of_seed_61() -> None:
    config = load_system_config_text(
        """
system:
  name: reactive-etl-framework
  version: 1.0.0
  executor:
    type: single-node
    parallelism: 4
    threadPool:
      coreSize: 10
      maxSize: 50
  scheduler:
    type: quartz
    threadPoolSize: 20
    jobQueueSize: 1000
  checkpoint:
    enabled: true
    interval: 60s
    timeout: 10s
    storage:
      type: filesystem
      path: /data/checkpoints
  state:
    backend: memory
    rocksdb:
      path: /data/state
      blockCacheSize: 256m
  metrics:
    enabled: true
    reporters:
      - type: prometheus
        port: 9090
      - type: slf4j
        interval: 60s
"""
    )
    settings = executor_settings(config)
    assert settings.parallelism == 4
    assert settings.io_threads == 50
    assert settings.io_threads_started == 10  # coreSize: started with the pool
    assert config.scheduler.job_queue_size == 1000


def test_system_config_error_has_a_line() -> None:
    with pytest.raises(ConfigError, match=r"sys.yaml:4: .*backend"):
        load_system_config_text(
            "system:\n  executor: {parallelism: 2}\n  state:\n    backend: redis\n", "sys.yaml"
        )


def test_window_aggregate_in_yaml_with_late_side_output() -> None:
    memory_store["bids-in"] = [
        {"auction": a, "dateTime": t}
        for a, t in [(1, 100), (2, 900), (1, 10_500), (1, 200), (2, 19_999)]
    ]
    job = load_job_text(
        """
job:
  name: q5-yaml
  batch_size: 1
  source: {connector: memory, config: {collection: bids-in}}
  operators:
    - name: event-time
      type: assign_timestamps
      timestamp: dateTime
      max_out_of_orderness: 200ms
    - name: counts
      type: window-aggregate
      key: auction
      window: {type: tumbling, size: 10s}
      aggregate: {type: count}
  sinks:
    - {name: out, connector: memory, config: {collection: bids-out, append: false}, inputs: [counts]}
    - {name: late, connector: memory, config: {collection: bids-late, append: false}, inputs: [counts.late]}
"""
    )
    result = run_job(job)
    assert result.status is JobStatus.COMPLETED, result.error
    got = sorted((r["key"], r["window_start"], r["value"]) for r in memory_store["bids-out"])
    assert got == [(1, 0, 1), (1, 10_000, 1), (2, 0, 1), (2, 10_000, 1)]
    assert memory_store["bids-late"] == [{"auction": 1, "dateTime": 200}]


@pytest.mark.parametrize("assigner", [True, False])
def test_steps_after_a_window_in_yaml_read_the_results_event_time(assigner: bool) -> None:
    """A window's results carry their window's last millisecond as event time:
    minute sums summed again per 10 minutes, with the timestamps assigned by a step
    or given to the first window itself (its late records keep the input's)."""
    memory_store["ticks-in"] = [{"k": i % 2, "t": i * 20_000, "v": 1} for i in range(100)]
    stamp = "    - {name: event-time, type: assign_timestamps, timestamp: t}\n" if assigner else ""
    own = "" if assigner else "      timestamp: t\n"
    job = load_job_text(
        "job:\n  name: rollup\n  source: {connector: memory, config: {collection: ticks-in}}\n"
        "  operators:\n"
        f"{stamp}"
        "    - name: minutes\n      type: window-aggregate\n      key: k\n"
        f"{own}"
        "      window: {type: tumbling, size: 1m, time: event}\n"
        "      aggregate: {type: sum, field: v}\n"
        "    - name: tens\n      type: window-aggregate\n      key: key\n"
        "      window: {type: tumbling, size: 10m, time: event}\n"
        "      aggregate: {type: sum, field: value}\n"
        "  sink: {connector: memory, config: {collection: ticks-out, append: false}}\n",
        "rollup.yaml",
    )
    result = run_job(job)
    assert result.status is JobStatus.COMPLETED, result.error
    got = sorted((r["key"], r["window_start"], r["value"]) for r in memory_store["ticks-out"])
    expected: dict[tuple[int, int], int] = {}
    for tick in memory_store["ticks-in"]:
        ten = (tick["k"], tick["t"] - tick["t"] % 600_000)
        expected[ten] = expected.get(ten, 0) + 1
    assert got == sorted((k, start, n) for (k, start), n in expected.items())


def test_rolling_aggregate_and_dedup_in_yaml() -> None:
    memory_store["orders-in"] = [
        {"id": 1, "region": "n", "amount": 2.0},
        {"id": 1, "region": "n", "amount": 2.0},
        {"id": 2, "region": "s", "amount": 1.5},
        {"id": 3, "region": "n", "amount": 1.0},
    ]
    job = load_job_text(
        """
job:
  name: daily
  source: {connector: memory, config: {collection: orders-in}}
  operators:
    - {name: once, type: deduplicate, key: id}
    - name: totals
      type: aggregate
      key: region
      aggregate: {type: sum, field: amount}
  sink: {connector: memory, config: {collection: orders-out, append: false}}
"""
    )
    assert run_job(job).status is JobStatus.COMPLETED
    assert sorted(memory_store["orders-out"], key=lambda r: r["region"]) == [
        {"region": "n", "amount": 3.0},
        {"region": "s", "amount": 1.5},
    ]


@pytest.mark.parametrize(
    ("window", "message"),
    [
        ("{type: sliding, size: 1m}", "a sliding window needs slide"),
        ("{type: cumulative, size: 1d}", "a cumulative window needs step"),
        ("{type: cumulative, size: 1d, step: 7h}", "the step must be > 0 and divide the size"),
    ],
)
def test_window_needs_its_size(window: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_job_text(
            "job:\n  name: x\n  source: {connector: datagen}\n  operators:\n"
            "    - name: w\n      type: window_aggregate\n      key: id\n"
            f"      window: {window}\n  sink: {{connector: stdout}}\n",
            "j.yaml",
        )


def test_a_cumulative_window_in_yaml_counts_each_period_so_far() -> None:
    memory_store["cumulative-in"] = [{"k": "a", "t": t} for t in (100, 1_500, 2_500, 3_100)]
    job = load_job_text(
        "job:\n  name: running\n"
        "  source: {connector: memory, config: {collection: cumulative-in}}\n"
        "  operators:\n"
        "    - {name: event-time, type: assign_timestamps, timestamp: t}\n"
        "    - name: so-far\n      type: window-aggregate\n      key: k\n"
        "      window: {type: cumulative, size: 3s, step: 1s}\n"
        "      aggregate: {type: count}\n"
        "  sink: {connector: memory, config: {collection: cumulative-out, append: false}}\n",
        "running.yaml",
    )
    assert run_job(job).status is JobStatus.COMPLETED
    assert [
        (r["window_start"], r["window_end"], r["value"]) for r in memory_store["cumulative-out"]
    ] == [
        (0, 1_000, 1),
        (0, 2_000, 2),
        (0, 3_000, 3),
        (3_000, 4_000, 1),
        (3_000, 5_000, 1),
        (3_000, 6_000, 1),
    ]


_MAP = "type: map, expression: r"


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (f"window: {{type: tumbling, size: 1m}}, {_MAP}", "'window' does not apply to a map step"),
        (f"ttl: 1h, {_MAP}", "'ttl' does not apply to a map step .*deduplicate"),
        (f"timestamp: ts, {_MAP}", "'timestamp' does not apply to a map step .*assign_timestamps"),
        (f"key: id, {_MAP}", "'key' does not apply to a map step .*key_by and window_aggregate"),
        # a deduplicate takes a key, not a function: the expression was dropped
        (
            "type: deduplicate, key: id, expression: r",
            "'expression' does not apply to a deduplicate",
        ),
    ],
)
def test_an_option_of_another_step_type_is_an_error_not_ignored(step: str, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"j.yaml:5: .*{message}"):
        load_job_text(
            "job:\n  name: x\n  source: {connector: datagen}\n  operators:\n"
            f"    - {{name: m, {step}}}\n"
            "  sink: {connector: stdout}\n",
            "j.yaml",
        )
