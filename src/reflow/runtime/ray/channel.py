"""The Ray executor's data path between actors: ``RemoteChannel``, the sending end
of an inbox that lives in another actor.

Only the non-chained edges cross processes: a router's target in another actor
is a ``RemoteChannel``, which gathers batches, pickles them once and sends them
with an actor call; watermarks, barriers and end of input travel in the same
ordered stream of calls. At most ``max_in_flight`` calls per channel are
unacknowledged -- a call is acknowledged once its batch is in the target's
inbox, which waits when the inbox is full -- so a slow consumer slows its
producers down across processes as it does in one.
"""

from __future__ import annotations

import asyncio
import functools
import pickle
from collections import deque
from collections.abc import Hashable
from typing import Any

from reflow.checkpoint.barrier import Barrier, SenderFinished
from reflow.connectors.base import DEFAULT_BATCH_SIZE
from reflow.graph.stream_graph import Overflow
from reflow.runtime.channel import Watermark

__all__ = ["DEFAULT_MAX_IN_FLIGHT", "RemoteChannel", "SubtaskKey", "decompress"]

# Actor calls per remote channel not yet acknowledged before the sender waits.
DEFAULT_MAX_IN_FLIGHT = 2
# Records gathered into one actor call. A Ray actor call costs ~0.45 ms of CPU on
# each end whatever its size (measured here, Ray 2.60): on the CPU-heavy bench,
# 100-record calls tripled the job's CPU.
COALESCE_RECORDS = 2_000
# ... but a call's payload stays under this many bytes: Ray passes larger
# arguments through its object store (the raylet and shared memory), which costs
# more than the calls it saves. Ray inlines arguments up to 100 KiB.
COALESCE_BYTES = 90_000
# Payloads from this size on are LZ4-compressed (~0.17 µs per record for both
# ends, ~3.7x smaller for JSON-like records), so a call carries more records.
COMPRESS_BYTES = 16_384
# Longest time records wait to fill a call when the stream is slow; Flink's
# buffer timeout default is the same 100 ms.
COALESCE_SECONDS = 0.1
# How often each actor reports its live counters to the driver (for /metrics).
REPORT_SECONDS = 1.0

SubtaskKey = tuple[int, int]
"""(vertex id, subtask index)."""


class RemoteChannel:
    """The sending end of an inbox that lives in another actor.

    Calls carry a sequence number per (sender, inbox), and the receiving actor
    applies them in that order, so batches, watermarks and end-of-input arrive
    as they were sent.
    """

    def __init__(
        self,
        name: str,
        actor: Any,
        origin: SubtaskKey,
        max_in_flight: int,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        self.name = name
        self.actor = actor
        self.origin = origin
        self.max_in_flight = max_in_flight
        self.batch_size = batch_size
        """Small batches (a router's share of a batch) are joined up to this size."""
        self.inflight: deque[Any] = deque()
        self.seq = 0
        self.bytes_sent = 0
        self.pending: list[tuple[Any, ...]] = []
        self.pending_records = 0
        self.limit = COALESCE_RECORDS
        """Records per call: COALESCE_RECORDS, fewer if records are large."""
        self.timer: asyncio.TimerHandle | None = None

    def _submit(self, kind: str, payload: bytes | None, raw_size: int = 0) -> None:
        # One argument: Ray serialises each argument of a call separately.
        ref = self.actor.deliver.remote((self.origin, self.seq, kind, raw_size, payload))
        self.seq += 1
        if payload is not None:
            self.bytes_sent += len(payload)
        self.inflight.append(ref)

    def _submit_pending(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.pending:
            raw = pickle.dumps(self.pending, protocol=pickle.HIGHEST_PROTOCOL)
            payload, raw_size = raw, 0
            if len(raw) >= COMPRESS_BYTES:
                payload, raw_size = _codec().compress(raw, asbytes=True), len(raw)
            if self.pending_records >= self.limit:  # a full call: fit the next to the bytes
                per_record = len(payload) / self.pending_records
                self.limit = max(50, min(COALESCE_RECORDS, int(COALESCE_BYTES / per_record)))
            self.pending, self.pending_records = [], 0
            self._submit("data", payload, raw_size)

    async def send(
        self, batch: list[Any], overflow: Overflow = Overflow.BUFFER, sender: Hashable = None
    ) -> None:
        """Gather batches into calls of up to ``COALESCE_RECORDS`` (and about
        ``COALESCE_BYTES``); a partial call leaves after ``COALESCE_SECONDS``, or
        before the next watermark, barrier or end of input."""
        pending = self.pending
        last = pending[-1] if pending else None
        if (
            last is not None
            and len(last) == 3
            and last[0] is overflow
            and last[1] == sender
            and len(last[2]) + len(batch) <= self.batch_size
        ):
            # A router's shares of consecutive batches, joined back to the job's batch
            # size: fewer, cheaper steps for the receiver; the inbox (capacity counted
            # in batches) holds no more records than on one machine.
            last[2].extend(batch)
        else:
            pending.append((overflow, sender, list(batch)))
        self.pending_records += len(batch)
        if self.pending_records < self.limit:
            if self.timer is None:
                loop = asyncio.get_running_loop()
                self.timer = loop.call_later(COALESCE_SECONDS, self._submit_pending)
            return
        self._submit_pending()
        inflight = self.inflight
        while len(inflight) > self.max_in_flight:
            await inflight.popleft()

    def send_control(self, message: Watermark | Barrier | SenderFinished) -> None:
        """Watermarks and barriers ride in the same calls as the batches around them."""
        self.pending.append((message,))
        if self.timer is None:
            loop = asyncio.get_running_loop()
            self.timer = loop.call_later(COALESCE_SECONDS, self._submit_pending)

    def close_sender(self) -> None:
        self._submit_pending()
        self._submit("close", None)

    def break_channel(self, cause: BaseException) -> None:
        """The receiving actor fails on its own; the job is then stopped by the driver."""

    async def drain(self) -> None:
        """Wait until every call sent so far was applied (raises the receiver's error)."""
        self._submit_pending()
        while self.inflight:
            await self.inflight.popleft()


@functools.cache
def _codec() -> Any:
    import pyarrow

    return pyarrow.Codec("lz4")


def decompress(payload: bytes, raw_size: int) -> bytes:
    """A call's payload as sent (``raw_size`` > 0: it was LZ4-compressed)."""
    return payload if not raw_size else _codec().decompress(payload, raw_size, asbytes=True)
