"""Event loops of their own for jobs, and a watchdog that reports a blocked loop.

A user function that blocks (``time.sleep``, a CPU loop, a synchronous client)
stops every coroutine of the loop it runs on. ``reflow serve`` therefore runs each
job on an event loop in a thread of its own (:func:`run_in_own_loop`), so that
the API, the health checks and the other jobs keep answering. Calls into a job
from elsewhere go through :func:`call_in_loop` and :func:`await_in_loop`.

Every job's loop also carries a heartbeat (:class:`LoopWatch`). One watchdog
thread looks at the heartbeats; when a loop has not turned for more than
``BLOCKED_AFTER_S`` it logs ``LOOP_BLOCKED`` once, naming the job, the step that
holds the loop and the line it is on, and ``LOOP_UNBLOCKED`` with the duration
when the loop turns again. The health check reports a blocked loop as DEGRADED.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from types import FrameType
from typing import Any, TypeVar

__all__ = [
    "BLOCKED_AFTER_S",
    "Blocked",
    "LoopWatch",
    "await_in_loop",
    "call_in_loop",
    "run_in_own_loop",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

BLOCKED_AFTER_S = 1.0
"""A loop that has not turned for this long is reported as blocked."""

BEAT_S = 0.1
"""How often a watched loop's heartbeat runs, and the watchdog looks."""


def _current_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def call_in_loop(
    loop: asyncio.AbstractEventLoop | None, fn: Callable[..., Any], *args: Any
) -> None:
    """Call ``fn(*args)`` on ``loop``: now when it is the running loop (or None),
    else thread-safely on the loop's next turn. A closed loop is a finished job:
    the call is dropped."""
    if loop is None or loop is _current_loop():
        fn(*args)
        return
    with contextlib.suppress(RuntimeError):  # the loop closed: its job has ended
        loop.call_soon_threadsafe(fn, *args)


