"""The REST API of ``reflow serve`` (FastAPI): jobs, runs, graphs, metrics, health, events.

Every ``/api`` route needs the token (``Authorization: Bearer <token>`` or
``X-Reflow-Token``) when one is configured; a server bound to a non-loopback
address must have one. ``/health*`` and ``/metrics`` stay open for probes and
Prometheus. A submitted job may only name registered connectors and functions
from the allowed modules (``--allow-module``).
"""

from __future__ import annotations

import hmac
import logging
import re
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field, model_validator

from reflow.config.job_file import job_loader, sql_job_file
from reflow.config.policy import SUBMITTED, SubmissionPolicy
from reflow.errors import ConfigError, ReflowError
from reflow.graph.explain import explain_mermaid, explain_text
from reflow.masking import mask_credentials
from reflow.scheduler.manager import JobManager
from reflow.scheduler.policies import policy_from_dict
from reflow.server.health import HealthChecker
from reflow.server.metrics import ReflowCollector
from reflow.server.scaling import add_scaling_routes

__all__ = ["create_app"]

_UI = Path(__file__).parent / "ui" / "index.html"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScheduleIn(_Model):
    policy: Literal["immediate", "cron", "depends_on", "on_event"] = "immediate"
    expression: str | None = None
    timezone: str = "UTC"
    misfire: Literal["fire_once", "skip"] = "fire_once"
    overlap: Literal["skip", "queue", "allow"] = "skip"
    upstream: list[str] | None = None
    event: str | None = None


class _JobText(_Model):
    yaml: str | None = Field(None, description="the job file (YAML text, a `job:` block)")
    sql: str | None = Field(
        None, description="or a streaming SQL script (docs/sql.md), stored as a `sql:` job"
    )

    @model_validator(mode="after")
    def _one(self) -> _JobText:
        if (self.yaml is None) == (self.sql is None):
            raise ValueError("give the job as exactly one of 'yaml' or 'sql'")
        return self

    @property
    def text(self) -> str:
        """The job file text: the YAML, or a SQL script as a YAML `sql:` job."""
        if self.yaml is not None:
            return self.yaml
        assert self.sql is not None
        return sql_job_file(self.sql)


class SubmitIn(_JobText):
    schedule: ScheduleIn | None = Field(None, description="overrides the job file's schedule")
    priority: int | None = Field(None, ge=-1_000_000, le=1_000_000)


class SubmitOut(_Model):
    job_id: str
    run_id: str | None


class JobOut(_Model):
    job_id: str
    name: str
    state: str
    policy: dict[str, Any]
    priority: int
    next_fire_time: str | None
    next_fire_times: list[str]
    queued: int
    running: int
    last_run_status: str | None


