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
from reflow.connectors.facade import Connectors, ConnectorSpecBuilder
from reflow.connectors.options import (
    ConfigDescriptor,
    ConnectorOptions,
    OptionDescriptor,
    OptionsConnector,
)
from reflow.connectors.registry import (
    ConnectorSpec,
    available_connectors,
    get_connector,
    register_connector,
    resolve_sink,
    resolve_source,
)

__all__ = [
    "Boundedness",
    "BufferedSinkWriter",
    "ConfigDescriptor",
    "Connector",
    "ConnectorContext",
    "ConnectorOptions",
    "ConnectorSpec",
    "ConnectorSpecBuilder",
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
