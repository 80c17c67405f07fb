"""The REST API's scaling routes: rescale a running job, and (with an autoscaler)
its decisions."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from reflow.scheduler.manager import JobManager

__all__ = ["RescaleIn", "RescaleOut", "add_scaling_routes"]


class RescaleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    parallelism: int | None = Field(None, ge=1, le=128)
    """The new parallelism of every step that does not set its own (sources keep theirs)."""
    steps: dict[str, int] = Field(default_factory=dict)
    """Step id -> parallelism, for single steps."""


class RescaleOut(BaseModel):
    run_id: str
    job_id: str
    before: dict[str, int]
    after: dict[str, int]
    savepoint: str
    stop_seconds: float
    downtime_seconds: float
    detail: str


def add_scaling_routes(app: FastAPI, manager: JobManager, api: list[Any]) -> None:
    @app.post("/api/jobs/{job_id}/rescale", dependencies=api, tags=["control"])
    async def rescale(job_id: str, body: RescaleIn) -> list[RescaleOut]:
        """Rescale the job's running runs (or the run ``job_id``): each takes a
        savepoint, stops, and runs again at the new parallelism from it."""
        if not any(job_id in (r.run_id, r.job_id) for r in manager.running.values()):
            raise HTTPException(404, f"no running run of {job_id!r}")
        results = await manager.rescale(job_id, body.parallelism, body.steps)
        return [
            RescaleOut(
                run_id=r.run_id,
                job_id=r.job_id,
                before=r.before,
                after=r.after,
                savepoint=r.savepoint,
                stop_seconds=r.stop_seconds,
                downtime_seconds=r.downtime_seconds,
                detail=r.describe(),
            )
            for r in results
        ]
