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
from pathlib import Path
from types import ModuleType

__all__ = ["FILE_MODULE_PREFIX", "import_module_or_file"]

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
