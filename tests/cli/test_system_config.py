"""Every system config key (seed §6.1) takes effect or is refused with the reason:
metrics reporters in reflow run, metrics.enabled, scheduler.type/threadPoolSize,
threadPool.coreSize/queueCapacity, state.rocksdb.blockCacheSize."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from reflow.config import executor_settings, load_system_config_text
from reflow.errors import ConfigError
from reflow.runtime import ExecutorSettings, LocalExecutor
from reflow.scheduler import JobManager, JobStore
from reflow.state import create_backend
from tests.conftest import _free_low_port

SEED_61 = """
system:
  name: reactive-etl-framework
  version: 1.0.0
  executor:
    type: single-node
    parallelism: 4
    threadPool:
      coreSize: 10
      maxSize: 50
  scheduler:
    type: quartz
    threadPoolSize: 20
    jobQueueSize: 1000
  checkpoint:
    enabled: true
    interval: 60s
    timeout: 10s
    storage:
      type: filesystem
      path: {root}/checkpoints
  state:
    backend: memory
    rocksdb:
      path: {root}/state
      blockCacheSize: 256m
  metrics:
    enabled: true
    reporters:
      - type: prometheus
        port: {port}
      - type: slf4j
        interval: 60s
"""


def test_the_seeds_system_config_maps_onto_the_executor(tmp_path: Path) -> None:
    config = load_system_config_text(SEED_61.format(root=tmp_path, port=9090))
    settings = executor_settings(config)
    assert (settings.parallelism, settings.io_threads, settings.io_threads_started) == (4, 50, 10)
    assert settings.state_block_cache_bytes == 256 * 1024 * 1024
    executor = LocalExecutor(settings)
    io_pool, _ = executor.pools.shared()
    assert len(io_pool._threads) == 10  # coreSize threads started with the pool
    executor.close()
    backend = create_backend("rocksdb", path=tmp_path / "s", block_cache_bytes=1 << 20)
    assert backend.block_cache is not None  # type: ignore[attr-defined]
    backend.close()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("type: quartz", "reflow's scheduler is built in and reads Quartz cron expressions"),
        ("maxSize: 50", "queueCapacity has no meaning in reflow"),
        ("coreSize: 10", "coreSize 60 is more than maxSize 50"),
    ],
)
def test_keys_that_cannot_take_effect_are_refused_with_the_reason(
    tmp_path: Path, change: str, message: str
) -> None:
    replacement = {
        "type: quartz": "type: cron4j",
        "maxSize: 50": "maxSize: 50\n      queueCapacity: 1000",
        "coreSize: 10": "coreSize: 60",
    }[change]
    text = SEED_61.format(root=tmp_path, port=9090).replace(change, replacement)
    with pytest.raises(ConfigError, match=message):
        load_system_config_text(text)


def test_thread_pool_size_bounds_the_runs_executing_at_once(tmp_path: Path) -> None:
    from reflow.config import job_loader
    from reflow.testing import memory_store

    memory_store["limit-in"] = [1]
    manager = JobManager(
        JobStore(f"sqlite:///{tmp_path}/jobs.db"), loader=job_loader, slots=8, max_runs=1
    )
    for name in ("a", "b"):
        manager.schedule(
            f"job:\n  id: {name}\n  name: {name}\n"
            "  source: {connector: memory, config: {collection: limit-in}}\n"
            "  sink: {connector: stdout}\n"
        )

    async def one_round() -> tuple[int, int]:
        manager.recover()
        await manager.step()
        running = len(manager.running)
        await asyncio.gather(*(r.task for r in list(manager.running.values())))
        await manager.step()
        await asyncio.gather(*(r.task for r in list(manager.running.values())))
        done = sum(1 for r in manager.store.runs() if r.status == "COMPLETED")
        return running, done

    assert asyncio.run(one_round()) == (1, 2)


def test_metrics_disabled_turns_the_api_endpoint_and_the_reporters_off(tmp_path: Path) -> None:
    import httpx

    from reflow.cli.jobs import reporters
    from reflow.server.app import create_app

    manager = JobManager(JobStore(f"sqlite:///{tmp_path}/jobs.db"), settings=ExecutorSettings())

    async def get(metrics: bool) -> httpx.Response:
        app = create_app(manager, metrics=metrics)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return await client.get("/metrics")

    assert asyncio.run(get(True)).status_code == 200
    answer = asyncio.run(get(False))
    assert answer.status_code == 404 and "metrics.enabled is false" in answer.text
    system = tmp_path / "system.yaml"
    system.write_text(SEED_61.format(root=tmp_path, port=9090))
    assert reporters(str(system)) == (9090, 60.0)
    system.write_text(
        SEED_61.format(root=tmp_path, port=9090).replace(
            "enabled: true\n    reporters", "enabled: false\n    reporters"
        )
    )
    assert reporters(str(system)) == (None, None)


def test_reflow_run_serves_its_metrics_for_prometheus(tmp_path: Path) -> None:
    port = _free_low_port()
    system = tmp_path / "system.yaml"
    system.write_text(SEED_61.format(root=tmp_path, port=port))
    job = tmp_path / "job.yaml"
    job.write_text(
        "job:\n  id: scraped\n  name: scraped\n"
        "  source: {connector: datagen, config: {rows_per_second: 200}}\n"
        "  sink: {connector: stdout}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "reflow", "run", "--no-progress", "--config", str(system), str(job)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    text = ""
    try:
        deadline = time.monotonic() + 60
        while 'job_id="scraped"' not in text:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, f"no metrics of the job on port {port}: {text!r}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    text = r.read().decode()
            except OSError:
                time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
        if proc.stderr:
            proc.stderr.close()
    assert "reflow_operator_records_out_total{" in text
