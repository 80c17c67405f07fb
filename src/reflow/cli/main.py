"""The ``reflow`` command line: run, validate, explain, connectors.

Exit codes: 0 success; 1 the job failed; 2 invalid input (usage, YAML,
validation, connector options); 130 interrupted (Ctrl-C); 143 terminated
(SIGTERM). Both stop the job the same way: sources stop, sinks flush what they
hold, what is committed stays committed, and the summary is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from reflow.errors import ReflowError
from reflow.masking import mask_credentials

__all__ = ["entry_point", "main"]

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_INVALID = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as shells report it


JOB_HELP = (
    "a job file (YAML), a SQL script (file.sql), or a job in Python: file.py, file.py:attr "
    "or module:attr"
)


def _positive(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, not {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reflow", description="Reactive ETL and stream processing for Python."
    )
    from reflow import __version__

    parser.add_argument("--version", action="version", version=f"reflow {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-v", "--verbose", action="store_true", help="show info logs")
    parser.add_argument(
        "--log-json", action="store_true", help="structured JSON log lines (seed section 7.4)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    run = sub.add_parser("run", help="run a job (YAML or Python); bounded jobs run to completion")
    run.add_argument("job", help=JOB_HELP)
    run.add_argument("--config", help="system config file (YAML, seed section 6.1)")
    run.add_argument("--parallelism", type=_positive, help="default parallelism of the job's steps")
    run.add_argument("--no-chaining", action="store_true", help="run every step on its own")
    run.add_argument("--no-progress", action="store_true", help="no progress display")
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue from the job's latest complete checkpoint, if there is one",
    )
    run.add_argument("--from-savepoint", metavar="PATH", help="start from this savepoint file")
    run.add_argument(
        "--executor",
        choices=["local", "ray"],
        help="local (one process, the default) or ray (one Ray actor per subtask); "
        "the system config's executor.type: distributed means ray",
    )
    run.add_argument(
        "--address", metavar="HOST:PORT", help="with --executor ray: a running Ray cluster"
    )

    savepoint = sub.add_parser(
        "savepoint", help="take a savepoint of a job running with checkpoints (reflow run)"
    )
    savepoint.add_argument("checkpoint_dir", help="the job's checkpoint folder (checkpoint.path)")
    savepoint.add_argument("job_id", help="the job's id")
    savepoint.add_argument("--stop", action="store_true", help="stop the job after the savepoint")
    savepoint.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for the running job"
    )

    validate = sub.add_parser("validate", help="check a job file without running it")
    validate.add_argument("job", help=JOB_HELP)
    validate.add_argument(
        "--config", help="system config file (YAML): validated too, and its parallelism used"
    )

    explain = sub.add_parser("explain", help="show the StreamGraph and the JobGraph of a job")
    explain.add_argument("job", help=JOB_HELP)
    explain.add_argument(
        "--format", choices=["text", "mermaid", "both"], default="both", help="output format"
    )
    explain.add_argument(
        "--parallelism", type=_positive, help="default parallelism of the job's steps"
    )
    explain.add_argument("--no-chaining", action="store_true", help="explain without chaining")

    sql = sub.add_parser(
        "sql", help="run a streaming SQL script (file.sql), or validate or explain it"
    )
    sql.add_argument("job", metavar="FILE", help="a SQL script: CREATE TABLE ...; INSERT INTO ...")
    what = sql.add_mutually_exclusive_group()
    what.add_argument("--validate", action="store_true", help="check it without running it")
    what.add_argument(
        "--explain", action="store_true", help="show its plan: the StreamGraph and JobGraph"
    )
    sql.add_argument("--parallelism", type=_positive, help="default parallelism of the steps")
    sql.add_argument("--no-progress", action="store_true", help="no progress display")

    connectors = sub.add_parser("connectors", help="list connectors, or one connector's options")
    connectors.add_argument("name", nargs="?", help="a connector name")

    from reflow.cli.jobs import add_parsers

    add_parsers(sub)
    return parser


def _setup_logging(debug: bool, verbose: bool, json: bool) -> None:
    from reflow.observability.logs import setup_logging

    # JSON lines are for machines collecting the job's events: INFO and up by default.
    level = logging.DEBUG if debug else logging.INFO if verbose or json else logging.WARNING
    setup_logging(level, json=json)


def _load(
    path: str, parallelism: int | None, no_chaining: bool, config: str | None = None
) -> object:
    from reflow.config import load_job, load_system_config
    from reflow.config.python_job import is_python_job, load_python_job

    default = None
    if config is not None:
        default = load_system_config(config).executor.parallelism
    if path.endswith(".sql"):
        from reflow.table import load_sql_file

        job = load_sql_file(path, parallelism=parallelism or default)
        rebuild = no_chaining
    elif is_python_job(path):
        job = load_python_job(path)
        rebuild = parallelism is not None or default is not None or no_chaining
    else:
        job = load_job(path, default_parallelism=parallelism or default)
        rebuild = parallelism is not None or no_chaining
    if rebuild:
        from dataclasses import replace

        from reflow.graph.job import Job

        job_graph = job.stream_graph.to_job_graph(
            chaining=not no_chaining and job.config.chaining,
            default_parallelism=parallelism or default,
        )
        rebuilt = Job(
            job_graph,
            job_id=job.job_id,
            name=job.job_name,
            job_type=job.job_type,
            config=replace(job.config, chaining=not no_chaining and job.config.chaining),
            metadata=job.metadata,
        )
        rebuilt.id_generated = job.id_generated
        job = rebuilt
    return job


def _cmd_validate(args: argparse.Namespace, out: TextIO) -> int:
    from reflow.connectors.registry import resolve_sink, resolve_source
    from reflow.graph.job import Job
    from reflow.graph.stream_graph import NodeKind

    job = _load(args.job, None, False, args.config)
    assert isinstance(job, Job)
    for node in job.stream_graph.nodes:
        if node.kind is NodeKind.SOURCE:
            resolve_source(node.payload)
        elif node.kind is NodeKind.SINK:
            resolve_sink(node.payload)
    graph = job.job_graph
    out.write(
        f"{args.job}: valid. Job {job.job_name!r} ({job.job_type.value}): "
        f"{_plural(len(job.stream_graph.nodes), 'step')} in "
        f"{_plural(len(graph.vertices), 'vertex', 'vertices')}.\n"
    )
    for note in job.metadata.get("notes", ()):
        out.write(f"  note: {note}\n")
    return EXIT_OK


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def _cmd_explain(args: argparse.Namespace, out: TextIO) -> int:
    from reflow.graph.explain import explain_mermaid, explain_text
    from reflow.graph.job import Job

    job = _load(args.job, args.parallelism, args.no_chaining)
    assert isinstance(job, Job)
    if args.format in ("text", "both"):
        out.write(explain_text(job.job_graph) + "\n")
    if args.format == "both":
        out.write("\n")
    if args.format in ("mermaid", "both"):
        out.write("```mermaid\n" + explain_mermaid(job.job_graph) + "\n```\n")
    return EXIT_OK


def _cmd_sql(args: argparse.Namespace, out: TextIO) -> int:
    """``reflow sql FILE``: run, ``--validate`` or ``--explain`` a SQL script."""
    if not args.job.endswith(".sql"):
        sys.stderr.write(f"reflow: {args.job} is not a .sql file\n")
        return EXIT_INVALID
    if args.validate:
        return _cmd_validate(argparse.Namespace(job=args.job, config=None), out)
    if args.explain:
        return _cmd_explain(
            argparse.Namespace(
                job=args.job, format="both", parallelism=args.parallelism, no_chaining=False
            ),
            out,
        )
    return _cmd_run(
        argparse.Namespace(
            job=args.job,
            config=None,
            parallelism=args.parallelism,
            no_chaining=False,
            no_progress=args.no_progress,
            resume=False,
            from_savepoint=None,
            executor=None,
            address=None,
            debug=args.debug,
        ),
        out,
    )


def _cmd_connectors(args: argparse.Namespace, out: TextIO) -> int:
    from reflow.connectors.registry import available_connectors, get_connector

    if args.name is None:
        for name in available_connectors():
            connector = get_connector(name)
            description = getattr(connector, "description", "") or ""
            out.write(f"{name:<10} {description}\n")
        return EXIT_OK
    descriptor = get_connector(args.name).config_descriptor()
    out.write(f"{descriptor.connector}: {descriptor.description}\n\n")
    out.write(f"{'option':<24} {'for':<12} {'type':<28} default\n")
    for option in descriptor.options:
        default = "(required)" if option.required else repr(option.default)
        roles = "/".join(option.roles)
        secret = " [secret]" if option.secret else ""
        out.write(f"{option.name:<24} {roles:<12} {option.type:<28} {default}{secret}\n")
        if option.description:
            out.write(f"{'':<24} {option.description}\n")
    return EXIT_OK


def _cmd_run(args: argparse.Namespace, out: TextIO) -> int:
    from dataclasses import replace

    from reflow.checkpoint import open_storage, read_checkpoint
    from reflow.cli.progress import run_with_progress
    from reflow.config import executor_settings, load_system_config
    from reflow.graph.job import CheckpointConfig, Job, JobStatus
    from reflow.runtime.base import ExecutorSettings

    settings = ExecutorSettings()
    job = _load(args.job, args.parallelism, args.no_chaining, args.config)
    assert isinstance(job, Job)
    for note in job.metadata.get("notes", ()):
        sys.stderr.write(f"reflow: note: {note}\n")
    if job.metadata.get("schedule") is not None:
        sys.stderr.write(
            f"reflow: {args.job} has a schedule: block; `reflow run` runs the job once, "
            "now, and ignores it (`reflow submit` then `reflow serve` follow the schedule)\n"
        )
    executor = args.executor
    address = args.address
    if args.config:
        system = load_system_config(args.config)
        settings = executor_settings(system)
        if executor is None and system.executor.type == "distributed":
            executor = "ray"
        address = args.address or system.executor.address
        checkpoint = system.checkpoint
        if checkpoint.enabled and job.config.checkpoint is None:
            from reflow.connectors.options import parse_duration

            job.config = replace(
                job.config,
                checkpoint=CheckpointConfig(
                    checkpoint.storage.path,
                    round(parse_duration(checkpoint.interval) * 1000),
                    round(parse_duration(checkpoint.timeout) * 1000),
                ),
            )
    restore = None
    if args.from_savepoint:
        restore = read_checkpoint(args.from_savepoint)
    elif args.resume:
        if job.config.checkpoint is None:
            sys.stderr.write("reflow: --resume needs checkpointing (checkpoint: in the job)\n")
            return EXIT_INVALID
        if job.id_generated:
            sys.stderr.write(
                f"reflow: --resume finds a job's checkpoints by its id, and {args.job} sets "
                "none (a new one is made on every run): give the job an id (id: in the job "
                "file, job_id= in Python)\n"
            )
            return EXIT_INVALID
        storage = open_storage(job.config.checkpoint.path)
        restore = storage.latest(job.job_id)
        if restore is not None:
            sys.stderr.write(
                f"reflow: resuming job {job.job_id} from checkpoint {restore.checkpoint_id}\n"
            )
    received: list[int] = []
    if executor == "ray":
        from reflow.runtime import create_executor, execute_with_recovery

        ray_executor = create_executor(settings, kind="ray", address=address)
        result = asyncio.run(execute_with_recovery(ray_executor, job, restore))
        out.write(_summary(result))
    else:
        from reflow.cli.jobs import reporters

        prometheus_port, log_interval = reporters(args.config)
        result = asyncio.run(
            run_with_progress(
                job,
                settings,
                out,
                show=not args.no_progress,
                restore=restore,
                received=received,
                prometheus_port=prometheus_port,
                log_interval=log_interval,
            )
        )
    if result.status is JobStatus.COMPLETED:
        return EXIT_OK
    if result.status is JobStatus.CANCELLED:
        if signal.SIGTERM in received:
            return EXIT_TERMINATED
        return EXIT_INTERRUPTED
    sys.stderr.write(
        f"reflow: job {job.job_name!r} FAILED: {mask_credentials(result.error or '')}\n"
    )
    if args.debug and result.exception is not None:
        import traceback

        traceback.print_exception(result.exception, file=sys.stderr)
    return EXIT_JOB_FAILED


def _summary(result: Any) -> str:
    lines = [f"job {result.job_name} {result.status.value} in {result.duration_seconds:.2f}s"]
    for step in result.metrics.steps:
        lines.append(
            f"  {step.step_id:<24} in {step.records_in:>10,}  out {step.records_out:>10,}  "
            f"subtasks {step.subtasks}"
        )
    return "\n".join(lines) + "\n"


def _cmd_savepoint(args: argparse.Namespace, out: TextIO) -> int:
    from reflow.cli.progress import request_savepoint

    path = request_savepoint(args.checkpoint_dir, args.job_id, args.stop, args.timeout)
    if path is None:
        sys.stderr.write(
            f"reflow: no running job {args.job_id!r} answered within {args.timeout:g}s; "
            "is it running with `reflow run` and checkpointing into that folder?\n"
        )
        return EXIT_JOB_FAILED
    out.write(f"{path}\n")
    return EXIT_OK


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    out = out or sys.stdout
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) if exc.code in (0, None) else EXIT_INVALID
    _setup_logging(args.debug, args.verbose, args.log_json)
    from reflow.cli.jobs import commands as job_commands

    commands: dict[str, Any] = {
        **job_commands(),
        "savepoint": _cmd_savepoint,
        "run": _cmd_run,
        "validate": _cmd_validate,
        "explain": _cmd_explain,
        "sql": _cmd_sql,
        "connectors": _cmd_connectors,
    }
    try:
        code: int = commands[args.command](args, out)
        return code
    except ReflowError as exc:
        if args.debug:
            raise
        sys.stderr.write(f"reflow: error: {mask_credentials(str(exc))}\n")
        return EXIT_INVALID
    except KeyboardInterrupt:
        sys.stderr.write("reflow: interrupted\n")
        return EXIT_INTERRUPTED


def entry_point() -> None:
    """The console script ``reflow``."""
    sys.exit(main())
