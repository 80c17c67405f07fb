"""Bounded channels between subtasks: the backpressure of reflow.

A channel carries micro-batches (lists of records) from one or more senders to
one receiver. ``send`` waits while the channel is full, so a slow consumer
slows its producers, all the way back to the source; the edge's overflow
strategy (seed §10.3) may instead drop, keep the latest, or fail, and every
record it drops is counted. End of stream arrives once every sender has
closed; a channel closed by a failure is ``broken``, distinct from ended.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Final

from reflow.checkpoint.barrier import Barrier, SenderFinished
from reflow.errors import BackpressureOverflowError
from reflow.graph.stream_graph import Overflow

__all__ = [
    "END_OF_STREAM",
    "Barrier",
    "Channel",
    "ChannelBrokenError",
    "ChannelStatistics",
    "SenderFinished",
    "Watermark",
]


class _EndOfStream:
    def __repr__(self) -> str:
        return "END_OF_STREAM"


END_OF_STREAM: Final = _EndOfStream()


@dataclass(frozen=True, slots=True)
class Watermark:
    """Event time of one sender reached ``value``; None marks the sender idle."""

    sender: Hashable
    value: int | None


class ChannelBrokenError(Exception):
    """The channel was broken by a failure elsewhere in the job."""


@dataclass(frozen=True, slots=True)
class ChannelStatistics:
    """A snapshot of a channel, for the backpressure metric."""

    name: str
    size: int
    capacity: int
    senders_open: int
    blocked_seconds: float
    """Total time senders spent waiting for space (Flink's backpressured time)."""
    dropped_records: int
    sent_batches: int


class Channel:
    """A bounded multi-producer, single-consumer channel of batches."""

    def __init__(self, name: str, capacity: int, senders: int) -> None:
        if capacity < 1:
            raise ValueError(f"channel {name}: capacity must be >= 1, got {capacity}")
        self.name = name
        self.capacity = capacity
        self._queue: deque[Any] = deque()
        self._senders_open = senders
        self._receiver: asyncio.Future[None] | None = None
        self._space_waiters: deque[asyncio.Future[None]] = deque()
        self._broken: BaseException | None = None
        self._blocked_ns = 0
        self._dropped = 0
        self._sent = 0

    def _wake_receiver(self) -> None:
        waiter = self._receiver
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._receiver = None

    def _wake_sender(self) -> None:
        while self._space_waiters:
            waiter = self._space_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def send(
        self, batch: list[Any], overflow: Overflow = Overflow.BUFFER, sender: Hashable = None
    ) -> None:
        """Put ``batch`` into the channel, applying ``overflow`` when it is full.

        The receiver gets ``(sender, batch)``: barrier alignment needs to know
        which input a batch came from.
        """
        if self._broken is not None:
            raise ChannelBrokenError(f"channel {self.name} is broken") from self._broken
        queue = self._queue
        if len(queue) >= self.capacity:
            if overflow is Overflow.BUFFER:
                started = time.perf_counter_ns()
                loop = asyncio.get_running_loop()
                while len(queue) >= self.capacity:
                    waiter = loop.create_future()
                    self._space_waiters.append(waiter)
                    try:
                        await waiter
                    except asyncio.CancelledError:
                        if waiter in self._space_waiters:
                            self._space_waiters.remove(waiter)
                        raise
                    if self._broken is not None:
                        raise ChannelBrokenError(f"channel {self.name} is broken") from self._broken
                self._blocked_ns += time.perf_counter_ns() - started
            elif overflow is Overflow.DROP:
                self._dropped += len(batch)
                return
            elif overflow is Overflow.LATEST:
                oldest = next((item for item in queue if type(item) is tuple), None)
                if oldest is None:
                    self._dropped += len(batch)
                    return
                queue.remove(oldest)
                self._dropped += len(oldest[1])
            else:
                raise BackpressureOverflowError(
                    f"channel {self.name} is full ({self.capacity} batches) and its overflow "
                    "strategy is ERROR; the consumer is slower than the producer. Raise the "
                    "capacity, speed up or parallelise the consumer, or choose BUFFER "
                    "(backpressure), DROP or LATEST for this edge"
                )
        queue.append((sender, batch))
        self._sent += 1
        self._wake_receiver()

    def send_control(self, message: Watermark | Barrier | SenderFinished) -> None:
        """Enqueue a control message behind the data sent before it.

        Control messages are never dropped and never wait: there is at most
        one per sender per step of event time, so they cannot swamp memory.
        """
        if self._broken is not None:
            raise ChannelBrokenError(f"channel {self.name} is broken") from self._broken
        self._queue.append(message)
        self._wake_receiver()

    def close_sender(self) -> None:
        """One sender is done; after the last one the receiver sees END_OF_STREAM."""
        self._senders_open -= 1
        if self._senders_open <= 0:
            self._wake_receiver()

    def break_channel(self, cause: BaseException) -> None:
        """Fail the channel: waiting senders and the receiver raise ChannelBrokenError."""
        self._broken = cause
        self._wake_receiver()
        while self._space_waiters:
            waiter = self._space_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    async def receive(self) -> Any:
        """The next ``(sender, batch)`` or control message, or END_OF_STREAM once every
        sender closed and the queue is empty."""
        while True:
            if self._queue:
                item = self._queue.popleft()
                if self._space_waiters:
                    self._wake_sender()
                return item
            if self._broken is not None:
                raise ChannelBrokenError(f"channel {self.name} is broken") from self._broken
            if self._senders_open <= 0:
                return END_OF_STREAM
            waiter = asyncio.get_running_loop().create_future()
            self._receiver = waiter
            await waiter

    def statistics(self) -> ChannelStatistics:
        return ChannelStatistics(
            name=self.name,
            size=sum(1 for item in self._queue if type(item) is tuple),
            capacity=self.capacity,
            senders_open=max(self._senders_open, 0),
            blocked_seconds=self._blocked_ns / 1e9,
            dropped_records=self._dropped,
            sent_batches=self._sent,
        )
