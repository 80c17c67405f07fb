"""The connector contract kit: checks every connector must pass, for built-in and
third-party connectors alike (seed §8.1). Re-exported by ``reflow.testing``.

``check_connector(name, sink_options=..., source_options=...)`` runs against the
real system and raises ``AssertionError`` with what broke and how to fix it:

1. the connector is registered (entry point ``reflow.connectors``) and describes
   every option (``reflow connectors NAME``);
2. an unknown option is rejected before any I/O, naming the option;
3. a job writes ``records`` through the sink, and a job reads them back through
   the source, unchanged (in order if ``ordered``);
4. readers and writers report their connection for health checks, and close
   cleanly whether or not ``open`` ran;
5. a source whose reader reports a position (``snapshot``) resumes from it:
   a reader restored after the first batch reads exactly the rest.

``source_options`` must describe a bounded read of what the sink wrote (e.g. a
``stop_at_end`` flag); pass ``None`` for a sink-only or source-only connector.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from reflow.connectors.base import ConnectorContext, read_all
from reflow.connectors.registry import ConnectorSpec, get_connector
from reflow.errors import ConnectorConfigError

__all__ = ["ContractReport", "check_connector", "contract_records"]


def contract_records(count: int = 1_000) -> list[dict[str, Any]]:
    """JSON-friendly records with strings, ints, floats, booleans, None and unicode."""
    return [
        {
            "id": i,
            "name": f"name-{i}-é✓",
            "amount": i * 0.25,
            "flag": i % 3 == 0,
            "note": None if i % 5 == 0 else f"n{i % 7}",
        }
        for i in range(count)
    ]


@dataclass
class ContractReport:
    """What ``check_connector`` verified, and what it could not (with the reason)."""

    connector: str
    passed: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def _canonical(record: Any) -> bytes:
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


def check_connector(
    name: str,
    *,
    sink_options: Mapping[str, Any] | None,
    source_options: Mapping[str, Any] | None,
    records: Sequence[Any] | None = None,
    ordered: bool = False,
    normalize: Callable[[Any], Any] | None = None,
) -> ContractReport:
    """Run the contract against connector ``name``; see the module docstring."""
    from reflow.graph.job import Job, JobStatus
    from reflow.testing import TestingSink, TestingSource, run_job

    report = ContractReport(name)
    data = list(records) if records is not None else contract_records()
    connector = get_connector(name)

    descriptor = connector.config_descriptor()
    undocumented = [o.name for o in descriptor.options if not o.description.strip()]
    assert descriptor.options, f"{name}: config_descriptor() lists no options"
    assert not undocumented, f"{name}: options without a description: {undocumented}"
    report.passed.append("describes every option")

    for role, options in (("sink", sink_options), ("source", source_options)):
        if options is None:
            continue
        wrong = {**options, "no_such_option_xyz": 1}
        try:
            connector.validate_config(wrong, role)
        except ConnectorConfigError as exc:
            assert "no_such_option_xyz" in str(exc), (
                f"{name}: the {role} error for an unknown option does not name it: {exc}"
            )
        else:
            raise AssertionError(f"{name}: the {role} accepted an unknown option")
    report.passed.append("rejects unknown options by name")

    if sink_options is not None:
        sink = ConnectorSpec(name, dict(sink_options))
        result = run_job(Job.builder().source(TestingSource(data)).sink(sink, id="out").build())
        assert result.status is JobStatus.COMPLETED, f"{name}: the sink job failed: {result.error}"
        written = result.records_in("out")
        assert written == len(data), f"{name}: the sink took {written} of {len(data)} records"
        report.passed.append(f"sink wrote {len(data)} records")

    if source_options is not None:
        out = TestingSink()
        source = ConnectorSpec(name, dict(source_options))
        result = run_job(Job.builder().source(source).sink(out).build())
        assert result.status is JobStatus.COMPLETED, (
            f"{name}: the source job failed: {result.error}"
        )
        got = [normalize(r) for r in out.records] if normalize else list(out.records)
        if ordered:
            assert got == data, f"{name}: records came back changed or out of order"
        else:
            missing = Counter(map(_canonical, data)) - Counter(map(_canonical, got))
            extra = Counter(map(_canonical, got)) - Counter(map(_canonical, data))
            assert not missing and not extra, (
                f"{name}: {sum(missing.values())} records missing, {sum(extra.values())} "
                f"unexpected; e.g. {next(iter(missing or extra)).decode()[:200]}"
            )
        report.passed.append(f"source read back {len(got)} records unchanged")

    asyncio.run(_lifecycle(connector, name, sink_options, source_options, report, normalize))
    return report


async def _lifecycle(
    connector: Any,
    name: str,
    sink_options: Mapping[str, Any] | None,
    source_options: Mapping[str, Any] | None,
    report: ContractReport,
    normalize: Callable[[Any], Any] | None,
) -> None:
    if sink_options is not None:
        sink = connector.create_sink(sink_options)
        await sink.create_writer(ConnectorContext("contract-never-opened")).close()
        writer = sink.create_writer(ConnectorContext("contract-sink"))
        await writer.open()
        try:
            _check_health(name, "sink", await writer.health())
        finally:
            await writer.close()
        report.passed.append("sink writer: health, close with and without open")

    if source_options is None:
        return
    source = connector.create_source(source_options)
    await source.create_reader(ConnectorContext("contract-never-opened")).close()
    reader = source.create_reader(ConnectorContext("contract-source"))
    await reader.open()
    try:
        _check_health(name, "source", await reader.health())
        first: list[Any] = []
        while not first:  # the first non-empty batch
            batch = await reader.read_batch()
            if batch is None:
                break
            first = batch
        position = reader.snapshot()
    finally:
        await reader.close()
    report.passed.append("source reader: health, close with and without open")
    if position is None:
        report.skipped["resume from snapshot"] = (
            "the reader reports no position (it relies on acknowledgements or re-reads)"
        )
        return
    resumed = source.create_reader(ConnectorContext("contract-resume"))
    resumed.restore(position)
    rest = await read_all(resumed)
    whole = [*first, *rest]
    if normalize is not None:
        whole = [normalize(r) for r in whole]
    everything = source.create_reader(ConnectorContext("contract-all"))
    expected = await read_all(everything)
    if normalize is not None:
        expected = [normalize(r) for r in expected]
    assert Counter(map(_canonical, whole)) == Counter(map(_canonical, expected)), (
        f"{name}: a reader restored from snapshot() after {len(first)} records read "
        f"{len(rest)} more, not the remaining {len(expected) - len(first)}"
    )
    report.passed.append("source resumes exactly from its snapshot")


def _check_health(name: str, role: str, health: Any) -> None:
    if health is None:
        return
    ok, detail = health
    assert ok is True and isinstance(detail, str) and detail, (
        f"{name}: an open {role} reports itself unhealthy: {health}"
    )
