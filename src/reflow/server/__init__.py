"""What ``reflow serve`` serves: the REST API, Prometheus metrics and health checks."""

from reflow.server.app import create_app
from reflow.server.health import ComponentHealth, HealthChecker, HealthReport
from reflow.server.metrics import ReflowCollector

__all__ = ["ComponentHealth", "HealthChecker", "HealthReport", "ReflowCollector", "create_app"]