def iso_utc(epoch_seconds: float | None) -> str | None:
    """Epoch seconds as ISO 8601 in UTC (``2026-12-01T18:25:43.120Z``)."""
    if epoch_seconds is None:
        return None
    moment = datetime.fromtimestamp(epoch_seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class RunOut(_Model):
    run_id: str
    job_id: str
    status: str
    trigger: str
    priority: int
    error: str | None
    queued_at: str | None = None
    """ISO 8601, UTC; so are started_at and ended_at."""
    started_at: str | None = None
    ended_at: str | None = None


class HistoryOut(_Model):
    run_id: str | None
    status: str
    detail: str | None
    at: str | None = None
    """When the transition happened: ISO 8601, UTC."""


class StepOut(_Model):
    step_id: str
    kind: str
    subtasks: int
    records_in: int
    records_out: int
    rejected: int
    late: int
    backpressure_seconds: float


class QualityRuleOut(_Model):
    step_id: str
    rule: str
    check: str
    critical: bool
    passed: int
    failed: int
    breached: bool
    """The last violation is younger than the rule's hold time."""
    last_failed_ms: int | None
    value: float | None
    """Freshness lag (ms), records in the last window (volume), PSI (drift)."""


class CheckpointsOut(_Model):
    completed: int
    failed: int
    last_id: int | None
    last_duration_seconds: float
    last_size_bytes: int
    last_alignment_seconds: float
    last_path: str | None


class RunDetailOut(RunOut):
    steps: list[StepOut]
    quality: list[QualityRuleOut] = []
    checkpoints_completed: int | None
    last_checkpoint: str | None
    checkpoints: CheckpointsOut | None
    elapsed_seconds: float | None


class OverviewOut(_Model):
    jobs: int
    running: int
    completed: int
    failed: int
    cancelled: int
    queued: int
    slots_in_use: int
    slots: int
    health: dict[str, Any]


class ValidateIn(_JobText):
    pass


class ProblemOut(_Model):
    line: int | None
    message: str


class ValidateOut(_Model):
    valid: bool
    job_id: str | None
    vertices: int | None
    problems: list[ProblemOut]


class LogOut(_Model):
    time: float
    level: str
    event: str | None
    message: str


class ActionOut(_Model):
    ok: bool
    detail: str


class GraphOut(_Model):
    stream_nodes: list[dict[str, Any]]
    stream_edges: list[dict[str, Any]]
    vertices: list[dict[str, Any]]
    exchanges: list[dict[str, Any]]
    text: str
    mermaid: str


class ErrorOut(_Model):
    detail: str


class _RunLogs(logging.Handler):
    """Keeps the last log records of each job (a run is a job whose id is the run id)."""

    def __init__(self, per_job: int = 500) -> None:
        super().__init__(logging.INFO)
        self.per_job = per_job
        self.records: dict[str, deque[LogOut]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        job_id = getattr(record, "job_id", None)
        if not job_id:
            return
        entries = self.records.setdefault(str(job_id), deque(maxlen=self.per_job))
        entries.append(
            LogOut(
                time=record.created,
                level=record.levelname,
                event=getattr(record, "event", None),
                # Warnings and errors may quote what a job read: shown cut.
                message=mask_credentials(record.getMessage())
                if record.levelno < logging.WARNING
                else _public_error(record.getMessage()) or "",
            )
        )


# Longest error message the API returns: enough for "file:line: what and how to
# fix", too short to carry a file's or a response's content back to the caller.
MAX_ERROR_CHARS = 300
# Largest request body: a job file is kilobytes; the YAML loader's own limit is 1M chars.
MAX_REQUEST_BYTES = 2 * 1024 * 1024
# Requests that change state must prove they are not a cross-site form post:
# a JSON body, or a header a browser never sends cross-origin without asking.
_CSRF_HEADERS = ("x-reflow-token", "authorization", "x-requested-with")
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def _short(text: str) -> str:
    """An error message cut to its first line and MAX_ERROR_CHARS characters."""
    stripped = mask_credentials(text).strip()
    line = stripped.splitlines()[0] if stripped else ""
    return line if len(line) <= MAX_ERROR_CHARS else line[: MAX_ERROR_CHARS - 1] + "…"


# "step 'x' (subtask x#0) failed[ on record <data>]: SomeError[: <message>]"
_FAILED_AT = re.compile(
    r"^(?P<where>.*? failed)(?: on record .*?)?: (?P<kind>[A-Za-z_][A-Za-z0-9_.]*)(?::|$)",
    re.DOTALL,
)


def _public_error(text: str | None) -> str | None:
    """A run's error as the API shows it: where it failed and the error's class.

    The exception's own message can hold what the job read (a line of a file,
    an HTTP response body); it stays in the server's log and ``reflow status``.
    """
    if text is None:
        return None
    match = _FAILED_AT.match(text)
    if match:
        where, kind = match.group("where"), match.group("kind")
        return _short(f"{where}: {kind}") + " (the full message is in the server log)"
    return _short(text)


def _host_of(header: str) -> str:
    """The host name of a Host header ('[::1]:8080' -> '::1', 'a:80' -> 'a')."""
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rpartition(":")[0] if header.count(":") == 1 else header


def create_app(
    manager: JobManager,
    *,
    token: str | None = None,
    allowed_modules: tuple[str, ...] = (),
    policy: SubmissionPolicy | None = None,
    bind_host: str | None = None,
    metrics: bool = True,
) -> FastAPI:
    """The API over ``manager``.

    Args:
        token: required on every ``/api`` request when given.
        allowed_modules: shorthand for ``SubmissionPolicy(allowed_modules=...)``.
        policy: what submitted jobs may touch (default: nothing outside themselves).
        bind_host: the address the server listens on; on loopback, requests
            whose ``Host`` is not a loopback name are refused (DNS rebinding).
        metrics: False (the system config's ``metrics.enabled: false``) answers
            ``/metrics`` with 404 and the reason.
    """
    submission = policy if policy is not None else SubmissionPolicy(allowed_modules)
    trusted_loader = manager.loader

    def loader(text: str, folder: str) -> Any:
        # Jobs that came through the API are built under the policy at every run.
        if folder == SUBMITTED or trusted_loader is None:
            return job_loader(text, folder, submission)
        return trusted_loader(text, folder)

    manager.loader = loader
    loopback_only = bind_host in _LOOPBACK_NAMES
    app = FastAPI(
        title="reflow",
        version="0.1.0",
        description="Submit, schedule, inspect and control reflow jobs.",
        responses={401: {"model": ErrorOut}, 404: {"model": ErrorOut}, 422: {"model": ErrorOut}},
    )
    registry = CollectorRegistry()
    registry.register(ReflowCollector(manager.executor, manager))
    health = HealthChecker(manager.executor, manager)
    run_logs = _RunLogs()
    reflow_logger = logging.getLogger("reflow")
    reflow_logger.addHandler(run_logs)
    if reflow_logger.getEffectiveLevel() > logging.INFO:
        reflow_logger.setLevel(logging.INFO)  # job events reach the run logs of the UI

    def authorized(request: Request) -> bool:
        if token is None:
            return True
        given = request.headers.get("x-reflow-token") or ""
        auth = request.headers.get("authorization") or ""
        if auth.lower().startswith("bearer "):
            given = auth[7:]
        return hmac.compare_digest(given.encode(), token.encode())

    @app.middleware("http")
    async def require_token(request: Request, call_next: Any) -> Response:
        if loopback_only and _host_of(request.headers.get("host", "")) not in _LOOPBACK_NAMES:
            return JSONResponse(
                {"detail": "this server answers only to 127.0.0.1 or localhost (Host header)"},
                status_code=421,
            )
        declared = request.headers.get("content-length", "0")
        if not declared.isdigit() or int(declared) > MAX_REQUEST_BYTES:
            return JSONResponse(
                {"detail": f"request bodies are limited to {MAX_REQUEST_BYTES} bytes"},
                status_code=413,
            )
        # Before routing and body validation: an unauthenticated caller learns nothing.
        if request.url.path.startswith("/api") and not authorized(request):
            return JSONResponse(
                {"detail": "missing or wrong token (Authorization: Bearer <token>)"},
                status_code=401,
            )
        if request.method not in ("GET", "HEAD", "OPTIONS") and request.url.path.startswith("/api"):
            content_type = request.headers.get("content-type", "").split(";")[0].strip()
            if content_type != "application/json" and not any(
                h in request.headers for h in _CSRF_HEADERS
            ):
                return JSONResponse(
                    {
                        "detail": "send state-changing requests with Content-Type: "
                        "application/json or an X-Requested-With header"
                    },
                    status_code=415,
                )
        response: Response = await call_next(request)
        return response

    def authorize(request: Request) -> None:
        if not authorized(request):  # pragma: no cover - the middleware answers first
            raise HTTPException(401, "missing or wrong token")

    @app.exception_handler(ReflowError)
    async def reflow_error(request: Request, exc: ReflowError) -> JSONResponse:
        return JSONResponse({"detail": _short(str(exc))}, status_code=422)

    unavailable: dict[int | str, dict[str, Any]] = {503: {"description": "DOWN"}}

    @app.get("/health", tags=["health"], responses=unavailable)
    async def get_health() -> JSONResponse:
        report = await health.check()
        code = 503 if report.status == "DOWN" else 200
        return JSONResponse(report.to_dict(), status_code=code)

    @app.get("/health/live", tags=["health"])
    async def get_live() -> dict[str, str]:
        return {"status": "UP"}

    @app.get("/health/ready", tags=["health"], responses=unavailable)
    async def get_ready() -> JSONResponse:
        ready = manager.alive
        return JSONResponse(
            {"status": "UP" if ready else "DOWN"}, status_code=200 if ready else 503
        )

    @app.get("/metrics", tags=["metrics"], response_class=PlainTextResponse)
    async def get_metrics() -> Response:
        if not metrics:
            raise HTTPException(
                404, "metrics are off: metrics.enabled is false in the system config"
            )
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    api = [Depends(authorize)]

    def job_out(job_id: str) -> JobOut:
        status = manager.get_status(job_id)
        record = manager.store.job(job_id)
        assert record is not None
        upcoming: list[str] = []
        if status.next_fire_time is not None:
            policy = policy_from_dict(record.policy)
            moment = status.next_fire_time
            upcoming.append(moment.isoformat())
            for _ in range(2):
                following = policy.next_fire_time(moment)  # type: ignore[attr-defined]
                if following is None:
                    break
                upcoming.append(following.isoformat())
                moment = following
        return JobOut(
            job_id=job_id,
            name=record.name,
            state=status.state,
            policy=status.policy,
            priority=record.priority,
            next_fire_times=upcoming,
            next_fire_time=status.next_fire_time.isoformat() if status.next_fire_time else None,
            queued=status.queued,
            running=status.running,
            last_run_status=status.last_run_status,
        )

    add_scaling_routes(app, manager, api)

    def known(job_id: str) -> None:
        if manager.store.job(job_id) is None:
            raise HTTPException(404, f"no job {job_id!r}")

    @app.get("/api/jobs", dependencies=api, tags=["jobs"])
    async def list_jobs() -> list[JobOut]:
        return [job_out(r.job_id) for r in manager.store.jobs()]

    @app.post("/api/jobs", dependencies=api, tags=["jobs"], status_code=201)
    async def submit(body: SubmitIn) -> SubmitOut:
        schedule = None
        if body.schedule is not None:
            schedule = policy_from_dict(body.schedule.model_dump(exclude_none=True))
        result = manager.schedule(body.text, schedule, priority=body.priority, source_dir=SUBMITTED)
        return SubmitOut(job_id=result.job_id, run_id=result.run_id)

    @app.get("/api/jobs/{job_id}", dependencies=api, tags=["jobs"])
    async def get_job(job_id: str) -> JobOut:
        known(job_id)
        return job_out(job_id)

    @app.get("/api/jobs/{job_id}/runs", dependencies=api, tags=["jobs"])
    async def job_runs(job_id: str) -> list[RunOut]:
        known(job_id)
        return [
            RunOut(
                run_id=r.run_id,
                job_id=r.job_id,
                status=r.status,
                trigger=r.trigger,
                priority=r.priority,
                error=_public_error(r.error),
                queued_at=iso_utc(r.queued_ms / 1000),
                started_at=iso_utc(r.started_at),
                ended_at=iso_utc(r.ended_at),
            )
            for r in manager.store.runs(job_id)
        ]

    @app.get("/api/jobs/{job_id}/history", dependencies=api, tags=["jobs"])
    async def job_history(job_id: str) -> list[HistoryOut]:
        known(job_id)
        return [
            HistoryOut(run_id=r, status=s, detail=_public_error(d), at=iso_utc(at))
            for r, s, d, at in manager.store.timed_history(job_id)
        ]

    @app.get("/api/jobs/{job_id}/graph", dependencies=api, tags=["jobs"])
    async def job_graph(job_id: str) -> GraphOut:
        known(job_id)
        record = manager.store.job(job_id)
        assert record is not None
        running = [r.job for r in manager.running.values() if r.job_id == job_id]
        # A running run's graph: after a rescale it runs at another parallelism.
        job = running[-1] if running else loader(record.spec, record.source_dir)
        graph = job.job_graph
        stream = graph.stream_graph
        return GraphOut(
            stream_nodes=[
                {
                    "step_id": n.step_id,
                    "kind": n.kind.value,
                    "operator_type": n.operator_type,
                    "vertex": graph.vertex_of(n.step_id).vertex_id,
                }
                for n in stream.nodes
            ],
            stream_edges=[
                {"source": e.source_id, "target": e.target_id, "side_output": e.side_output}
                for e in stream.edges
            ],
            vertices=[
                {
                    "vertex_id": v.vertex_id,
                    "name": v.vertex_name,
                    "parallelism": v.parallelism,
                    "steps": [n.step_id for n in v.chained_nodes],
                }
                for v in graph.vertices
            ],
            exchanges=[
                {
                    "source": e.source_step,
                    "target": e.target_step,
                    "partitioning": e.partitioning.name,
                    "source_vertex": e.source_vertex,
                    "target_vertex": e.target_vertex,
                }
                for e in graph.edges
            ],
            text=explain_text(graph),
            mermaid=explain_mermaid(graph),
        )

    def action(kind: str, job_id: str) -> ActionOut:
        known(job_id)
        getattr(manager, kind)(job_id)
        return ActionOut(ok=True, detail=f"{kind}: {job_id}")

    @app.post("/api/jobs/{job_id}/cancel", dependencies=api, tags=["control"])
    async def cancel(job_id: str) -> ActionOut:
        return action("cancel", job_id)

    @app.post("/api/jobs/{job_id}/pause", dependencies=api, tags=["control"])
    async def pause(job_id: str) -> ActionOut:
        return action("pause", job_id)

    @app.post("/api/jobs/{job_id}/resume", dependencies=api, tags=["control"])
    async def resume(job_id: str) -> ActionOut:
        return action("resume", job_id)

    @app.post("/api/jobs/{job_id}/trigger", dependencies=api, tags=["control"])
    async def trigger(job_id: str) -> ActionOut:
        known(job_id)
        return ActionOut(ok=True, detail=manager.trigger(job_id))

    @app.get("/api/runs/{run_id}", dependencies=api, tags=["runs"])
    async def get_run(run_id: str) -> RunDetailOut:
        record = next((r for r in manager.store.runs() if r.run_id == run_id), None)
        if record is None:
            raise HTTPException(404, f"no run {run_id!r}")
        steps: list[StepOut] = []
        quality: list[QualityRuleOut] = []
        completed = None
        last = None
        checkpoints = None
        elapsed = None
        snap = next((s for s in manager.executor.snapshots() if s.job_id == run_id), None)
        if snap is not None:
            snapshot = snap.metrics
            elapsed = snapshot.elapsed_seconds
            blocked = snap.blocked_seconds_by_step()
            steps = [
                StepOut(
                    step_id=s.step_id,
                    kind=s.kind,
                    subtasks=s.subtasks,
                    records_in=s.records_in,
                    records_out=s.records_out,
                    rejected=s.rejected,
                    late=s.late,
                    backpressure_seconds=blocked.get(s.step_id, 0.0),
                )
                for s in snapshot.steps
            ]
            now_ms = manager.executor.settings.clock.now_ms()
            quality = [
                QualityRuleOut(
                    step_id=s.step_id,
                    rule=rule,
                    check=q.check,
                    critical=q.critical,
                    passed=q.passed,
                    failed=q.failed,
                    breached=q.breached(now_ms),
                    last_failed_ms=q.last_failed_ms,
                    value=q.value,
                )
                for s in snapshot.steps
                for rule, q in s.quality.items()
            ]
            cs = snap.checkpoints
            if cs is not None:
                completed = cs.completed
                last = cs.last_path
                checkpoints = CheckpointsOut(
                    completed=cs.completed,
                    failed=cs.failed,
                    last_id=cs.last_id,
                    last_duration_seconds=cs.last_duration_s,
                    last_size_bytes=cs.last_size_bytes,
                    last_alignment_seconds=cs.last_alignment_s,
                    last_path=cs.last_path,
                )
        return RunDetailOut(
            run_id=record.run_id,
            job_id=record.job_id,
            status=record.status,
            trigger=record.trigger,
            priority=record.priority,
            error=_public_error(record.error),
            steps=steps,
            quality=quality,
            checkpoints_completed=completed,
            last_checkpoint=last,
            checkpoints=checkpoints,
            elapsed_seconds=elapsed,
        )

    @app.get("/api/runs/{run_id}/logs", dependencies=api, tags=["runs"])
    async def get_run_logs(run_id: str) -> list[LogOut]:
        return list(run_logs.records.get(run_id, ()))

    @app.post("/api/runs/{run_id}/savepoint", dependencies=api, tags=["runs"])
    async def take_savepoint(run_id: str) -> ActionOut:
        if not manager.executor.is_running(run_id):
            raise HTTPException(404, f"no running run {run_id!r}")
        data = await manager.executor.savepoint(run_id)
        if data is None:
            return ActionOut(ok=False, detail="the savepoint did not complete in time")
        return ActionOut(ok=True, detail=data.path)

    @app.get("/api/overview", dependencies=api, tags=["overview"])
    async def overview() -> OverviewOut:
        runs = manager.store.runs()
        counts: dict[str, int] = {}
        for run in runs:
            counts[run.status] = counts.get(run.status, 0) + 1
        report = await health.check()
        return OverviewOut(
            jobs=len(manager.store.jobs()),
            running=counts.get("RUNNING", 0) + counts.get("PAUSED", 0),
            completed=counts.get("COMPLETED", 0),
            failed=counts.get("FAILED", 0),
            cancelled=counts.get("CANCELLED", 0),
            queued=counts.get("QUEUED", 0),
            slots_in_use=sum(r.slots for r in manager.running.values()),
            slots=manager.slots,
            health=report.to_dict(),
        )

    @app.post("/api/validate", dependencies=api, tags=["jobs"])
    async def validate(body: ValidateIn) -> ValidateOut:
        """Check a job file without submitting it: problems come with their line."""
        try:
            job = job_loader(body.text, SUBMITTED, submission)
        except ConfigError as exc:
            problem = ProblemOut(line=exc.line, message=_short(str(exc)))
            return ValidateOut(valid=False, job_id=None, vertices=None, problems=[problem])
        except ReflowError as exc:
            problem = ProblemOut(line=None, message=_short(str(exc)))
            return ValidateOut(valid=False, job_id=None, vertices=None, problems=[problem])
        return ValidateOut(
            valid=True, job_id=job.job_id, vertices=len(job.job_graph.vertices), problems=[]
        )

    @app.get("/", include_in_schema=False)
    async def root() -> Response:
        return RedirectResponse("/ui")

    @app.get("/favicon.svg", include_in_schema=False)
    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        icon = _UI.with_name("favicon.svg").read_bytes()
        return Response(icon, media_type="image/svg+xml")

    @app.get("/ui", include_in_schema=False)
    async def ui() -> Response:
        return HTMLResponse(_UI.read_text(encoding="utf-8"))

    @app.post("/api/events/{name}", dependencies=api, tags=["events"])
    async def post_event(name: str) -> list[str]:
        return manager.post_event(name)

    return app
