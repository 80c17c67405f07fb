"""``reflow serve`` and the commands that talk to it through the job store.

``serve`` runs the job manager (scheduler + executor) until interrupted; it
loads the job files of ``--jobs-dir`` and picks up what ``submit`` puts into
the store. ``cancel``/``pause``/``resume``/``events post`` leave a command in
the store that the manager carries out within a poll interval (``rescale`` when
the run runs again); ``trigger`` queues a run directly.
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
from typing import Any, TextIO

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
        if parser.prog.split()[-1] != "serve":
            parser.add_argument(
                "--api", help="talk to a running reflow serve at this URL (default $REFLOW_API)"
            )
            parser.add_argument("--api-token", help="API token (default $REFLOW_TOKEN)")
        return parser

    serve = with_store(sub.add_parser("serve", help="run the job manager (scheduler + executor)"))
    serve.add_argument("--jobs-dir", help="load every job file (*.yaml) of this folder")
    serve.add_argument("--slots", type=int, default=4, help="parallel subtasks the executor runs")
    serve.add_argument("--memory", help="memory for runs, e.g. 8g (jobs declare resources.memory)")
    serve.add_argument("--config", help="system config file (YAML)")
    serve.add_argument("--host", default="127.0.0.1", help="REST API address (default loopback)")
    serve.add_argument("--port", type=int, default=8080, help="REST API port (0: no API)")
    serve.add_argument("--token", help="API token (default $REFLOW_TOKEN); required off loopback")
    serve.add_argument(
        "--allow-module",
        action="append",
        default=[],
        help="module whose functions submitted jobs may name (repeatable)",
    )

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
    rescale = with_store(
        sub.add_parser(
            "rescale",
            help="restart a running job at a new parallelism from a savepoint (needs checkpoints)",
        )
    )
    rescale.add_argument("job_id", help="the job (its running runs) or one run id")
    rescale.add_argument(
        "--parallelism", type=int, help="for every step that sets none (sources keep theirs)"
    )
    rescale.add_argument(
        "--step",
        action="append",
        default=[],
        metavar="STEP=N",
        help="one step's parallelism (repeatable)",
    )
    events = sub.add_parser("events", help="post events for event-triggered jobs")
    events_sub = events.add_subparsers(dest="events_command", metavar="ACTION")
    events_sub.required = True
    post = with_store(events_sub.add_parser("post", help="post an event"))
    post.add_argument("name")


def _client(args: argparse.Namespace) -> Any:
    """An HTTP client for the REST API when --api / $REFLOW_API is given, else None."""
    url = getattr(args, "api", None) or os.environ.get("REFLOW_API")
    if not url:
        return None
    import httpx

    token = getattr(args, "api_token", None) or os.environ.get("REFLOW_TOKEN")
    # X-Requested-With: the API refuses bodiless POSTs without it (cross-site forms).
    headers = {"X-Requested-With": "reflow-cli"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=COMMAND_TIMEOUT_SECONDS)


def _answer(response: Any, out: TextIO) -> Any:
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = response.text
        sys.stderr.write(f"reflow: the API answered {response.status_code}: {detail}\n")
        raise _ApiError(2 if response.status_code < 500 else 1)
    return response.json()


class _ApiError(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


def _via_api(args: argparse.Namespace, out: TextIO) -> int | None:
    """Run a jobs command through the REST API; None when no API is configured."""
    client = _client(args)
    if client is None:
        return None
    try:
        with client:
            command = args.command
            if command == "submit":
                schedule: dict[str, Any] | None = None
                if args.cron:
                    schedule = {
                        "policy": "cron",
                        "expression": args.cron,
                        "timezone": args.timezone,
                    }
                elif args.depends_on:
                    upstream = [j.strip() for j in args.depends_on.split(",")]
                    schedule = {"policy": "depends_on", "upstream": upstream}
                elif args.on_event:
                    schedule = {"policy": "on_event", "event": args.on_event}
                body = {"yaml": Path(args.job).read_text(encoding="utf-8"), "schedule": schedule}
                if args.priority is not None:
                    body["priority"] = args.priority
                result = _answer(client.post("/api/jobs", json=body), out)
                queued = f", run {result['run_id']} queued" if result["run_id"] else ""
                out.write(f"submitted {result['job_id']}{queued}\n")
            elif command == "jobs":
                for job in _answer(client.get("/api/jobs"), out):
                    policy = str(job["policy"].get("policy"))
                    out.write(
                        f"{job['job_id']:<24} {job['state']:<10} {policy:<12} "
                        f"{job['next_fire_time'] or '-':<26} {job['queued']:>6} "
                        f"{job['last_run_status'] or '-'}\n"
                    )
            elif command == "status":
                job = _answer(client.get(f"/api/jobs/{args.job_id}"), out)
                out.write(f"job {job['job_id']}: {job['state']}, policy {job['policy']}\n")
                for run in _answer(client.get(f"/api/jobs/{args.job_id}/runs"), out):
                    times = ", ".join(
                        f"{name} {run[f'{name}_at']}"
                        for name in ("queued", "started", "ended")
                        if run.get(f"{name}_at")
                    )
                    out.write(f"  {run['run_id']} {run['status']:<10} {run['trigger']} ({times})\n")
            elif command == "events":
                queued = _answer(client.post(f"/api/events/{args.name}"), out)
                out.write(f"ok: {len(queued)} runs queued\n")
            elif command == "rescale":
                body = {"parallelism": args.parallelism, "steps": _steps(args.step)}
                answer = _answer(client.post(f"/api/jobs/{args.job_id}/rescale", json=body), out)
                for result in answer:
                    out.write(f"ok: {result['detail']}\n")
            else:  # cancel, pause, resume, trigger
                result = _answer(client.post(f"/api/jobs/{args.job_id}/{command}"), out)
                out.write(f"ok: {result['detail']}\n")
    except _ApiError as exc:
        return exc.code
    return 0


def _steps(given: list[str]) -> dict[str, int]:
    steps = {}
    for item in given:
        step, _, value = item.partition("=")
        if not step or not value.strip().isdigit():
            raise SystemExit(f"reflow: --step takes STEP=N (a step id and a number), not {item!r}")
        steps[step] = int(value)
    return steps


def _rescale_target(args: argparse.Namespace) -> str:
    import json

    return json.dumps(
        {"job_id": args.job_id, "parallelism": args.parallelism, "steps": _steps(args.step)}
    )


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


def _at(epoch_seconds: float) -> str:
    """A time in the status output: UTC, to the second (``2026-12-01 18:25:43Z``)."""
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


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
        times = f"queued {_at(run.queued_ms / 1000)}"
        if run.started_at:
            times += f", started {_at(run.started_at)}"
        if run.ended_at:
            times += f", ended {_at(run.ended_at)}"
        out.write(f"  {run.run_id} {run.status:<10} {run.trigger} ({times}) {run.error or ''}\n")
    out.write("history:\n")
    for run_id, state, detail, at in manager.store.timed_history(args.job_id):
        out.write(f"  {_at(at)}  {run_id or '-':<18} {state:<18} {detail or ''}\n")
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
    from reflow.config.policy import SubmissionPolicy
    from reflow.runtime.base import ExecutorSettings
    from reflow.scheduler import JobManager

    settings = ExecutorSettings()
    queue_size = 1000
    max_runs: int | None = None
    autoscaler_defaults = None
    executor = None
    submission = SubmissionPolicy(tuple(args.allow_module))
    if args.config:
        system = load_system_config(args.config)
        security = system.security
        submission = SubmissionPolicy(
            allowed_modules=(*args.allow_module, *security.allowed_modules),
            path_roots=tuple(security.path_roots),
            hosts={name: tuple(patterns) for name, patterns in security.hosts.items()},
            env=tuple(security.env),
            enabled=security.policy,
        )
        settings = executor_settings(system)
        queue_size = system.scheduler.job_queue_size
        max_runs = system.scheduler.thread_pool_size
        if system.autoscaler is not None:
            autoscaler_defaults = system.autoscaler.settings()
        if system.executor.type == "distributed":
            from reflow.runtime import create_executor

            executor = create_executor(settings, kind="ray", address=system.executor.address)
    from reflow.scheduler.manager import memory_mb

    manager = _manager(
        args,
        settings=settings,
        slots=args.slots,
        memory_mb=memory_mb(args.memory) if args.memory else None,
        queue_size=queue_size,
        executor=executor,
        isolate_runs=True,  # a job's blocking function must not stall the API or other runs
        max_runs=max_runs,
        autoscaler_defaults=autoscaler_defaults,
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
    token = args.token or os.environ.get("REFLOW_TOKEN")
    if args.port and args.host not in ("127.0.0.1", "localhost", "::1") and not token:
        sys.stderr.write(
            f"reflow: serving the API on {args.host} needs a token: --token or REFLOW_TOKEN\n"
        )
        return 2
    prometheus_port, log_interval = reporters(args.config)
    metrics_on = not args.config or load_system_config(args.config).metrics.enabled
    api = f"http://{args.host}:{args.port}" if args.port else "no API"
    out.write(
        f"reflow serve: store {_store_url(args)}, {args.slots} slots, {api}, started "
        f"{datetime.now(UTC).isoformat()}\n"
    )
    out.flush()

    async def serve() -> None:
        tasks = [asyncio.ensure_future(manager.run_forever())]
        server: Any = None
        if args.port:
            import uvicorn

            from reflow.server.app import create_app

            app = create_app(
                manager, token=token, policy=submission, bind_host=args.host, metrics=metrics_on
            )
            server = uvicorn.Server(
                uvicorn.Config(
                    app, host=args.host, port=args.port, log_level="warning", lifespan="off"
                )
            )
            tasks.append(asyncio.ensure_future(server.serve()))
        if log_interval:
            from reflow.server.metrics import report_periodically

            tasks.append(asyncio.ensure_future(report_periodically(manager.executor, log_interval)))
        if prometheus_port:
            from prometheus_client import CollectorRegistry, start_http_server

            from reflow.server.metrics import ReflowCollector

            registry = CollectorRegistry()
            registry.register(ReflowCollector(manager.executor, manager))
            start_http_server(prometheus_port, addr=args.host, registry=registry)

        def shut_down() -> None:
            tasks[0].cancel()  # the manager stops its runs
            if server is not None:
                server.should_exit = True  # the API finishes its requests and stops

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, shut_down)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks)

    asyncio.run(serve())
    return 0


def reporters(config: str | None) -> tuple[int | None, float | None]:
    """The Prometheus port and the log-report interval the system config asks for
    (none when ``metrics.enabled`` is false)."""
    if not config:
        return None, None
    from reflow.config import load_system_config
    from reflow.connectors.options import parse_duration

    metrics = load_system_config(config).metrics
    prometheus_port, log_interval = None, None
    if not metrics.enabled:
        return None, None
    for reporter in metrics.reporters:
        if reporter.type == "prometheus" and reporter.port:
            prometheus_port = reporter.port
        elif reporter.type in ("slf4j", "log"):
            log_interval = float(parse_duration(reporter.interval or "60s"))
    return prometheus_port, log_interval


def _api_or(local: Any) -> Any:
    def run(args: argparse.Namespace, out: TextIO) -> int:
        code = _via_api(args, out)
        return local(args, out) if code is None else code

    return run


def commands() -> dict[str, object]:
    return {
        "serve": cmd_serve,
        "submit": _api_or(cmd_submit),
        "jobs": _api_or(cmd_jobs),
        "status": _api_or(cmd_status),
        "trigger": _api_or(cmd_trigger),
        "cancel": _api_or(lambda a, o: _command(a, "cancel", a.job_id, o)),
        "pause": _api_or(lambda a, o: _command(a, "pause", a.job_id, o)),
        "resume": _api_or(lambda a, o: _command(a, "resume", a.job_id, o)),
        "events": _api_or(lambda a, o: _command(a, "event", a.name, o)),
        "rescale": _api_or(lambda a, o: _command(a, "rescale", _rescale_target(a), o)),
    }
