"""The Ray driver's pool of idle subtask actors (reflow/runtime/ray/pool.py), on
stand-in actors: which actors may be kept, which one a job takes, and when kept
ones are killed."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from reflow.runtime.ray.pool import ActorPool, placement_key


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _pool(max_idle: int = 4, idle_seconds: float = 60.0) -> tuple[ActorPool, list[Any], _Clock]:
    killed: list[Any] = []
    clock = _Clock()
    pool = ActorPool(killed.append, max_idle=max_idle, idle_seconds=idle_seconds, clock=clock)
    return pool, killed, clock


def test_only_actors_that_reserve_nothing_are_kept_by_their_node() -> None:
    on_a = SimpleNamespace(node_id="a", soft=False)
    assert placement_key({"num_cpus": 0.0, "scheduling_strategy": on_a}) == ("node", "a", False)
    assert placement_key({"num_cpus": 0.0, "scheduling_strategy": "SPREAD"}) == (
        "strategy",
        "SPREAD",
    )
    assert placement_key({"num_cpus": 0.5, "scheduling_strategy": on_a}) is None
    assert placement_key({"num_cpus": 0.0, "memory": 2**20}) is None
    assert placement_key({"resources": {"gpu_slot": 1}}) is None


def test_a_job_takes_the_warmest_actor_of_its_placement() -> None:
    pool, killed, clock = _pool()
    pool.give("a", "actor-1")
    clock.now = 1
    pool.give("a", "actor-2")
    pool.give("b", "actor-3")
    assert pool.take("a") == "actor-2"
    assert pool.take("a") == "actor-1"
    assert pool.take("a") is None
    assert pool.take("c") is None
    assert len(pool) == 1 and killed == []


def test_the_longest_idle_are_killed_past_the_cap_and_the_idle_time() -> None:
    pool, killed, clock = _pool(max_idle=2, idle_seconds=60)
    for n in range(3):
        clock.now = n
        pool.give("a", f"actor-{n}")
    assert killed == ["actor-0"] and len(pool) == 2
    clock.now = 61.5  # actor-1 idle 60.5 s, actor-2 59.5 s
    assert pool.take("b") is None
    assert killed == ["actor-0", "actor-1"]
    assert pool.take("a") == "actor-2"


def test_keeping_none_kills_each_actor_given_back_and_clear_kills_the_rest() -> None:
    pool, killed, _ = _pool(max_idle=0)
    pool.give("a", "actor-1")
    assert killed == ["actor-1"] and len(pool) == 0
    pool.max_idle = 3
    pool.give("a", "actor-2")
    pool.give("b", "actor-3")
    pool.clear()
    assert killed == ["actor-1", "actor-2", "actor-3"] and len(pool) == 0
