"""Message payload formats shared by the message connectors: JSON, text, raw
bytes, CSV and Avro, and their errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reflow.connectors.messaging import PayloadCodec, PayloadOptions
from reflow.connectors.nats import NatsConnector
from reflow.errors import ConnectorConfigError

SCHEMA = {
    "type": "record",
    "name": "Reading",
    "fields": [
        {"name": "sensor", "type": "string"},
        {"name": "value", "type": "double"},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
    ],
}


def codec(**options: Any) -> PayloadCodec:
    return PayloadCodec(PayloadOptions(**options))


def test_avro_round_trip_from_an_inline_schema_and_an_avsc_file(tmp_path: Path) -> None:
    record = {"sensor": "s-1", "value": 21.5, "tags": ["a", "b"]}
    inline = codec(format="avro", avro_schema=SCHEMA)
    body = inline.encode(record)
    assert inline.decode(body) == record
    path = tmp_path / "reading.avsc"
    path.write_text(json.dumps(SCHEMA))
    assert codec(format="avro", avro_schema=str(path)).decode(body) == record


def test_avro_rejects_records_and_bodies_that_do_not_fit_the_schema() -> None:
    avro = codec(format="avro", avro_schema=SCHEMA)
    with pytest.raises((TypeError, ValueError)):
        avro.encode({"sensor": "s-1", "value": "not a number", "tags": []})
    body = avro.encode({"sensor": "s", "value": 1.0, "tags": []})
    with pytest.raises(ValueError, match="after the record"):
        avro.decode(body + b"\x00\x01")
    with pytest.raises(ValueError, match="not an Avro record"):
        avro.decode(b"\x09")


def test_csv_rows_with_and_without_field_names() -> None:
    named = codec(format="csv", csv_fields=["id", "name"], csv_delimiter=";")
    body = named.encode({"id": 7, "name": 'a;"b"'})
    assert body == b'7;"a;""b"""'
    assert named.decode(body) == {"id": "7", "name": 'a;"b"'}
    plain = codec(format="csv")
    assert plain.decode(plain.encode([1, "x,y"])) == ["1", "x,y"]
    with pytest.raises(TypeError, match="csv_fields"):
        plain.encode({"id": 1})
    with pytest.raises(ValueError, match="3 fields"):
        named.decode(b"1;2;3")
    with pytest.raises(ValueError, match="one row"):
        named.decode(b"1;2\n3;4")


def test_text_raw_and_json() -> None:
    assert codec(format="text").decode(codec(format="text").encode("héllo")) == "héllo"
    assert codec(format="raw").encode(b"\x00\xff") == b"\x00\xff"
    with pytest.raises(TypeError, match="bytes"):
        codec(format="raw").encode("str")
    with pytest.raises(ValueError):
        codec().decode(b"{broken")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"format": "avro"}, "format avro needs avro_schema"),
        ({"format": "avro", "avro_schema": {"type": "record"}}, "not a valid Avro schema"),
        ({"format": "avro", "avro_schema": "/nonexistent/x.avsc"}, "cannot be read"),
        ({"format": "csv", "csv_delimiter": ";;"}, "one character"),
        ({"format": "xml"}, "format"),
    ],
)
def test_wrong_payload_options_are_clear_errors_before_the_job_starts(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConnectorConfigError, match=message):
        NatsConnector().validate_config({"stream": "s", **options}, "sink")
