"""The seed's job-file spellings: named connectors (§3.9.4), Kafka properties and
consumerGroup, JDBC driver classes and pool settings, operators without functions
(§6.2); reflow validate reports every problem in one pass, at the option's line."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from reflow.cli import main
from reflow.config import load_job_text
from reflow.connectors.options import OptionsConnector
from reflow.connectors.registry import get_connector
from reflow.errors import ConfigError

# The seed's §3.9.4 block, pointed at local servers, and a job using both by name.
NAMED = """
connectors:
  jdbc:
    type: jdbc
    driver: com.mysql.cj.jdbc.Driver
    url: jdbc:mysql://localhost:3306/db
    username: user
    password: password
    pool:
      maxSize: 20
      maxIdleTime: 30m

  kafka:
    type: kafka
    bootstrapServers: localhost:9092
    consumerGroup: etl-consumer
    topics:
      - user-events
      - order-events
    properties:
      enable.auto.commit: false
      max.poll.records: 500

job:
  name: named
  source: {connector: kafka}
  sink:
    connector: jdbc
    config: {table: user_stats, batchSize: 100}
"""


def test_named_connectors_of_the_seed_are_used_by_the_steps() -> None:
    job = load_job_text(NAMED)
    source, sink = job.stream_graph.sources[0].payload, job.stream_graph.sinks[0].payload
    kafka = get_connector("kafka")
    assert isinstance(kafka, OptionsConnector)
    options: Any = kafka.parse(source.options, "source", kafka._model("source"))
    assert source.connector == "kafka"
    assert options.topic_names == ["user-events", "order-events"]
    assert (options.group_id, options.max_records) == ("etl-consumer", 500)
    sql = get_connector("jdbc")
    assert isinstance(sql, OptionsConnector)
    sink_options: Any = sql.parse(sink.options, "sink", sql._model("sink"))
    assert sink_options.url == "mysql+pymysql://localhost:3306/db"
    assert (sink_options.pool_size, sink_options.pool_recycle) == (20, 1800.0)
    assert (sink_options.table, sink_options.batch_size) == ("user_stats", 100)


@pytest.mark.parametrize(
    ("change", "message", "line"),
    [
        ("enable.auto.commit: false", "enable.auto.commit must be false", None),
        ("max.poll.records: 500", "'fetch.min.bytes' is not supported here", None),
        (
            "driver: com.mysql.cj.jdbc.Driver",
            "sink: driver org.postgresql.Driver is for postgresql, but the URL is for mysql$",
            None,
        ),
    ],
)
def test_seed_connector_settings_that_cannot_apply_say_why(
    change: str, message: str, line: int | None
) -> None:
    replacement = {
        "enable.auto.commit: false": "enable.auto.commit: true",
        "max.poll.records: 500": "fetch.min.bytes: 1",
        "driver: com.mysql.cj.jdbc.Driver": "driver: org.postgresql.Driver",
    }[change]
    with pytest.raises(ConfigError, match=message) as caught:
        load_job_text(NAMED.replace(change, replacement), "named.yaml")
    if line is not None:
        assert f"named.yaml:{line}:" in str(caught.value)


BROKEN = """\
job:
  name: broken
  source:
    connector: file
    config:
      path: in.jsonl
      formt: json
  sink:
    connector: sql
    config:
      url: sqlite:///x.db
      tabel: out
"""


def test_validate_reports_every_problem_in_one_pass_at_the_options_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    assert main(["validate", str(path)], out=io.StringIO()) == 2
    err = capsys.readouterr().err
    assert "2 problems:" in err
    assert f"{path}:7: job.source.config.formt: connector 'file': unknown source option" in err
    assert f"{path}:12: job.sink.config.tabel: connector 'sql': unknown sink option" in err
    # The file's shape is checked before the connectors: its problems come together too.
    path.write_text(
        BROKEN.replace(
            "  sink:",
            "  operators:\n    - {name: a, type: map, function: x:y, expression: r}\n    - {name: b, type: window-aggregate}\n  sink:",
        )
    )
    assert main(["validate", str(path)], out=io.StringIO()) == 2
    err = capsys.readouterr().err
    assert "2 problems:" in err
    assert f"{path}:9: job.operators.0: operator 'a' (map) needs exactly one of" in err
    assert f"{path}:10: job.operators.1: window_aggregate needs 'window'" in err


def test_validate_takes_the_system_config_and_prints_notes(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(
        "job:\n  name: notes\n  source: {connector: datagen, config: {number_of_rows: 1}}\n"
        "  operators:\n    - {name: parse, type: map}\n"
        "    - {name: totals, type: window-aggregate, window: {type: tumbling, size: 1m}}\n"
        "  sink: {connector: stdout}\n"
    )
    system = tmp_path / "system.yaml"
    system.write_text("system:\n  executor:\n    parallelism: 3\n")
    out = io.StringIO()
    assert main(["validate", "--config", str(system), str(job)], out=out) == 0
    text = out.getvalue()
    assert "4 steps in 2 vertices" in text
    assert "note: operator 'parse' (map) has no function or expression" in text
    assert "note: operator 'totals' has no key" in text
    system.write_text("system:\n  executor:\n    parallelism: -1\n")
    assert main(["validate", "--config", str(system), str(job)], out=io.StringIO()) == 2
