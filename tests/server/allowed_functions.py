"""Functions a test server allows submitted jobs to name (``--allow-module``)."""

from __future__ import annotations

import os  # imported, not defined here: a job may not name it through this module
from typing import Any

__all__ = ["double", "os"]


def double(record: Any) -> Any:
    return record * 2
