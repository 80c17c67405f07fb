"""``reflow serve`` and the commands that talk to it through the job store.

``serve`` runs the job manager (scheduler + executor) until interrupted; it
loads the job files of ``--jobs-dir`` and picks up what ``submit`` puts into
the store. ``cancel``/``pause``/``resume``/``events post`` leave a command in
the store that the manager carries out within a poll interval; ``trigger``
queues a run directly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

__all__ = ["add_parsers", "commands"]

DEFAULT_STORE = "sqlite:///reflow-jobs.db"
# How long a CLI command waits for the manager to carry it out.
COMMAND_TIMEOUT_SECONDS = 30.0


def _store_url(args: argparse.Namespace) -> str:
    return str(args.store or os.environ.get("REFLOW_STORE") or DEFAULT_STORE)


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def with_store(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument(
            "--store", help=f"job store URL (default $REFLOW_STORE or {DEFAULT_STORE})"
        )
        return parser

    serve = with_store(sub.add_parser("serve", help="run the job manager (scheduler + executor)"))
    serve.add_argument("--jobs-dir", help="load every job file (*.yaml) of this folder")
    serve.add_argument("--slots", type=int, default=4, help="parallel subtasks the executor runs")
    serve.add_argument("--memory", help="memory for runs, e.g. 8g (jobs declare resources.memory)")
    serve.add_argument("--config", help="system config file (YAML)")

    submit = with_store(sub.add_parser("submit", help="add a job to the store, with a schedule"))
    submit.add_argument("job", help="job file (YAML)")
    submit.add_argument("--cron", help="cron expression (Quartz or 5-field)")
    submit.add_argument("--timezone", default="UTC", help="time zone of --cron")
    submit.add_argument("--depends-on", help="comma-separated upstream job ids")
    submit.add_argument("--on-event", help="run when this event is posted")
    submit.add_argument(
        "--priority", type=int, help="higher runs first (default: the job file's priority)"
    )

    with_store(sub.add_parser("jobs", help="list jobs, their schedules and last runs"))
    status = with_store(sub.add_parser("status", help="a job's runs and history"))
    status.add_argument("job_id")
    for name, text in [
        ("cancel", "stop scheduling a job and cancel its runs"),
        ("pause", "pause a job's schedule and its running runs"),
        ("resume", "resume a paused job"),
        ("trigger", "queue a run of a job now"),
    ]:
        parser = with_store(sub.add_parser(name, help=text))
        parser.add_argument("job_id")
    events = sub.add_parser("events", help="post events for event-triggered jobs")
    events_sub = events.add_subparsers(dest="events_command", metavar="ACTION")
    events_sub.required = True
    post = with_store(events_sub.add_parser("post", help="post an event"))
    post.add_argument("name")


def _policy(args: argparse.Namespace) -> object:
    from reflow.scheduler import SchedulePolicy

    chosen = [x for x in (args.cron, args.depends_on, args.on_event) if x]
    if len(chosen) > 1:
        raise SystemExit("reflow: give one of --cron, --depends-on, --on-event")
    if args.cron:
        return SchedulePolicy.cron(args.cron, args.timezone)
    if args.depends_on:
        return SchedulePolicy.depends_on(*[j.strip() for j in args.depends_on.split(",")])
    if args.on_event:
        return SchedulePolicy.on_event(args.on_event)
    return None


def _manager(args: argparse.Namespace, **options: object) -> object:
    from reflow.config import job_loader
    from reflow.scheduler import JobManager, JobStore

    return JobManager(JobStore(_store_url(args)), loader=job_loader, **options)  # type: ignore[arg-type]


def cmd_submit(args: argparse.Namespace, out: TextIO) -> int:
    from reflow.scheduler import JobManager

    manager = _manager(args)
    assert isinstance(manager, JobManager)
    result = manager.schedule(Path(args.job), _policy(args), priority=args.priority)  # type: ignore[arg-type]
    queued = f", run {result.run_id} queued" if result.run_id else ""
    out.write(f"submitted {result.job_id}{queued}\n")
    return 0


def cmd_jobs(args: argparse.Namespace, out: TextIO) -> int:
    from reflow.scheduler import JobManager

    manager = _manager(args)
    assert isinstance(manager, JobManager)
    header = f"{'job':<24} {'state':<10} {'policy':<28} {'next fire':<26} {'queued':>6}"
    out.write(header + " last run\n")
    for record in manager.store.jobs():
        status = manager.get_status(record.job_id)
        policy = " ".join(
            str(v)
            for k, v in record.policy.items()
            if k in ("policy", "expression", "event", "upstream")
        )
        fire = status.next_fire_time.isoformat() if status.next_fire_time else "-"
        out.write(
            f"{record.job_id:<24} {status.state:<10} {policy[:28]:<28} {fire:<26} "
            f"{status.queued:>6} {status.last_run_status or '-':<10}\n"
        )
    return 0


def cmd_status(args: argparse.Namespace, out: TextIO) -> int:
    from reflow.scheduler import JobManager

    manager = _manager(args)
    assert isinstance(manager, JobManager)
    status = manager.get_status(args.job_id)
    out.write(f"job {status.job_id}: {status.state}, policy {status.policy}\n")
    if status.next_fire_time:
        out.write(f"next fire: {status.next_fire_time.isoformat()}\n")
    out.write("runs:\n")
    for run in manager.store.runs(args.job_id):
        out.write(f"  {run.run_id} {run.status:<10} {run.trigger} {run.error or ''}\n")
    out.write("history:\n")
    for run_id, state, detail in manager.store.history(args.job_id):
        out.write(f"  {run_id or '-':<18} {state:<18} {detail or ''}\n")
    return 0


def _command(args: argparse.Namespace, kind: str, target: str, out: TextIO) -> int:
    from reflow.scheduler import JobStore

    store = JobStore(_store_url(args))
    command = store.add_command(kind, target)
    deadline = time.monotonic() + COMMAND_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        result = store.command_result(command)
        if result is not None:
            out.write(result + "\n")
            return 0 if result.startswith("ok") else 2
        time.sleep(0.1)
    sys.stderr.write(
        f"reflow: no manager answered within {COMMAND_TIMEOUT_SECONDS:g}s; is `reflow serve` "
        f"running on {_store_url(args)}? The command stays queued for it.\n"
    )
    return 1


def cmd_trigger(args: argparse.Namespace, out: TextIO) -> int:
    from reflow.scheduler import JobManager

    manager = _manager(args)
    assert isinstance(manager, JobManager)
    out.write(f"queued {manager.trigger(args.job_id)}\n")
    return 0


def cmd_serve(args: argparse.Namespace, out: TextIO) -> int:
    from reflow.config import executor_settings, load_system_config
    from reflow.runtime.executor import ExecutorSettings
    from reflow.scheduler import JobManager

    settings = ExecutorSettings()
    queue_size = 1000
    if args.config:
        system = load_system_config(args.config)
        settings = executor_settings(system)
        queue_size = system.scheduler.job_queue_size
    from reflow.scheduler.manager import memory_mb

    manager = _manager(
        args,
        settings=settings,
        slots=args.slots,
        memory_mb=memory_mb(args.memory) if args.memory else None,
        queue_size=queue_size,
    )
    assert isinstance(manager, JobManager)
    if args.jobs_dir:
        for path in sorted(Path(args.jobs_dir).glob("*.y*ml")):
            text = path.read_text(encoding="utf-8")
            record = None
            job = manager._build(text, str(path.resolve().parent))
            record = manager.store.job(job.job_id)
            if record is not None and record.spec == text:
                continue  # known and unchanged: keep its schedule and history
            manager.schedule(path)
    out.write(
        f"reflow serve: store {_store_url(args)}, {args.slots} slots, started "
        f"{datetime.now(UTC).isoformat()}\n"
    )
    out.flush()

    async def serve() -> None:
        task = asyncio.ensure_future(manager.run_forever())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(serve())
    return 0


def commands() -> dict[str, object]:
    return {
        "serve": cmd_serve,
        "submit": cmd_submit,
        "jobs": cmd_jobs,
        "status": cmd_status,
        "trigger": cmd_trigger,
        "cancel": lambda a, o: _command(a, "cancel", a.job_id, o),
        "pause": lambda a, o: _command(a, "pause", a.job_id, o),
        "resume": lambda a, o: _command(a, "resume", a.job_id, o),
        "events": lambda a, o: _command(a, "event", a.name, o),
    }
