"""How records cross an edge between JobVertices, and the stable key hash.

``HASH`` routes a record by its key to one of ``MAX_KEY_GROUPS`` key groups,
and a key group to a subtask by contiguous ranges (Flink's key groups), so a
later rescale moves whole key groups. The hash is stable across processes and
runs: never Python's salted ``hash()``.
"""

from __future__ import annotations

import enum
import operator
import struct
import zlib
from collections.abc import Callable, Hashable
from typing import Any

__all__ = [
    "MAX_KEY_GROUPS",
    "Partitioning",
    "int_hash",
    "key_group_of",
    "key_group_table",
    "same_key_selector",
    "stable_hash",
    "subtask_for_key_group",
]

# 128 key groups, as Flink's default maximum parallelism: enough for any
# parallelism this process runs, small enough for a lookup table.
MAX_KEY_GROUPS = 128

_MASK64 = (1 << 64) - 1
_pack_double = struct.Struct("<d").pack


class Partitioning(enum.Enum):
    """The data exchange strategy of an edge."""

    FORWARD = "forward"
    """Subtask i sends to subtask i; needs equal parallelism on both ends."""
    HASH = "hash"
    """By key: every record of one key goes to the same subtask."""
    REBALANCE = "rebalance"
    """Round robin over the downstream subtasks, batch by batch."""
    BROADCAST = "broadcast"
    """Every downstream subtask receives every record."""


# Knuth's multiplicative hash for integer keys: three integer operations, so the
# router can inline it; the high bits are well spread over key groups.
_KNUTH = 2654435761
_MASK32 = 0xFFFFFFFF


def int_hash(key: int) -> int:
    """The stable hash of an integer key (inlined by the router's hot loop)."""
    return ((key * _KNUTH) & _MASK32) >> 16


def _mix(value: int) -> int:
    # splitmix64 finaliser: spreads consecutive integers over all key groups.
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def stable_hash(key: Hashable) -> int:
    """Return a non-negative hash of ``key`` that is the same in every process.

    Supports ``str``, ``bytes``, ``int``, ``bool``, ``float``, ``None`` and
    tuples of them; other keys hash by their ``repr``, which must then be
    deterministic (dataclasses and enums are).
    """
    if type(key) is str:
        return zlib.crc32(key.encode())
    if type(key) is int or type(key) is bool:
        return ((key * _KNUTH) & _MASK32) >> 16
    if isinstance(key, bytes):
        return zlib.crc32(key)
    if isinstance(key, float):
        return zlib.crc32(_pack_double(key))
    if key is None:
        return 0
    if isinstance(key, tuple):
        acc = 0x345678
        for item in key:
            acc = _mix(acc ^ stable_hash(item))
        return acc
    return zlib.crc32(repr(key).encode())


def key_group_of(key: Hashable, max_key_groups: int = MAX_KEY_GROUPS) -> int:
    """The key group of ``key``: ``stable_hash(key) % max_key_groups``."""
    return stable_hash(key) % max_key_groups


def subtask_for_key_group(
    key_group: int, parallelism: int, max_key_groups: int = MAX_KEY_GROUPS
) -> int:
    """The subtask owning ``key_group`` (contiguous ranges, as Flink assigns them)."""
    return key_group * parallelism // max_key_groups


def key_group_table(parallelism: int, max_key_groups: int = MAX_KEY_GROUPS) -> tuple[int, ...]:
    """A lookup table from key group to subtask, for the hot path."""
    return tuple(
        subtask_for_key_group(group, parallelism, max_key_groups) for group in range(max_key_groups)
    )


def same_key_selector(a: Callable[[Any], Any] | None, b: Callable[[Any], Any] | None) -> bool:
    """Whether two key selectors surely compute the same key: the same object, or
    field getters of the same fields (``operator.itemgetter("k")`` made twice)."""
    if a is None or b is None:
        return False
    if a is b:
        return True
    getters = (operator.itemgetter, operator.attrgetter)
    return type(a) is type(b) and isinstance(a, getters) and repr(a) == repr(b)
