"""The ``reflow`` command line."""

from reflow.cli.main import entry_point, main

__all__ = ["entry_point", "main"]
