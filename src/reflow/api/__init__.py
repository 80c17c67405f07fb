"""The user API: the fluent Flow/Stream API and the ``Job.builder()`` and
``StreamGraph.builder()`` builders; ``reflow.graph`` holds the model they build."""

from reflow.api.builders import JobBuilder, StreamGraphBuilder
from reflow.api.stream import Flow, KeyedStream, Stream

__all__ = ["Flow", "JobBuilder", "KeyedStream", "Stream", "StreamGraphBuilder"]
