"""Observability helpers used across reflow: structured logs."""

from reflow.observability.logs import JsonFormatter, setup_logging

__all__ = ["JsonFormatter", "setup_logging"]
