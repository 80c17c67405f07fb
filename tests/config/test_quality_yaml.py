"""``quality:`` on a step of a job file: the checks run after the step, drop to the
job's dead-letter output, and a broken rule is reported at its line."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from reflow import JobStatus
from reflow.config import load_job_text
from reflow.connectors.memory import memory_store
from reflow.errors import ConfigError
from reflow.runtime import ExecutorSettings, JobResult, LocalExecutor
from reflow.server.metrics import ReflowCollector

JOB = """
job:
  name: orders-quality
  error_policy:
    dead_letter: {connector: memory, config: {collection: orders-dead, append: false}}
  source:
    connector: memory
    config: {collection: orders-in}
    quality:
      - {check: not_null, fields: [id, amount], action: drop, critical: true}
      - {check: regex, name: sku-format, field: sku, pattern: '[A-Z]{3}-\\d{4}', action: drop}
  operators:
    - name: taxed
      type: map
      expression: "{**r, 'gross': r['amount'] * 1.2}"
      quality:
        - {check: range, field: gross, min: 0, max: 1200}
        - {check: in_set, field: country, values: [DE, FR, NL]}
  sink: {connector: memory, config: {collection: orders-out, append: false}}
"""


def _orders() -> list[dict[str, Any]]:
    orders = []
    for i in range(300):
        order: dict[str, Any] = {
            "id": i,
            "amount": float(i * 4),
            "sku": f"ABC-{i:04d}",
            "country": ("DE", "FR", "NL", "BE")[i % 4],
        }
        if i % 10 == 0:
            order["amount"] = None
        if i % 15 == 1:
            order["sku"] = "abc"
        orders.append(order)
    return orders


def test_quality_on_a_source_and_an_operator() -> None:
    orders = _orders()
    memory_store["orders-in"] = orders
    job = load_job_text(JOB)
    steps = [n.step_id for n in job.stream_graph.nodes]
    assert steps == ["source", "source-quality", "taxed", "taxed-quality", "sink"]

    async def run() -> tuple[JobResult, dict[tuple[str, str], float]]:
        with LocalExecutor(ExecutorSettings()) as executor:
            result = await executor.execute(job)
            registry = CollectorRegistry()
            registry.register(ReflowCollector(executor))
            text = generate_latest(registry).decode()
        samples = {
            (s.labels["rule"], s.labels["result"]): s.value
            for family in text_string_to_metric_families(text)
            if family.name == "reflow_quality_checks"
            for s in family.samples
            if s.name == "reflow_quality_checks_total"
        }
        return result, samples

    result, samples = asyncio.run(run())
    assert result.status is JobStatus.COMPLETED, result.error
    nulls = {o["id"] for o in orders if o["amount"] is None}
    bad_sku = {o["id"] for o in orders if o["sku"] == "abc"}
    dead = memory_store["orders-dead"]
    assert {(e["rule"], e["record"]["id"]) for e in dead} == {
        ("not_null:id,amount", i) for i in nulls
    } | {("sku-format", i) for i in bad_sku - nulls}
    kept = [o for o in orders if o["id"] not in nulls | bad_sku]
    assert [r["id"] for r in memory_store["orders-out"]] == [o["id"] for o in kept]
    over = sum(1 for o in kept if o["amount"] * 1.2 > 1200)
    belgian = sum(1 for o in kept if o["country"] == "BE")
    assert samples[("not_null:id,amount", "failed")] == len(nulls)
    assert samples[("sku-format", "failed")] == len(bad_sku - nulls)
    assert samples[("sku-format", "passed")] == len(orders) - len(bad_sku)
    assert samples[("range:gross", "failed")] == over > 0
    assert samples[("in_set:country", "failed")] == belgian > 0
    assert samples[("in_set:country", "passed")] == len(kept) - belgian


@pytest.mark.parametrize(
    ("entry", "line", "message"),
    [
        ("{check: range, field: p}", 8, "needs 'min', 'max'"),
        ("{check: volume, window: 1s, min: 3, action: drop}", 8, "does not apply"),
        ("{check: nonsense, field: p}", 8, "check"),
        ("{check: regex, field: p, pattern: '(?=x)'}", 8, "RE2"),
        ("{check: unique, window: 1m}", 8, "field"),
    ],
)
def test_a_broken_rule_is_reported_at_its_line(entry: str, line: int, message: str) -> None:
    text = f"""
job:
  name: broken
  source:
    connector: memory
    config: {{collection: x}}
    quality:
      - {entry}
  sink: {{connector: stdout}}
"""
    with pytest.raises(ConfigError, match=message) as caught:
        load_job_text(text, "job.yaml")
    assert f"job.yaml:{line}" in str(caught.value)


def test_quality_on_a_sink_is_refused_with_the_fix() -> None:
    text = """
job:
  name: broken
  source: {connector: memory, config: {collection: x}}
  sink:
    connector: stdout
    quality: [{check: not_null, field: p}]
"""
    with pytest.raises(ConfigError, match="belongs on the step before the sink"):
        load_job_text(text, "job.yaml")
