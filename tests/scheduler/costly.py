"""A map whose cost the autoscaler tests switch on and off with a flag file (a file,
so that subtasks in Ray's worker processes see it too)."""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

COST_SECONDS = 0.005


def flag(mode: str) -> str:
    return os.path.join(tempfile.gettempdir(), f"reflow-autoscaler-test-{mode}.slow")


def _work(mode: str, record: Any) -> Any:
    if os.path.exists(flag(mode)):
        time.sleep(COST_SECONDS)
    return record


def work_live(record: Any) -> Any:
    return _work("live", record)


def work_dry(record: Any) -> Any:
    return _work("dry", record)
