"""Connectors are found by name through entry points; specs work in keyword and fluent style."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from reflow import Connectors, Job, JobStatus
from reflow.connectors import available_connectors, get_connector, register_connector
from reflow.connectors.base import Connector, Sink, Source
from reflow.connectors.memory import TestingSource
from reflow.connectors.options import OptionsConnector
from reflow.errors import ConnectorNotFoundError
from reflow.testing import TestingSink, run_job


def test_builtins_are_registered_through_entry_points() -> None:
    from importlib.metadata import entry_points

    names = {ep.name for ep in entry_points(group="reflow.connectors")}
    assert {"file", "sql", "jdbc", "datagen", "stdout", "memory"} <= names
    assert set(available_connectors()) >= names


def test_unknown_connector_suggests_the_closest_name() -> None:
    with pytest.raises(
        ConnectorNotFoundError, match=r"no connector named 'fiel'; did you mean 'file'\?"
    ):
        get_connector("fiel")


def test_fluent_and_keyword_specs_are_equal() -> None:
    fluent = Connectors.sql().url("sqlite:///x.db").table("users").batch_size(100).build()
    keyword = Connectors.sql(url="sqlite:///x.db", table="users", batch_size=100)
    assert fluent == keyword


def test_a_connector_registered_in_process_runs() -> None:
    class Numbers(Connector):
        type = "numbers"

        def create_source(self, options: Mapping[str, Any]) -> Source:
            return TestingSource(range(int(options["count"])))

        def create_sink(self, options: Mapping[str, Any]) -> Sink:
            raise NotImplementedError

        def validate_config(self, options: Mapping[str, Any], role: str) -> None:
            pass

        def config_descriptor(self) -> Any:
            return None

    register_connector("numbers", Numbers)
    sink = TestingSink()
    result = run_job(Job.builder().source(Connectors.get("numbers", count=4)).sink(sink).build())
    assert result.status is JobStatus.COMPLETED
    assert sink.records == [0, 1, 2, 3]


def test_descriptor_lists_options_and_marks_secrets() -> None:
    descriptor = get_connector("sql").config_descriptor()
    options = {o.name: o for o in descriptor.options}
    assert options["url"].required and options["url"].secret
    assert options["password"].secret
    assert options["batch_size"].roles == ("sink",)
    assert options["batch_size"].default == 100


KAFKA_JOB = """
job:
  name: camel
  source:
    connector: kafka
    config:
      bootstrapServers: 127.0.0.1:1
      topic: orders
      groupId: billing
      start: committed
  sink: {connector: stdout}
"""


def test_yaml_takes_the_seeds_camel_case_for_every_option() -> None:
    from reflow.config.job_file import load_job_text

    job = load_job_text(KAFKA_JOB)  # start: committed is valid only with the group id
    assert job.job_name == "camel"
    connector = get_connector("kafka")
    assert isinstance(connector, OptionsConnector)
    options: Any = connector.parse(
        {"bootstrapServers": "h:1", "groupId": "g", "topic": "t"},
        "source",
        connector._model("source"),
    )
    assert (options.bootstrap_servers, options.group_id) == ("h:1", "g")


def test_an_option_given_in_two_spellings_is_refused() -> None:
    from reflow.config.job_file import load_job_text
    from reflow.errors import ConfigError

    text = KAFKA_JOB.replace("groupId: billing", "groupId: billing\n      group_id: other")
    with pytest.raises(ConfigError, match=r"option 'group_id' is given twice"):
        load_job_text(text)


def test_a_python_option_typo_fails_where_the_spec_is_written() -> None:
    from reflow.errors import ConnectorConfigError

    with pytest.raises(
        ConnectorConfigError, match=r"unknown source or sink option 'topik'; did you mean 'topic'"
    ):
        Connectors.kafka(topik="orders")
    assert Connectors.kafka(topic="orders", groupId="g").options["groupId"] == "g"
