"""Importing user code named by a command line or a stored reference: a module by
name (``pkg.mod``) or a Python file by path (``jobs/etl.py``), loaded as module
``reflow_job_<stem>`` so that its ``if __name__ == "__main__":`` block does not run.

Shared by ``reflow run file.py`` and the job store's references to Python jobs and
custom schedule policies; callers turn the import errors into their own.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from reflow.errors import ConfigError

__all__ = ["FILE_MODULE_PREFIX", "import_module_or_file", "resolve_callable"]

FILE_MODULE_PREFIX = "reflow_job_"
"""Module names of Python files imported by path."""


def import_module_or_file(where: str) -> ModuleType:
    """The module ``where`` names: a ``.py`` path (its folder goes on ``sys.path``, so
    its own helper modules import as under ``python file.py``; a file already loaded
    is reused), or a dotted module name importable from the working folder.

    Raises:
        FileNotFoundError: no such Python file.
        ImportError, or whatever the module's code raises while it is imported.
    """
    if not where.endswith(".py"):
        cwd = str(Path.cwd())
        if cwd not in sys.path:
            sys.path.insert(0, cwd)
        return importlib.import_module(where)
    path = Path(where)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such Python file")
    resolved = str(path.resolve())
    name = f"{FILE_MODULE_PREFIX}{path.stem}"
    loaded = sys.modules.get(name)
    if loaded is not None and getattr(loaded, "__file__", None) == resolved:
        return loaded
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _in_modules(module: str, allowed: tuple[str, ...]) -> bool:
    return any(module == m or module.startswith(m + ".") for m in allowed)


def resolve_callable(
    spec: str,
    where: Callable[[str], ConfigError],
    allowed_modules: tuple[str, ...] | None = None,
) -> Callable[..., Any]:
    """Import ``module:attr`` (``attr`` may be dotted) and check it is callable.

    No segment of ``attr`` may start with ``_``. With ``allowed_modules`` (jobs
    submitted through the API) the module must be one of them (or inside one),
    checked before anything is imported, and the callable must be *defined*
    there: a name the module merely imported (``os``, ``json.loads``) is refused.
    """
    if not isinstance(spec, str):
        raise where(
            f"function must be text like 'package.module:function', not {type(spec).__name__}"
        )
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise where(f"function {spec!r} must look like 'package.module:function'")
    parts = attr.split(".")
    if any(not p.isidentifier() or p.startswith("_") for p in parts) or not all(
        p.isidentifier() for p in module_name.split(".")
    ):
        raise where(
            f"function {spec!r}: each name must be a public Python identifier "
            "(none may start with '_')"
        )
    if allowed_modules is not None and not _in_modules(module_name, allowed_modules):
        raise where(
            f"function {spec!r} is not from an allowed module "
            f"({', '.join(allowed_modules) or 'none allowed'}); start the server with "
            "--allow-module, or use an expression"
        )
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise where(
            f"cannot import module {module_name!r} for {spec!r}: {exc}. Put it on PYTHONPATH or "
            "next to the job file"
        ) from None
    for part in parts:
        try:
            target = getattr(target, part)
        except AttributeError:
            raise where(f"module {module_name!r} has no {attr!r}") from None
        if allowed_modules is not None:
            defined_in = getattr(target, "__module__", None)
            if not isinstance(defined_in, str) or not _in_modules(defined_in, allowed_modules):
                raise where(
                    f"function {spec!r}: {part!r} is not defined in an allowed module "
                    f"(it comes from {defined_in or 'a module object'!s}); name the function "
                    "where it is defined"
                )
    if not callable(target):
        raise where(f"{spec!r} is not callable")
    return target  # type: ignore[no-any-return]
