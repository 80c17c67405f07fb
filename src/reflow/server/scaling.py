"""The REST API's scaling routes: rescale a running job, and (with an autoscaler)
its decisions."""

from __future__ import annotations

from dataclasses import asdict
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
    processing_seconds: float | None
    detail: str


class VertexLoadOut(BaseModel):
    steps: list[str]
    parallelism: int
    utilization: float
    backpressure: float
    input_rate: float
    recommended: int


class DecisionOut(BaseModel):
    at: float
    run_id: str
    steps: list[str]
    parallelism: int
    recommended: int
    utilization: float
    backpressure: float
    input_rate: float
    action: str
    applied: bool
    reason: str


class AutoscalerOut(BaseModel):
    run_id: str | None
    config: dict[str, Any] | None
    """None: the job has no autoscaler."""
    vertices: list[VertexLoadOut]
    decisions: list[DecisionOut]


def add_scaling_routes(app: FastAPI, manager: JobManager, api: list[Any]) -> None:
    @app.get("/api/jobs/{job_id}/autoscaler", dependencies=api, tags=["jobs"])
    async def autoscaler(job_id: str) -> AutoscalerOut:
        """The autoscaler of the job's running run: its settings, each vertex's load
        over the window, and its decisions (newest last)."""
        if manager.store.job(job_id) is None:
            raise HTTPException(404, f"no job {job_id!r}")
        runs = [r for r in manager.running.values() if r.job_id == job_id]
        scaler = next(
            (manager.autoscalers[r.run_id] for r in runs if r.run_id in manager.autoscalers), None
        )
        if scaler is None:
            return AutoscalerOut(run_id=None, config=None, vertices=[], decisions=[])
        return AutoscalerOut(
            run_id=scaler.run_id,
            config=asdict(scaler.config),
            vertices=[VertexLoadOut(**{**asdict(v), "steps": list(v.steps)}) for v in scaler.loads],
            decisions=[
                DecisionOut(**{**d.to_dict(), "steps": list(d.steps)}) for d in scaler.decisions
            ],
        )

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
                processing_seconds=r.processing_seconds,
                detail=r.describe(),
            )
            for r in results
        ]
