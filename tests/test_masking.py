"""One masking function hides URL passwords in errors, logs and the API: passwords
with '@', ':' or '/', lists of servers, and values that came from ${VAR}."""

from __future__ import annotations

import io
import logging
import socket

import orjson
import pytest

from reflow import Connectors, Job, JobStatus
from reflow.config import load_job_text
from reflow.errors import ConfigError
from reflow.masking import mask_credentials
from reflow.observability import setup_logging
from reflow.testing import TestingSource, run_job


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgresql://etl:s3cret@db:5432/w", "postgresql://etl:***@db:5432/w"),
        ("mysql://root:p@ss@word@127.0.0.1/x", "mysql://root:***@127.0.0.1/x"),
        ("redis://:pw/with/slash@host:6379/0", "redis://:***@host:6379/0"),
        ("nats://a:b@h1:4222,nats://tok3n@h2:4222", "nats://a:***@h1:4222,nats://***@h2:4222"),
        (
            "failed on 'amqp://guest:guest@localhost/': refused",
            "failed on 'amqp://guest:***@localhost/': refused",
        ),
        ("http://example.com/a?b=1", "http://example.com/a?b=1"),
    ],
)
def test_passwords_in_urls_are_masked_whatever_they_hold(text: str, shown: str) -> None:
    masked = mask_credentials(text)
    assert masked == shown
    for secret in ("s3cret", "ss@word", "pw/with", "tok3n", "guest@"):
        assert secret not in masked


def test_a_nats_connection_error_does_not_carry_the_password() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    servers = f"nats://app:hunter2@word@127.0.0.1:{port}"
    result = run_job(
        Job.builder()
        .source(TestingSource([{"a": 1}]))
        .sink(Connectors.nats(servers=servers, stream="masking"))
        .build()
    )
    assert result.status is JobStatus.FAILED
    assert f"app:***@127.0.0.1:{port}" in str(result.error)
    assert "hunter2" not in str(result.error)


def test_a_value_from_the_environment_is_not_echoed_in_validation_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WAREHOUSE_URL", "not-a-url-with-hunter2-inside")
    text = (
        "job:\n  name: x\n  source: {connector: datagen, config: {number_of_rows: 1}}\n"
        "  sink: {connector: sql, config: {url: '${WAREHOUSE_URL}', table: t}}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_job_text(text)
    assert "***" in str(caught.value) and "hunter2" not in str(caught.value)


@pytest.mark.parametrize("json", [False, True])
def test_logs_mask_passwords_at_the_boundary(json: bool) -> None:
    stream = io.StringIO()
    setup_logging(logging.INFO, json=json, stream=stream)
    try:
        logging.getLogger("reflow.test").warning(
            "cannot reach %s: %s", "redis://:hunter2@127.0.0.1:6379/0", "refused"
        )
    finally:
        setup_logging(logging.WARNING)
    out = stream.getvalue()
    assert "hunter2" not in out and "redis://:***@127.0.0.1:6379/0" in out
    if json:
        assert orjson.loads(out)["message"].startswith("cannot reach redis://:***@")
