"""What the graph and the runtime need to know of a node, read once from its payload.

A node's payload is whatever the user gave: an operator spec, a Source or
Sink, a connector spec. Rather than probing it by attribute name wherever a
question comes up (is it stateful? which records does it key by? where are
its timestamps?), the graph builder reads every answer once into a frozen
``NodeTraits`` stored on the node; graph/ and runtime/ read the traits.

Payloads declare a trait by having the attribute of that name (operator specs
in ``reflow.operators`` do; so can user classes), and a missing one takes the
default below.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["NodeTraits"]

_NO_CONFIG: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class NodeTraits:
    """A node's traits, as its payload declares them."""

    operator_type: str
    """The kind of step (``map``, ``tumbling-window``, ``kafka``, ...)."""
    parallelism: int | None = None
    """The parallelism the payload asks for, if any."""
    config: Mapping[str, Any] = field(default_factory=lambda: _NO_CONFIG)
    """The payload's settings as shown by ``explain`` and the UI."""
    stateful: bool = False
    """Keeps keyed state (the job then gets a state backend)."""
    chainable: bool = True
    """May be fused with its neighbours into one subtask."""
    bounded: bool | None = None
    """(Sources) whether the input ends; None when the payload cannot tell."""
    key_selector: Callable[[Any], Any] | None = None
    """The key its output is partitioned by (``key_by``)."""
    exchange_only: bool = False
    """Declares an exchange, not work (``key_by``): the graph builder turns the node
    into the keyed edges between its inputs and outputs; it never runs."""
    input_key_selector: Callable[[Any], Any] | None = None
    """The key its input must be partitioned by (keyed operators)."""
    output_partitioning: str | None = None
    """A partitioning its output asks for (``rebalance``, ``broadcast``, ...)."""
    timestamp_extractor: Callable[[Any], int] | None = None
    """How event time is read from the records it emits (timestamp assigners; a
    window on event time, from its results)."""
    input_timestamps: Callable[[Any], int] | None = None
    """How event time is read from its input records, when it says so itself (a
    window's ``timestamp``); its side outputs carry such records."""
    result_timestamps: Callable[[Any], int] | None = None
    """(Windows on event time only when the stream has timestamps) how event time
    is read from its results then."""
    uses_event_time: bool = False
    """Acts on watermarks: upstream routers forward them."""
    needs_timestamps: str | None = None
    """Set: the step can only work after a timestamp assigner; the message says why."""
    side_outputs: tuple[str, ...] = ()
    """Names of the side outputs it emits (e.g. ``late``)."""

    @staticmethod
    def of(payload: Any, default_type: str, *, source: bool = False) -> NodeTraits:
        """Read the traits ``payload`` declares (each attribute once); ``bounded``
        only of a ``source``."""

        def read(name: str, default: Any = None) -> Any:
            return getattr(payload, name, default)

        needs = read("needs_timestamps")
        uses_event_time = read("uses_event_time", False)
        bounded = read("bounded") if source else None
        return NodeTraits(
            operator_type=str(read("operator_type", default_type)),
            parallelism=read("parallelism"),
            config=MappingProxyType(dict(read("config") or {})),
            stateful=read("stateful", False) is True,
            chainable=read("chainable", True) is not False,
            bounded=bounded if isinstance(bounded, bool) else None,
            key_selector=read("key_selector"),
            exchange_only=read("exchange_only", False) is True,
            input_key_selector=read("input_key_selector"),
            output_partitioning=read("output_partitioning"),
            timestamp_extractor=read("timestamp_extractor"),
            result_timestamps=read("result_timestamps"),
            input_timestamps=read("input_timestamps"),
            uses_event_time=uses_event_time is True,
            needs_timestamps=needs if isinstance(needs, str) and needs else None,
            side_outputs=tuple(read("side_outputs", ()) or ()),
        )
