"""A custom schedule policy (seed §8.3) for the scheduler docs: run every ``period``
seconds while a flag file exists."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reflow.scheduler import CustomPolicy


@dataclass(frozen=True)
class WhenFileExists(CustomPolicy):
    """Offer a run every ``period`` seconds; take it only while ``path`` exists."""

    path: str
    period: float = 60.0

    async def triggers(self, clock: Any) -> AsyncIterator[int]:
        while True:
            await clock.sleep(self.period)
            yield clock.now_ms()

    def should_execute(self, job_id: str) -> bool:
        return Path(self.path).exists()
