"""YAML: the system config (seed §6.1) and job files (§6.2), validated with line numbers."""

from reflow.config.job_file import (
    compile_expression,
    job_loader,
    load_job,
    load_job_text,
    resolve_callable,
)
from reflow.config.models import JobFile, SystemConfig
from reflow.config.system import executor_settings, load_system_config, load_system_config_text
from reflow.config.yaml_loader import LoadedYaml, load_yaml, load_yaml_text

__all__ = [
    "JobFile",
    "LoadedYaml",
    "SystemConfig",
    "compile_expression",
    "executor_settings",
    "job_loader",
    "load_job",
    "load_job_text",
    "load_system_config",
    "load_system_config_text",
    "load_yaml",
    "load_yaml_text",
    "resolve_callable",
]
