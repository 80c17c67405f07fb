"""Logging: structured JSON lines with the fields of seed §7.4, or a console format.

JSON lines carry ``timestamp``, ``level``, ``logger``, ``jobId``, ``jobName``,
``event``, ``message`` and ``metadata`` (every other ``extra=`` field of the
record). reflow's job-related records pass ``job_id``, ``step_id`` and ``event``
(JOB_STARTED, JOB_COMPLETED, JOB_FAILED, CHECKPOINT_COMPLETED, ...).
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

from reflow.masking import mask_credentials

__all__ = ["ConsoleFormatter", "JsonFormatter", "escape_controls", "setup_logging"]

# LogRecord attributes that are not "extra" metadata.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
_NAMED = {"job_id", "job_name", "event"}


# Control characters (and Unicode line breaks) in logged values are shown escaped:
# a job or event name with a newline must not be able to forge a log line.
_CONTROLS = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F, 0x85)} | {
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def escape_controls(text: str) -> str:
    """``text`` with newlines and other control characters written as escapes."""
    return text.translate(_CONTROLS)


class _Masking(logging.Filter):
    """Hides URL passwords in every record's message (the log boundary)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_credentials(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


class ConsoleFormatter(logging.Formatter):
    """The human-readable format, one line per record: control characters in the
    message are escaped (a traceback, added after it, keeps its lines)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, shaped like the seed's example (§7.4)."""

    def format(self, record: logging.LogRecord) -> str:
        extra = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "jobId": extra.get("job_id"),
            "jobName": extra.get("job_name"),
            "event": extra.get("event"),
            "message": record.getMessage(),
            "metadata": {k: v for k, v in extra.items() if k not in _NAMED},
        }
        if record.exc_info:
            entry["metadata"]["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def setup_logging(
    level: int = logging.WARNING, *, json: bool = False, stream: TextIO | None = None
) -> None:
    """Configure the root logger: JSON lines, or a human-readable console format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(ConsoleFormatter())
    handler.addFilter(_Masking())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
