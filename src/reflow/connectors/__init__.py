"""Connectors: the Source/Sink contract, the registry, and the built-in connectors."""

from reflow.connectors.base import (
    Boundedness,
    BufferedSinkWriter,
    Connector,
    ConnectorContext,
    Sink,
    SinkWriter,
    Source,
    SourceReader,
)
from reflow.connectors.facade import Connectors
from reflow.connectors.registry import (
    ConnectorSpec,
    available_connectors,
    get_connector,
    register_connector,
    resolve_sink,
    resolve_source,
)

# The options machinery imports pydantic (~75 ms); it loads when first used.
_LAZY = {"ConfigDescriptor", "ConnectorOptions", "OptionDescriptor", "OptionsConnector"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        from reflow.connectors import options

        return getattr(options, name)
    raise AttributeError(f"module 'reflow.connectors' has no attribute {name!r}")


__all__ = [
    "Boundedness",
    "BufferedSinkWriter",
    "ConfigDescriptor",
    "Connector",
    "ConnectorContext",
    "ConnectorOptions",
    "ConnectorSpec",
    "Connectors",
    "OptionDescriptor",
    "OptionsConnector",
    "Sink",
    "SinkWriter",
    "Source",
    "SourceReader",
    "available_connectors",
    "get_connector",
    "register_connector",
    "resolve_sink",
    "resolve_source",
]
