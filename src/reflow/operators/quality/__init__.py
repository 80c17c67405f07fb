"""Data-quality expectations on a stream (seed §13.3 "实时数据质量监控").

An expectation is a named rule with an action. *Record rules* judge each
record: ``schema`` (types, required fields), ``not_null``, ``range``,
``in_set``, ``regex``, ``unique`` (within a window) and ``freshness`` (event
time lag). *Window rules* judge a window of records: ``volume`` (records per
window within bounds, or against a rolling baseline) and ``drift`` (the
population stability index of a numeric field against a reference window).

Actions: ``warn`` counts and logs the violation and keeps the record; ``drop``
sends the record to the job's dead-letter output with the rule's name (counted
and logged when the job has none); ``fail`` fails the job with the rule and the
record. A rule marked ``critical`` makes ``/health`` DEGRADED for ``hold`` after
its last violation.

A quality step checks its subtask's records: record rules see every record
whatever the parallelism; ``unique``, ``volume`` and ``drift`` judge what their
subtask sees, so run that step at parallelism 1, or after a ``key_by`` on the
unique fields, to judge the whole stream.

Checks run on whole micro-batches: each rule first tests a batch with C-speed
built-ins (``min``/``max``, set inclusion, ``None in values``) and looks at
records one by one only when the batch holds a violation.

Example:
    >>> from reflow import Flow
    >>> from reflow.operators import quality as q
    >>> from reflow.testing import TestingSource, TestingSink, run_job
    >>> flow, out = Flow("prices"), TestingSink()
    >>> (flow.source(TestingSource([{"p": 3}, {"p": -1}, {"p": None}]))
    ...     .expect(q.not_null("p"), q.in_range("p", min=0, action="drop"))
    ...     .sink(out))
    >>> result = run_job(flow.to_job())
    >>> out.records
    [{'p': 3}, {'p': None}]
    >>> {r: (s.passed, s.failed) for r, s in result.metrics.step("quality").quality.items()}
    {'not_null:p': (2, 1), 'range:p': (2, 1)}
"""

from __future__ import annotations

from reflow.operators.quality.base import (
    ACTIONS,
    Expectation,
    QualityError,
    QualityViolation,
    RuleLogic,
    RuleStats,
)
from reflow.operators.quality.records import (
    FreshnessRule,
    InSetRule,
    NotNullRule,
    RangeRule,
    RegexRule,
    SchemaRule,
    fresh,
    in_range,
    in_set,
    matches,
    not_null,
    schema,
)
from reflow.operators.quality.step import CHECKS, QualityOp, expectation_of
from reflow.operators.quality.windows import (
    DriftRule,
    UniqueRule,
    VolumeRule,
    drift,
    psi,
    unique,
    volume,
)

__all__ = [
    "ACTIONS",
    "CHECKS",
    "DriftRule",
    "Expectation",
    "FreshnessRule",
    "InSetRule",
    "NotNullRule",
    "QualityError",
    "QualityOp",
    "QualityViolation",
    "RangeRule",
    "RegexRule",
    "RuleLogic",
    "RuleStats",
    "SchemaRule",
    "UniqueRule",
    "VolumeRule",
    "drift",
    "expectation_of",
    "fresh",
    "in_range",
    "in_set",
    "matches",
    "not_null",
    "psi",
    "schema",
    "unique",
    "volume",
]
