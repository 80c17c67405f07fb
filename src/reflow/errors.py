"""The one exception tree of reflow.

Every message says what happened, why, and how to fix it, and names the
``step_id``, file and line where there is one.
"""

from __future__ import annotations

__all__ = [
    "BackpressureOverflowError",
    "ConfigError",
    "ConnectorConfigError",
    "ConnectorError",
    "ConnectorNotFoundError",
    "ExecutionError",
    "GraphValidationError",
    "InvalidTransitionError",
    "JobFailedError",
    "RecordRejectedError",
    "ReflowError",
]


class ReflowError(Exception):
    """Base class of every error reflow raises on purpose."""


class GraphValidationError(ReflowError):
    """A StreamGraph is not a valid DAG (cycle, dangling node, unknown id, ...)."""

    def __init__(self, message: str, *, step_id: str | None = None) -> None:
        super().__init__(message)
        self.step_id = step_id


class InvalidTransitionError(ReflowError):
    """A job lifecycle transition that the state machine does not allow."""


class ConfigError(ReflowError):
    """A YAML file or configuration value is wrong.

    ``file`` and ``line`` (1-based) point at the offending place when known.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        path: str | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.path = path
        self.reason = message
        where = ""
        if file is not None:
            where = f"{file}:{line}: " if line is not None else f"{file}: "
        elif line is not None:
            where = f"line {line}: "
        at = f"{path}: " if path else ""
        self.problems: list[ConfigError] = [self]
        """Every problem found in one pass (this one alone, unless made by ``combine``)."""
        super().__init__(f"{where}{at}{message}")

    @staticmethod
    def combine(problems: list[ConfigError]) -> ConfigError:
        """One error listing several problems, each on its own line with its place."""
        unique: list[ConfigError] = []
        for problem in problems:
            for single in problem.problems:
                if str(single) not in {str(u) for u in unique}:
                    unique.append(single)
        if len(unique) == 1:
            return unique[0]
        first = unique[0]
        combined = ConfigError(
            f"{len(unique)} problems:\n" + "\n".join(f"  {p}" for p in unique),
        )
        combined.file, combined.line, combined.path = first.file, first.line, first.path
        combined.problems = unique
        return combined


class ConnectorError(ReflowError):
    """A connector could not do its work (server unreachable, I/O failure, ...)."""


class ConnectorNotFoundError(ConnectorError):
    """No connector is registered under the requested name."""


class ConnectorConfigError(ConnectorError, ConfigError):
    """A connector option is missing or has a wrong value."""

    def __init__(self, connector: str, message: str, *, option: str | None = None) -> None:
        self.connector = connector
        self.option = option
        """The option (as the user spelled it) the problem is about, when one is."""
        ConfigError.__init__(self, f"connector {connector!r}: {message}")


class ExecutionError(ReflowError):
    """A running job failed; ``step_id`` names the step where it happened."""

    def __init__(self, message: str, *, step_id: str | None = None) -> None:
        super().__init__(message)
        self.step_id = step_id


class RecordRejectedError(ExecutionError):
    """A user function or parser rejected a record and the error policy is ``fail``."""

    def __init__(self, step_id: str, record: object, cause: BaseException) -> None:
        shown = repr(record)
        if len(shown) > 200:
            shown = shown[:200] + "..."
        super().__init__(
            f"step {step_id!r} failed on record {shown}: {type(cause).__name__}: {cause}. "
            "Fix the function or the input, or set the step's error policy to "
            "'skip' or 'dead-letter' to route bad records aside.",
            step_id=step_id,
        )
        self.record = record


class BackpressureOverflowError(ExecutionError):
    """A channel with overflow strategy ERROR was full."""


class JobFailedError(ExecutionError):
    """A job run by ``reflow.run`` ended FAILED; ``result`` is its JobResult
    (per-step counters, the error and the step that failed)."""

    def __init__(self, message: str, *, result: object, step_id: str | None = None) -> None:
        super().__init__(message, step_id=step_id)
        self.result = result
