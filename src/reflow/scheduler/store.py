"""The job store: jobs, schedules, queued runs, run history and commands (seed §3.4).

SQLite by default (``sqlite:///reflow-jobs.db``), PostgreSQL as an option, through
SQLAlchemy. Every state change is one transaction, so a manager killed at any
point restarts with nothing lost and nothing doubled: a run is either queued in
the store or not; a run marked RUNNING when the manager died is marked FAILED
on restart, never started twice.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from reflow.connectors.sql.engine import normalize_url

__all__ = ["JobRecord", "JobStore", "RunRecord"]

PYTHON_JOB_PREFIX = "python:"
"""A stored job spec that is a reference to a Python job (``module:attr``), not YAML."""

metadata = sa.MetaData()

jobs = sa.Table(
    "reflow_jobs",
    metadata,
    sa.Column("job_id", sa.String(255), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("source_dir", sa.Text, nullable=False, default=""),
    sa.Column("policy", sa.Text, nullable=False),
    sa.Column("priority", sa.Integer, nullable=False, default=0),
    sa.Column("state", sa.String(32), nullable=False, default="active"),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("last_fire_ms", sa.BigInteger, nullable=True),
    sa.Column("satisfied", sa.Text, nullable=False, default="[]"),
)
runs = sa.Table(
    "reflow_runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("job_id", sa.String(255), nullable=False, index=True),
    sa.Column("status", sa.String(32), nullable=False, index=True),
    sa.Column("trigger", sa.String(255), nullable=False),
    sa.Column("priority", sa.Integer, nullable=False, default=0),
    sa.Column("queued_ms", sa.BigInteger, nullable=False),
    sa.Column("started_at", sa.Float, nullable=True),
    sa.Column("ended_at", sa.Float, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
)
history = sa.Table(
    "reflow_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String(255), nullable=False, index=True),
    sa.Column("run_id", sa.String(64), nullable=True),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("detail", sa.Text, nullable=True),
)
commands = sa.Table(
    "reflow_commands",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("target", sa.String(255), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("done_at", sa.Float, nullable=True),
    sa.Column("result", sa.Text, nullable=True),
)


@dataclass(slots=True)
class JobRecord:
    job_id: str
    name: str
    spec: str
    source_dir: str
    policy: dict[str, Any]
    priority: int
    state: str
    last_fire_ms: int | None
    satisfied: list[str]


@dataclass(slots=True)
class RunRecord:
    run_id: str
    job_id: str
    status: str
    trigger: str
    priority: int
    queued_ms: int
    started_at: float | None
    ended_at: float | None
    error: str | None


def _job(row: Any) -> JobRecord:
    return JobRecord(
        row.job_id,
        row.name,
        row.spec,
        row.source_dir,
        json.loads(row.policy),
        row.priority,
        row.state,
        row.last_fire_ms,
        json.loads(row.satisfied or "[]"),
    )


def _run(row: Any) -> RunRecord:
    return RunRecord(
        row.run_id,
        row.job_id,
        row.status,
        row.trigger,
        row.priority,
        row.queued_ms,
        row.started_at,
        row.ended_at,
        row.error,
    )


class JobStore:
    def __init__(self, url: str = "sqlite:///reflow-jobs.db") -> None:
        self.url = normalize_url(url)
        kwargs: dict[str, Any] = {}
        if self.url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 30}
        self.engine = sa.create_engine(self.url, **kwargs)
        metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # -- jobs ---------------------------------------------------------------------

    def put_job(
        self,
        job_id: str,
        name: str,
        spec: str,
        source_dir: str,
        policy: dict[str, Any],
        priority: int,
        run_now: bool,
        now_ms: int,
    ) -> str | None:
        """Insert or replace a job; with ``run_now`` also queue a run (same transaction)."""
        with self.engine.begin() as conn:
            conn.execute(jobs.delete().where(jobs.c.job_id == job_id))
            conn.execute(
                jobs.insert().values(
                    job_id=job_id,
                    name=name,
                    spec=spec,
                    source_dir=source_dir,
                    policy=json.dumps(policy),
                    priority=priority,
                    state="active",
                    created_at=time.time(),
                    satisfied="[]",
                )
            )
            self._history(conn, job_id, None, "CREATED", None)
            if run_now:
                return self._queue(conn, job_id, "submit", priority, now_ms)
        return None

    def job(self, job_id: str) -> JobRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(jobs.select().where(jobs.c.job_id == job_id)).first()
        return None if row is None else _job(row)

    def jobs(self) -> list[JobRecord]:
        with self.engine.connect() as conn:
            return [_job(r) for r in conn.execute(jobs.select().order_by(jobs.c.created_at))]

    def set_job_state(self, job_id: str, state: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(jobs.update().where(jobs.c.job_id == job_id).values(state=state))
            self._history(conn, job_id, None, f"SCHEDULE_{state.upper()}", None)

    def set_satisfied(self, job_id: str, satisfied: list[str]) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                jobs.update().where(jobs.c.job_id == job_id).values(satisfied=json.dumps(satisfied))
            )

    # -- runs ---------------------------------------------------------------------

    def _queue(self, conn: Any, job_id: str, trigger: str, priority: int, now_ms: int) -> str:
        run_id = f"run-{uuid.uuid4().hex[:12]}"
        conn.execute(
            runs.insert().values(
                run_id=run_id,
                job_id=job_id,
                status="QUEUED",
                trigger=trigger,
                priority=priority,
                queued_ms=now_ms,
            )
        )
        self._history(conn, job_id, run_id, "SCHEDULED", trigger)
        return run_id

    def queue_run(
        self, job_id: str, trigger: str, priority: int, now_ms: int, fire_ms: int | None = None
    ) -> str:
        """Queue a run; a cron firing records its fire time in the same transaction."""
        with self.engine.begin() as conn:
            run_id = self._queue(conn, job_id, trigger, priority, now_ms)
            if fire_ms is not None:
                conn.execute(
                    jobs.update().where(jobs.c.job_id == job_id).values(last_fire_ms=fire_ms)
                )
        return run_id

    def set_last_fire(self, job_id: str, fire_ms: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(jobs.update().where(jobs.c.job_id == job_id).values(last_fire_ms=fire_ms))

    def runs(self, job_id: str | None = None, status: str | None = None) -> list[RunRecord]:
        query = runs.select().order_by(runs.c.queued_ms, runs.c.run_id)
        if job_id is not None:
            query = query.where(runs.c.job_id == job_id)
        if status is not None:
            query = query.where(runs.c.status == status)
        with self.engine.connect() as conn:
            return [_run(r) for r in conn.execute(query)]

    def claim_run(self, run_id: str) -> bool:
        """QUEUED -> RUNNING, atomically; False if someone else got it first."""
        with self.engine.begin() as conn:
            changed = conn.execute(
                runs.update()
                .where((runs.c.run_id == run_id) & (runs.c.status == "QUEUED"))
                .values(status="RUNNING", started_at=time.time())
            ).rowcount
            if changed:
                job_id = conn.execute(
                    sa.select(runs.c.job_id).where(runs.c.run_id == run_id)
                ).scalar_one()
                self._history(conn, job_id, run_id, "RUNNING", None)
        return bool(changed)

    def set_run_status(self, run_id: str, status: str, error: str | None = None) -> None:
        ended = status in ("COMPLETED", "FAILED", "CANCELLED")
        with self.engine.begin() as conn:
            values: dict[str, Any] = {"status": status, "error": error}
            if ended:
                values["ended_at"] = time.time()
            conn.execute(runs.update().where(runs.c.run_id == run_id).values(**values))
            job_id = conn.execute(
                sa.select(runs.c.job_id).where(runs.c.run_id == run_id)
            ).scalar_one()
            self._history(conn, job_id, run_id, status, error)

    def fail_interrupted(self) -> list[str]:
        """Runs left RUNNING or PAUSED by a manager that died: FAILED, not restarted."""
        interrupted = [*self.runs(status="RUNNING"), *self.runs(status="PAUSED")]
        for run in interrupted:
            self.set_run_status(
                run.run_id, "FAILED", "the manager stopped while the run was in progress"
            )
        return [r.run_id for r in interrupted]

    # -- history and commands -------------------------------------------------------

    @staticmethod
    def _history(
        conn: Any, job_id: str, run_id: str | None, status: str, detail: str | None
    ) -> None:
        conn.execute(
            history.insert().values(
                job_id=job_id, run_id=run_id, status=status, at=time.time(), detail=detail
            )
        )

    def add_event(self, job_id: str, run_id: str | None, event: str, detail: str) -> None:
        """A line in the job's history that is not a status change (a rescale, an
        autoscaler decision)."""
        with self.engine.begin() as conn:
            self._history(conn, job_id, run_id, event, detail)

    def timed_history(self, job_id: str) -> list[tuple[str | None, str, str | None, float]]:
        """``history`` with the time of each transition (epoch seconds)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(history.c.run_id, history.c.status, history.c.detail, history.c.at)
                .where(history.c.job_id == job_id)
                .order_by(history.c.id)
            )
            return [(r.run_id, r.status, r.detail, r.at) for r in rows]

    def history(self, job_id: str) -> list[tuple[str | None, str, str | None]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(history.c.run_id, history.c.status, history.c.detail)
                .where(history.c.job_id == job_id)
                .order_by(history.c.id)
            )
            return [(r.run_id, r.status, r.detail) for r in rows]

    def add_command(self, kind: str, target: str) -> int:
        with self.engine.begin() as conn:
            result = conn.execute(
                commands.insert().values(kind=kind, target=target, created_at=time.time())
            )
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    def pending_commands(self) -> list[tuple[int, str, str]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(commands.c.id, commands.c.kind, commands.c.target)
                .where(commands.c.done_at.is_(None))
                .order_by(commands.c.id)
            )
            return [(r.id, r.kind, r.target) for r in rows]

    def finish_command(self, command_id: int, result: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                commands.update()
                .where(commands.c.id == command_id)
                .values(done_at=time.time(), result=result)
            )

    def command_result(self, command_id: int) -> str | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(commands.c.done_at, commands.c.result).where(commands.c.id == command_id)
            ).first()
        return None if row is None or row.done_at is None else str(row.result)
