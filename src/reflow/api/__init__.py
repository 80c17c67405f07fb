"""The user API: the fluent Flow/Stream API (the Job and StreamGraph builders live in graph)."""

from reflow.api.stream import Flow, KeyedStream, Stream

__all__ = ["Flow", "KeyedStream", "Stream"]
