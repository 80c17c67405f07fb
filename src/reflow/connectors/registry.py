"""Find connectors by name through the entry-point group ``reflow.connectors``.

Built-in connectors are registered the same way as third-party ones (in
reflow's own ``pyproject.toml``), and loaded lazily: naming ``file`` never
imports the SQL driver.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from reflow.connectors.base import Connector, Sink, Source
from reflow.errors import ConnectorConfigError, ConnectorNotFoundError, ReflowError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

__all__ = [
    "ENTRY_POINT_GROUP",
    "ConnectorSpec",
    "available_connectors",
    "get_connector",
    "register_connector",
    "resolve_sink",
    "resolve_source",
]

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "reflow.connectors"

_loaded: dict[str, Connector] = {}
_registered: dict[str, type[Connector]] = {}


def _entry_points() -> dict[str, EntryPoint]:
    # Imported here: importlib.metadata costs ~20 ms, paid only when a
    # connector is looked up by name.
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_connectors() -> list[str]:
    """Names of every registered connector, sorted."""
    return sorted(set(_entry_points()) | set(_registered))


def register_connector(name: str, connector: type[Connector]) -> None:
    """Register a connector class in this process (tests, notebooks).

    Packages should declare an entry point in group ``reflow.connectors``
    instead, so that every process finds it.
    """
    _registered[name] = connector
    _loaded.pop(name, None)


def get_connector(name: str) -> Connector:
    """The connector registered as ``name``.

    Raises:
        ConnectorNotFoundError: nothing is registered under ``name``, or its
            package fails to import (with the install hint).
    """
    if name in _loaded:
        return _loaded[name]
    cls: type[Connector] | None = _registered.get(name)
    if cls is None:
        eps = _entry_points()
        ep = eps.get(name)
        if ep is None:
            close = difflib.get_close_matches(name, available_connectors(), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConnectorNotFoundError(
                f"no connector named {name!r}{hint} Registered: "
                f"{', '.join(available_connectors()) or 'none'}. A third-party connector "
                f"is found once its package is installed (pip install <package>) and declares "
                f"an entry point in group {ENTRY_POINT_GROUP!r}."
            )
        try:
            cls = ep.load()
        except ImportError as exc:
            dist = ep.dist.name if ep.dist is not None else ep.value.split(":")[0]
            raise ConnectorNotFoundError(
                f"connector {name!r} ({ep.value}) could not be imported: {exc}. "
                f"Install what it needs, e.g. pip install '{dist}' or the missing module "
                f"{getattr(exc, 'name', '') or ''}".rstrip()
            ) from exc
    connector = cls()
    _loaded[name] = connector
    return connector


# Names probed by Python, pickle, copy and tests; never fluent option setters.
_NOT_OPTIONS = frozenset({"is_async", "boundedness", "keys", "items", "read", "write"})


@dataclass(frozen=True, slots=True)
class ConnectorSpec:
    """A connector named by its registered name, with options; the role (source or
    sink) is decided by where it is used. Made by ``Connectors.<name>(...)``."""

    connector: str
    options: Mapping[str, Any] = field(default_factory=dict)
    name: str | None = None
    parallelism: int | None = None

    # Attributes the graph layer looks up on every node payload; defined here so
    # that the fluent __getattr__ below never answers for them.
    output_partitioning: ClassVar[None] = None
    key_selector: ClassVar[None] = None
    input_key_selector: ClassVar[None] = None
    timestamp_extractor: ClassVar[None] = None
    side_outputs: ClassVar[tuple[str, ...]] = ()
    stateful: ClassVar[bool] = False
    chainable: ClassVar[bool] = True

    @property
    def operator_type(self) -> str:
        return self.connector

    @property
    def config(self) -> Mapping[str, Any]:
        return self.options

    @property
    def bounded(self) -> bool | None:
        """Whether the source ends (read once by the graph builder, after ``validate``);
        None when that depends on what exists only once the job runs (a memory
        collection filled later, ...): the error, if any, then comes at the start."""
        try:
            return resolve_source(self).bounded
        except ConnectorConfigError:
            raise
        except ReflowError:
            return None

    def __getattr__(self, option: str) -> Any:
        """Fluent style of the seed (§9.1): ``Connectors.sql().table("t").batch_size(100)``.

        Any other attribute is an option setter returning a new spec.
        """
        if option.startswith("_") or option in _NOT_OPTIONS:
            raise AttributeError(option)

        def setter(*values: Any) -> ConnectorSpec:
            value = values[0] if len(values) == 1 else list(values)
            return ConnectorSpec(
                self.connector, {**self.options, option: value}, self.name, self.parallelism
            )

        return setter

    def build(self) -> ConnectorSpec:
        """The spec itself; ends a fluent chain as in the seed's examples."""
        return self

    def with_name(self, name: str) -> ConnectorSpec:
        return ConnectorSpec(self.connector, self.options, name, self.parallelism)

    def with_parallelism(self, parallelism: int) -> ConnectorSpec:
        return ConnectorSpec(self.connector, self.options, self.name, parallelism)

    def validate(self, role: str) -> None:
        """Raise ConnectorConfigError if the options do not fit ``role``."""
        get_connector(self.connector).validate_config(self.options, role)

    def written_target(self) -> str | None:
        """``Sink.written_target`` of the sink this spec makes."""
        return get_connector(self.connector).written_target(self.options)


def resolve_source(payload: Any) -> Source:
    """A Source from a Source or a ConnectorSpec; validates the options.

    (A spec's parallelism was already taken by the StreamGraph node.)
    """
    if isinstance(payload, ConnectorSpec):
        return get_connector(payload.connector).create_source(payload.options)
    if isinstance(payload, Source):
        return payload
    raise _not_a(payload, "source")


def resolve_sink(payload: Any) -> Sink:
    """A Sink from a Sink or a ConnectorSpec; validates the options."""
    if isinstance(payload, ConnectorSpec):
        return get_connector(payload.connector).create_sink(payload.options)
    if isinstance(payload, Sink):
        return payload
    raise _not_a(payload, "sink")


def _not_a(payload: Any, role: str) -> ConnectorConfigError:
    return ConnectorConfigError(
        type(payload).__name__,
        f"{payload!r} is not a {role}; use Connectors.<name>(...) or a reflow {role.title()}",
    )
