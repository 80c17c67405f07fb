"""The key hash is stable across processes; key groups map onto subtasks in ranges."""

from __future__ import annotations

import os
import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st

from reflow.graph.partitioning import (
    MAX_KEY_GROUPS,
    key_group_of,
    key_group_table,
    stable_hash,
    subtask_for_key_group,
)

KEYS = ["user-1", "", "ünïcode", 0, 1, -7, 2**70, 3.5, None, (1, "a"), b"raw", True]


def test_hash_is_the_same_in_another_process_with_another_hash_seed() -> None:
    here = [stable_hash(k) for k in KEYS]
    code = (
        "from reflow.graph.partitioning import stable_hash;"
        f"print([stable_hash(k) for k in {KEYS!r}])"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout.strip()
    assert other == repr(here)


@given(st.one_of(st.text(), st.integers(), st.tuples(st.text(), st.integers())))
def test_key_group_in_range(key: object) -> None:
    assert 0 <= key_group_of(key) < MAX_KEY_GROUPS


def test_consecutive_integers_spread_over_every_subtask() -> None:
    table = key_group_table(4)
    counts = [0] * 4
    for key in range(10_000):
        counts[table[key_group_of(key)]] += 1
    assert min(counts) > 1_500


def test_key_groups_are_contiguous_ranges() -> None:
    owners = [subtask_for_key_group(g, 3) for g in range(MAX_KEY_GROUPS)]
    assert owners == sorted(owners)
    assert set(owners) == {0, 1, 2}
