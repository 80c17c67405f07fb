"""The public surface is explicit: every package's __all__ names exist, and reflow exports the API."""

from __future__ import annotations

import importlib

import pytest

import reflow

PACKAGES = [
    "reflow",
    "reflow.api",
    "reflow.graph",
    "reflow.operators",
    "reflow.connectors",
    "reflow.runtime",
    "reflow.config",
    "reflow.cli",
    "reflow.testing",
    "reflow.errors",
    "reflow.state",
    "reflow.eventtime",
    "reflow.checkpoint",
    "reflow.scheduler",
    "reflow.server",
    "reflow.observability",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_names_exist(name: str) -> None:
    module = importlib.import_module(name)
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert missing == []


def test_seed_api_names_are_importable_from_reflow() -> None:
    for name in ("Job", "StreamGraph", "Operators", "Connectors", "Flow", "JobStatus", "JobType"):
        assert name in reflow.__all__


def test_importing_reflow_starts_nothing() -> None:
    import threading

    before = threading.active_count()
    importlib.reload(reflow)
    assert threading.active_count() == before
