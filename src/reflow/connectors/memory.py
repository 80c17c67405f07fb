"""In-memory sources and sinks: ``TestingSource``/``TestingSink`` and the ``memory`` connector.

``memory`` reads and writes named lists of this process (``memory_store``),
which lets YAML jobs in tests and notebooks exchange records with Python.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from pydantic import Field

from reflow.connectors.base import (
    Boundedness,
    ConnectorContext,
    Sink,
    SinkWriter,
    Source,
    SourceReader,
)
from reflow.connectors.options import ConnectorOptions, OptionsConnector
from reflow.errors import ConnectorError

__all__ = [
    "MemoryConnector",
    "TestingSink",
    "TestingSource",
    "TestingSourceAbort",
    "memory_store",
]

memory_store: dict[str, list[Any]] = {}
"""The named lists the ``memory`` connector reads and writes."""


class TestingSourceAbort(ConnectorError):
    """Raised by a TestingSource reader at its ABORT marker."""

    __test__ = False  # not a pytest class


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"TestingSource.{self.name}"

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        # Unpickled (in another process) as the same marker, so identity checks hold.
        return (_marker, (self.name,))


def _marker(name: str) -> Any:
    return getattr(TestingSource, name)


class _ListReader(SourceReader):
    def __init__(self, items: list[Any], ctx: ConnectorContext, bounded: bool) -> None:
        self.items = items
        self.batch_size = ctx.batch_size
        self.position = 0
        self.bounded = bounded

    def snapshot(self) -> Any:
        return self.position

    def restore(self, position: Any) -> None:
        self.position = int(position)

    async def read_batch(self) -> list[Any] | None:
        items = self.items
        if self.position >= len(items):
            if self.bounded:
                return None
            await asyncio.Event().wait()  # unbounded: nothing more, ever; stopped by cancel
        batch = items[self.position : self.position + self.batch_size]
        for offset, item in enumerate(batch):
            if isinstance(item, _Marker):
                if offset:
                    self.position += offset
                    return batch[:offset]
                self.position += 1
                if item is TestingSource.ABORT:
                    raise TestingSourceAbort("TestingSource reached its ABORT marker")
                if item is TestingSource.EOF:
                    self.position = len(items)
                    return None
        self.position += len(batch)
        return batch


class TestingSource(Source):
    """A source over an in-memory iterable, for tests.

    With parallelism p, subtask i reads items i, i+p, i+2p, ... Markers:
    ``TestingSource.ABORT`` makes the reader raise TestingSourceAbort there;
    ``TestingSource.EOF`` ends that subtask's input early. ``bounded=False``
    keeps the reader open after the last item, like an idle stream.
    """

    ABORT: ClassVar[Any] = _Marker("ABORT")
    EOF: ClassVar[Any] = _Marker("EOF")
    connector_type: ClassVar[str] = "testing"
    __test__ = False  # not a pytest class

    def __init__(
        self,
        items: Iterable[Any],
        *,
        name: str | None = None,
        parallelism: int | None = None,
        bounded: bool = True,
    ) -> None:
        self.items = list(items)
        self.name = name
        self.parallelism = parallelism
        self._bounded = bounded

    @property
    def boundedness(self) -> Boundedness:
        return Boundedness.BOUNDED if self._bounded else Boundedness.UNBOUNDED

    @property
    def is_parallel(self) -> bool:
        return True

    def create_reader(self, ctx: ConnectorContext) -> SourceReader:
        share = self.items[ctx.subtask_index :: ctx.parallelism]
        return _ListReader(share, ctx, self._bounded)


class _ListWriter(SinkWriter):
    def __init__(
        self, target: list[Any], exactly_once: bool = False, committed: set[Any] | None = None
    ) -> None:
        self.target = target
        self.exactly_once = exactly_once
        self.committed = committed if committed is not None else set()
        self.subtask = 0
        self.current: list[Any] = []
        self.staged: dict[int, list[Any]] = {}

    async def write(self, batch: list[Any]) -> None:
        if self.exactly_once:
            self.current.extend(batch)
        else:
            self.target.extend(batch)

    async def pre_commit(self, checkpoint_id: int) -> Any:
        if not self.exactly_once:
            return None
        self.staged[checkpoint_id], self.current = self.current, []
        return (self.subtask, checkpoint_id, list(self.staged[checkpoint_id]))

    def _commit_once(self, subtask: int, checkpoint_id: int, records: list[Any]) -> None:
        if (subtask, checkpoint_id) not in self.committed:
            self.committed.add((subtask, checkpoint_id))
            self.target.extend(records)

    async def commit(self, checkpoint_id: int) -> None:
        for staged in sorted(c for c in self.staged if c <= checkpoint_id):
            self._commit_once(self.subtask, staged, self.staged.pop(staged))

    async def restore(self, states: list[Any]) -> None:
        for state in states:
            if state is not None:
                self._commit_once(*state)

    async def flush(self) -> None:
        if self.exactly_once:  # end of input: the final commit
            for staged in sorted(self.staged):
                self._commit_once(self.subtask, staged, self.staged.pop(staged))
            self._commit_once(self.subtask, -1, self.current)
            self.current = []


class TestingSink(Sink):
    """A sink that collects every record, from every subtask, in ``records``: the
    list given (``TestingSink(out)``, the test owns it), else a new one.

    With ``exactly_once=True`` records become visible only when the checkpoint
    after them completes (or at the end of input), like a transactional sink;
    the records of a failed attempt after its last checkpoint never show.
    """

    connector_type: ClassVar[str] = "testing"
    __test__ = False

    def __init__(
        self,
        records: list[Any] | None = None,
        *,
        name: str | None = None,
        parallelism: int | None = None,
        exactly_once: bool = False,
    ) -> None:
        self.records: list[Any] = [] if records is None else records
        self.name = name
        self.parallelism = parallelism
        self.exactly_once = exactly_once
        self.committed: set[Any] = set()

    @property
    def supports_transaction(self) -> bool:  # type: ignore[override]
        return self.exactly_once

    def create_writer(self, ctx: ConnectorContext) -> SinkWriter:
        writer = _ListWriter(self.records, self.exactly_once, self.committed)
        writer.subtask = ctx.subtask_index
        return writer


class MemorySourceOptions(ConnectorOptions):
    collection: str = Field(description="name of the list in reflow.testing.memory_store")


class MemorySinkOptions(ConnectorOptions):
    collection: str = Field(description="name of the list in reflow.testing.memory_store")
    append: bool = Field(True, description="false clears the list when the job starts")


class _MemorySink(Sink):
    connector_type: ClassVar[str] = "memory"

    def __init__(self, options: MemorySinkOptions) -> None:
        self.options = options
        if not options.append:
            memory_store[options.collection] = []

    def create_writer(self, ctx: ConnectorContext) -> SinkWriter:
        return _ListWriter(memory_store.setdefault(self.options.collection, []))


class MemoryConnector(OptionsConnector):
    """Named in-memory lists of this process."""

    type = "memory"
    description = "Named in-memory lists of this process (reflow.testing.memory_store)."
    source_options = MemorySourceOptions
    sink_options = MemorySinkOptions

    def create_source(self, options: Mapping[str, Any]) -> Source:
        parsed = self.parse(options, "source", MemorySourceOptions)
        if parsed.collection not in memory_store:
            raise ConnectorError(
                f"memory source: no collection {parsed.collection!r} in memory_store; "
                "fill reflow.testing.memory_store[...] before running the job"
            )
        return TestingSource(memory_store[parsed.collection])

    def create_sink(self, options: Mapping[str, Any]) -> Sink:
        return _MemorySink(self.parse(options, "sink", MemorySinkOptions))
