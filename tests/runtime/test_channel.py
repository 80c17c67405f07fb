"""Bounded channels: backpressure, end of stream, broken, and the overflow strategies of §10.3."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from reflow import Overflow
from reflow.errors import BackpressureOverflowError
from reflow.runtime import END_OF_STREAM, Channel, ChannelBrokenError

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def test_full_channel_makes_the_sender_wait_until_the_receiver_takes() -> None:
    async def scenario() -> list[str]:
        channel = Channel("c", capacity=2, senders=1)
        events: list[str] = []

        async def producer() -> None:
            for i in range(4):
                await channel.send([i])
                events.append(f"sent {i}")
            channel.close_sender()

        task = asyncio.create_task(producer())
        for _ in range(10):  # the producer runs until the channel is full
            await asyncio.sleep(0)
        events.append("receiver starts")
        while (item := await channel.receive()) is not END_OF_STREAM:
            events.append(f"got {item[1][0]}")
        await task
        assert channel.statistics().blocked_seconds > 0
        return events

    events = run(scenario())
    assert events[:3] == ["sent 0", "sent 1", "receiver starts"]
    assert [e for e in events if e.startswith("got")] == ["got 0", "got 1", "got 2", "got 3"]


def test_end_of_stream_waits_for_every_sender() -> None:
    async def scenario() -> list[object]:
        channel = Channel("c", capacity=4, senders=2)
        await channel.send([1])
        channel.close_sender()
        await channel.send([2])
        channel.close_sender()
        return [await channel.receive() for _ in range(3)]

    assert run(scenario()) == [(None, [1]), (None, [2]), END_OF_STREAM]


def test_drop_counts_every_dropped_record() -> None:
    async def scenario() -> Channel:
        channel = Channel("c", capacity=1, senders=1)
        await channel.send([1, 2], Overflow.DROP)
        await channel.send([3, 4, 5], Overflow.DROP)
        await channel.send([6], Overflow.DROP)
        return channel

    channel = run(scenario())
    stats = channel.statistics()
    assert stats.dropped_records == 4
    assert stats.size == 1


def test_latest_keeps_the_newest_and_counts_the_oldest() -> None:
    async def scenario() -> tuple[Channel, list[object]]:
        channel = Channel("c", capacity=2, senders=1)
        for batch in ([1], [2, 3], [4], [5]):
            await channel.send(batch, Overflow.LATEST)
        channel.close_sender()
        got = []
        while (item := await channel.receive()) is not END_OF_STREAM:
            got.append(item[1])
        return channel, got

    channel, got = run(scenario())
    assert got == [[4], [5]]
    assert channel.statistics().dropped_records == 3


def test_error_strategy_fails_with_a_clear_message() -> None:
    async def scenario() -> None:
        channel = Channel("map#0", capacity=1, senders=1)
        await channel.send([1], Overflow.ERROR)
        await channel.send([2], Overflow.ERROR)

    with pytest.raises(
        BackpressureOverflowError, match=r"channel map#0 is full.*strategy is ERROR"
    ):
        run(scenario())


def test_buffer_strategy_loses_nothing() -> None:
    async def scenario() -> list[int]:
        channel = Channel("c", capacity=1, senders=1)

        async def producer() -> None:
            for i in range(100):
                await channel.send([i], Overflow.BUFFER)
            channel.close_sender()

        task = asyncio.create_task(producer())
        got: list[int] = []
        while (item := await channel.receive()) is not END_OF_STREAM:
            got.extend(item[1])
            await asyncio.sleep(0)
        await task
        return got

    assert run(scenario()) == list(range(100))


def test_broken_channel_wakes_a_blocked_sender() -> None:
    async def scenario() -> None:
        channel = Channel("c", capacity=1, senders=1)
        await channel.send([1])
        waiter = asyncio.create_task(channel.send([2]))
        await asyncio.sleep(0)
        channel.break_channel(RuntimeError("downstream failed"))
        await waiter

    with pytest.raises(ChannelBrokenError):
        run(scenario())
