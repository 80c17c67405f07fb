"""The system config (seed §6.1) and what it means for the executor."""

from __future__ import annotations

from pathlib import Path

from reflow.config.models import SystemConfig, SystemFile, validate_loaded
from reflow.config.yaml_loader import load_yaml, load_yaml_text
from reflow.graph.job_graph import parse_memory_mb
from reflow.runtime.base import ExecutorSettings

__all__ = ["executor_settings", "load_system_config", "load_system_config_text"]


def load_system_config(path: str | Path) -> SystemConfig:
    """Load and validate a system config file (``system:`` block)."""
    system: SystemConfig = validate_loaded(load_yaml(path), SystemFile).system
    return system


def load_system_config_text(text: str, file: str = "<string>") -> SystemConfig:
    system: SystemConfig = validate_loaded(load_yaml_text(text, file), SystemFile).system
    return system


def executor_settings(config: SystemConfig) -> ExecutorSettings:
    """ExecutorSettings from ``system.executor`` (threadPool, or §10.4's io/compute pools)
    and ``system.state`` (backend, RocksDB path, memory entry cap)."""
    ex = config.executor
    pool = ex.thread_pool
    io = pool.io or pool
    io_threads = io.max_size
    started = io.core_size if "core_size" in io.model_fields_set else 0
    compute_threads = pool.compute.max_size if pool.compute else ExecutorSettings().compute_threads
    block_cache = None
    if "block_cache_size" in config.state.rocksdb.model_fields_set:
        size = config.state.rocksdb.block_cache_size
        block_cache = size if isinstance(size, int) else parse_memory_mb(size) * 1024 * 1024
    return ExecutorSettings(
        parallelism=ex.parallelism,
        batch_size=ex.batch_size,
        channel_capacity=ex.channel_capacity,
        io_threads=io_threads,
        io_threads_started=started,
        compute_threads=compute_threads,
        state_block_cache_bytes=block_cache,
        state_backend=config.state.backend,
        state_path=config.state.rocksdb.path if config.state.backend == "rocksdb" else None,
        state_max_entries=config.state.max_entries,
        gc_threshold=ex.gc_threshold,
    )
