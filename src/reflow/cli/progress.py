"""Running a job from the CLI: a live progress line and the closing summary."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from pathlib import Path
from typing import TextIO

from reflow.checkpoint.storage import CheckpointData
from reflow.errors import ReflowError
from reflow.graph.job import Job
from reflow.runtime import (
    Executor,
    ExecutorSettings,
    JobResult,
    create_executor,
    execute_with_recovery,
)
from reflow.runtime.metrics import ExecutionMetrics

__all__ = ["format_summary", "request_savepoint", "run_with_progress"]

REQUEST = "savepoint.request"
RESPONSE = "savepoint.response"


def _control_dir(job: Job) -> Path | None:
    if job.config.checkpoint is None:
        return None
    return Path(job.config.checkpoint.path) / job.job_id


def request_savepoint(checkpoint_dir: str, job_id: str, stop: bool, timeout: float) -> str | None:
    """Ask a running ``reflow run`` for a savepoint; returns its path, or None on timeout."""
    folder = Path(checkpoint_dir) / job_id
    folder.mkdir(parents=True, exist_ok=True)
    response = folder / RESPONSE
    response.unlink(missing_ok=True)
    (folder / REQUEST).write_text("stop" if stop else "keep")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if response.exists():
            text = response.read_text()
            response.unlink(missing_ok=True)
            return text or None
        time.sleep(PROGRESS_INTERVAL_SECONDS)
    (folder / REQUEST).unlink(missing_ok=True)
    return None


async def _serve_savepoints(executor: Executor, job: Job) -> None:
    """Answer savepoint requests (files in the job's checkpoint folder) while it runs."""
    folder = _control_dir(job)
    if folder is None:
        return
    request = folder / REQUEST
    while True:
        await asyncio.sleep(PROGRESS_INTERVAL_SECONDS)
        if not request.exists():
            continue
        stop = request.read_text().strip() == "stop"
        request.unlink(missing_ok=True)
        try:
            data = await executor.savepoint(job.job_id, stop=stop)
        except Exception as exc:  # answer the waiting CLI, never crash the job
            data = None
            sys.stderr.write(f"reflow: savepoint failed: {exc}\n")
        (folder / RESPONSE).write_text("" if data is None else data.path)


# Refresh rate of the progress display: smooth to the eye, negligible cost.
PROGRESS_INTERVAL_SECONDS = 0.2


def _totals(metrics: ExecutionMetrics) -> tuple[int, int]:
    read = sum(s.records_out for s in metrics.steps if s.kind == "source")
    written = sum(s.records_in for s in metrics.steps if s.kind == "sink")
    return read, written


def format_summary(result: JobResult) -> str:
    """The per-step table printed when a job ends."""
    return result.summary()


# Signals that stop a running job cleanly (Ctrl-C, and a supervisor's stop).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def run_with_progress(
    job: Job,
    settings: ExecutorSettings,
    out: TextIO,
    *,
    show: bool = True,
    restore: CheckpointData | None = None,
    received: list[int] | None = None,
    prometheus_port: int | None = None,
    log_interval: float | None = None,
) -> JobResult:
    """Run ``job``; show progress on stderr while it runs; print the summary to ``out``.

    SIGINT and SIGTERM (what process supervisors send) stop the job the same way:
    the sources stop, what is committed stays committed, the summary is printed.
    The signals received are appended to ``received``. ``prometheus_port`` serves
    the job's metrics for Prometheus on 127.0.0.1 while it runs; ``log_interval``
    logs them every that many seconds (the system config's ``metrics.reporters``).
    """
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    executor = create_executor(settings)
    try:
        task = asyncio.create_task(execute_with_recovery(executor, job, restore))
        savepoints = asyncio.create_task(_serve_savepoints(executor, job))
        helpers = [savepoints]
        metrics_server = None
        if prometheus_port:
            from prometheus_client import CollectorRegistry, start_http_server

            from reflow.server.metrics import ReflowCollector

            registry = CollectorRegistry()
            registry.register(ReflowCollector(executor))
            metrics_server, _ = start_http_server(
                prometheus_port, addr="127.0.0.1", registry=registry
            )
        if log_interval:
            from reflow.server.metrics import report_periodically

            helpers.append(asyncio.create_task(report_periodically(executor, log_interval)))
        loop = asyncio.get_running_loop()

        def stop(signum: int) -> None:
            if received is not None:
                received.append(signum)
            with contextlib.suppress(ReflowError):  # not started yet, or already ended
                executor.stop_nowait(job.job_id)

        for signum in STOP_SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, stop, signum)
        if show and console.is_terminal:
            with Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.description}"),
                TextColumn("read {task.fields[read]:,}  wrote {task.fields[written]:,}"),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            ) as progress:
                bar = progress.add_task(job.job_name, total=None, read=0, written=0)
                while not task.done():
                    await asyncio.wait({task}, timeout=PROGRESS_INTERVAL_SECONDS)
                    with contextlib.suppress(Exception):
                        read, written = _totals(executor.snapshot(job.job_id).metrics)
                        progress.update(bar, read=read, written=written)
        result = await task
        for helper in helpers:
            helper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await helper
        if metrics_server is not None:
            metrics_server.shutdown()
        for signum in STOP_SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)
    finally:
        executor.close()
    out.write(format_summary(result) + "\n")
    return result
