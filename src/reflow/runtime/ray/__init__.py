"""Distributed execution on Ray: the driver, the subtask actors and the channels
between them (``pip install 'reflow[ray]'``)."""

from reflow.runtime.ray.channel import RemoteChannel
from reflow.runtime.ray.driver import RayExecutor

__all__ = ["RayExecutor", "RemoteChannel"]