async def await_in_loop(loop: asyncio.AbstractEventLoop | None, coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on ``loop`` and await its result from the running loop."""
    if loop is None or loop is _current_loop():
        return await coro
    try:
        future = asyncio.run_coroutine_threadsafe(coro, loop)
    except RuntimeError:
        coro.close()
        raise
    try:
        return await asyncio.wrap_future(future)
    except asyncio.CancelledError:
        future.cancel()
        raise


async def run_in_own_loop(factory: Callable[[], Coroutine[Any, Any, T]], *, name: str) -> T:
    """Run ``factory()`` on a new event loop in a thread of its own and await its
    result. Cancelling the awaiting task cancels the coroutine on its loop (as if it
    ran here), waits for the thread to end, and raises CancelledError."""
    caller = asyncio.get_running_loop()
    done: asyncio.Future[T] = caller.create_future()
    root: list[asyncio.Task[T]] = []
    started = threading.Event()

    def deliver(outcome: T | None, error: BaseException | None) -> None:
        if done.cancelled():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(outcome)  # type: ignore[arg-type]

    async def main() -> T:
        task = asyncio.current_task()
        assert task is not None
        root.append(task)
        started.set()
        return await factory()

    def work() -> None:
        outcome: T | None = None
        error: BaseException | None = None
        try:
            outcome = asyncio.run(main())
        except BaseException as exc:  # handed to the awaiting loop
            error = exc
        finally:
            started.set()
        with contextlib.suppress(RuntimeError):  # the caller's loop is gone
            caller.call_soon_threadsafe(deliver, outcome, error)

    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    try:
        return await asyncio.shield(done)
    except asyncio.CancelledError:
        await asyncio.to_thread(started.wait)
        if root:
            with contextlib.suppress(RuntimeError):  # its loop has closed: it ended
                root[0].get_loop().call_soon_threadsafe(root[0].cancel)
        await asyncio.to_thread(thread.join)
        done.cancel()  # its outcome is not wanted
        raise


@dataclass(frozen=True, slots=True)
class Blocked:
    """A loop that has not turned since ``since`` (time.monotonic)."""

    since: float
    step: str | None
    where: str

    def describe(self, now: float | None = None) -> str:
        seconds = (time.monotonic() if now is None else now) - self.since
        step = f"step {self.step!r}" if self.step else "a step"
        return f"{step} has blocked its event loop for {seconds:.1f} s (at {self.where})"


class LoopWatch:
    """The heartbeat of one job's event loop, looked at by the watchdog thread.

    ``async with LoopWatch(job_id, step_of):`` around a job's run; ``step_of(task)``
    names the step a task of the job is in. ``blocked`` tells whether (and where)
    the loop is held now."""

    def __init__(
        self, job_id: str, step_of: Callable[[asyncio.Task[Any]], str | None] | None = None
    ) -> None:
        self.job_id = job_id
        self.step_of = step_of
        self.beat = time.monotonic()
        self.thread_id = threading.get_ident()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.blocked: Blocked | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = threading.Lock()

    async def __aenter__(self) -> LoopWatch:
        self.thread_id = threading.get_ident()
        self.loop = asyncio.get_running_loop()
        self.beat = time.monotonic()
        self._task = asyncio.create_task(self._heartbeat(), name=f"reflow:heartbeat:{self.job_id}")
        _WATCHDOG.add(self)
        return self

    async def __aexit__(self, *exc: object) -> None:
        _WATCHDOG.discard(self)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._turned()

    async def _heartbeat(self) -> None:
        while True:
            self._turned()
            await asyncio.sleep(BEAT_S)

    def _turned(self) -> None:
        """On the watched loop: it turns; a block it was in is over."""
        with self._lock:
            now = self.beat = time.monotonic()
            blocked, self.blocked = self.blocked, None
        if blocked is not None:
            logger.info(
                "job %s: the event loop turns again after %.1f s",
                self.job_id,
                now - blocked.since,
                extra={"job_id": self.job_id, "event": "LOOP_UNBLOCKED", "step_id": blocked.step},
            )

    def _holder(self, frame: FrameType | None) -> tuple[str | None, str]:
        """The step whose task holds the loop, and the line the loop's thread is on."""
        where = "unknown"
        if frame is not None:
            code = frame.f_code
            where = f"{code.co_filename}:{frame.f_lineno} in {code.co_name}"
        step = None
        task = None if self.loop is None else asyncio.current_task(self.loop)
        if task is not None and self.step_of is not None:
            step = self.step_of(task)
        return step, where

    def look(self, now: float, frames: dict[int, FrameType]) -> None:
        """Called by the watchdog thread: report the loop blocked (once per block;
        the loop itself reports the end, when it turns again)."""
        with self._lock:
            if self.blocked is not None or now - self.beat - BEAT_S <= BLOCKED_AFTER_S:
                return
            step, where = self._holder(frames.get(self.thread_id))
            blocked = self.blocked = Blocked(self.beat + BEAT_S, step, where)
        logger.warning(
            "job %s: %s; run blocking code off the loop (blocking: true on the step, "
            "or an async function)",
            self.job_id,
            blocked.describe(now),
            extra={"job_id": self.job_id, "event": "LOOP_BLOCKED", "step_id": step},
        )


class _Watchdog:
    """One daemon thread that looks at every watched loop's heartbeat."""

    def __init__(self) -> None:
        self._watches: set[LoopWatch] = set()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None

    def add(self, watch: LoopWatch) -> None:
        with self._lock:
            self._watches.add(watch)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="reflow-loop-watchdog", daemon=True
                )
                self._thread.start()
            self._wake.notify()

    def discard(self, watch: LoopWatch) -> None:
        with self._lock:
            self._watches.discard(watch)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._watches:
                    self._wake.wait()
                watches = list(self._watches)
            now = time.monotonic()
            if any(now - w.beat - BEAT_S > BLOCKED_AFTER_S and not w.blocked for w in watches):
                frames = sys._current_frames()
                for watch in watches:
                    try:
                        watch.look(now, frames)
                    except Exception:  # the watchdog must outlive any report
                        logger.exception("the loop watchdog failed to look at %s", watch.job_id)
                del frames
            time.sleep(BEAT_S)


_WATCHDOG = _Watchdog()
