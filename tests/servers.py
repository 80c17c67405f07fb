"""Servers a test run starts itself, on loopback, and can stop and start again."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO


class ServerDidNotStart(RuntimeError):
    """The server process exited or did not answer in time (the message has its log)."""


class OwnedServer:
    """A server process on ``127.0.0.1:port`` whose data lives in ``folder``; ``stop`` and
    ``start`` again keep the data (an outage, as a user's server restarting)."""

    def __init__(
        self,
        name: str,
        command: list[str],
        port: int,
        folder: Path,
        ready: Callable[[], bool],
        env: dict[str, str] | None = None,
        url: str = "",
        stop_timeout: float = 10.0,
    ) -> None:
        self.name = name
        self.url = url
        self.stop_timeout = stop_timeout
        self.command = command
        self.port = port
        self.folder = folder
        self.ready = ready
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: IO[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        log_path = self.folder / "server.log"
        self.log = open(log_path, "ab")  # noqa: SIM115 -- closed in stop()
        self.proc = subprocess.Popen(
            self.command, stdout=self.log, stderr=subprocess.STDOUT, env=self.env
        )
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = log_path.read_text(errors="replace")[-2000:]
                raise ServerDidNotStart(f"{self.name} did not start on port {self.port}: {tail}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``stop_timeout``) and wait for it."""
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        if self.log is not None:
            self.log.close()
            self.log = None
