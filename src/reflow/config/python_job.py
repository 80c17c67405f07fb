"""Jobs written in Python, named on the command line as ``module:attr`` or ``file.py[:attr]``.

The named attribute may be a ``Job``, a ``Flow`` (fluent API) or a function taking
no arguments that returns either. Without ``:attr`` the module's ``job`` is used,
else its only Job or Flow. The module is imported, not run as a script: code under
``if __name__ == "__main__":`` does not run, so a file can both run itself with
``reflow.run(job)`` and be run by ``reflow run file.py``.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from reflow.api.stream import Flow
from reflow.errors import ConfigError
from reflow.graph.job import Job
from reflow.loading import import_module_or_file

__all__ = ["is_python_job", "load_python_job"]

_YAML = (".yaml", ".yml")


def is_python_job(target: str) -> bool:
    """True for ``file.py``, ``file.py:attr`` and ``package.module:attr``."""
    path, _, attr = target.partition(":") if not Path(target).exists() else (target, "", "")
    if path.endswith(".py"):
        return True
    if path.endswith(_YAML) or not attr:
        return False
    return all(part.isidentifier() for part in path.split("."))


def _import(where: str) -> ModuleType:
    try:
        return import_module_or_file(where)
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from None
    except ModuleNotFoundError as exc:
        if exc.name is not None and where.startswith(exc.name):
            raise ConfigError(
                f"{where}: no module named {exc.name!r} (run from the folder that holds it, "
                "or name the file: reflow run path/to/file.py)"
            ) from None
        raise ConfigError(f"{where}: importing it failed: {exc}") from exc
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"{where}: importing it failed: {type(exc).__name__}: {exc}") from exc


def _as_job(value: Any, where: str) -> Job:
    if callable(value) and not isinstance(value, (Job, Flow, type)):
        try:
            value = value()
        except TypeError as exc:
            raise ConfigError(
                f"{where}: a function naming a job must take no arguments ({exc})"
            ) from None
    if isinstance(value, Flow):
        return value.to_job()
    if isinstance(value, Job):
        return value.copy()  # the module's object stays as it was: each run gets its own
    raise ConfigError(
        f"{where} is a {type(value).__name__}, not a Job, a Flow or a function returning one"
    )


def load_python_job(target: str) -> Job:
    """The Job named by ``target`` (``file.py``, ``file.py:attr`` or ``module:attr``).

    Raises:
        ConfigError: the file or module is missing or fails to import, the attribute
            is missing, or it is not a job.
    """
    path, _, attr = target.partition(":")
    module = _import(path)
    if attr:
        value: Any = module
        for part in attr.split("."):
            if not hasattr(value, part):
                raise ConfigError(f"{path}: has no {attr!r}")
            value = getattr(value, part)
        return _as_job(value, f"{path}:{attr}")
    if isinstance(getattr(module, "job", None), (Job, Flow)):
        return _as_job(module.job, f"{path}:job")
    found = {
        name: value
        for name, value in vars(module).items()
        if isinstance(value, (Job, Flow)) and not name.startswith("_")
    }
    if len(found) == 1:
        (name, value), *_ = found.items()
        return _as_job(value, f"{path}:{name}")
    if not found:
        raise ConfigError(
            f"{path}: defines no Job or Flow at module level; build one there or "
            f"name a function returning one: reflow run {path}:make_job"
        )
    raise ConfigError(
        f"{path}: defines {len(found)} jobs ({', '.join(sorted(found))}); "
        f"name one: reflow run {path}:{sorted(found)[0]}"
    )
