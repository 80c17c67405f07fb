"""The ``datagen`` connector: synthetic records, rate-limited, bounded or unbounded.

Deterministic for a given ``seed``: subtask i of p produces the records whose
global index is i, i+p, i+2p, ..., each from its own random stream.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from reflow.connectors.base import Boundedness, ConnectorContext, Sink, Source, SourceReader
from reflow.connectors.options import ConnectorOptions, OptionsConnector

__all__ = ["DatagenConnector", "DatagenOptions", "DatagenSource", "FieldSpec"]


class FieldSpec(BaseModel):
    """How one field is generated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["sequence", "int", "float", "choice", "uuid", "timestamp", "string"] = "int"
    min: float = 0
    max: float = 1000
    values: list[Any] | None = None
    length: int = 8


DEFAULT_FIELDS = {
    "id": FieldSpec(kind="sequence"),
    "value": FieldSpec(kind="float", min=0, max=1),
    "ts": FieldSpec(kind="timestamp"),
}


class DatagenOptions(ConnectorOptions):
    number_of_rows: int | None = Field(
        None, ge=0, description="rows to produce in all; none means unbounded"
    )
    rows_per_second: float | None = Field(
        None, gt=0, description="rate limit over all subtasks; none means as fast as possible"
    )
    fields: dict[str, FieldSpec] | None = Field(
        None,
        description="field name -> {kind: sequence|int|float|choice|uuid|timestamp|string, "
        "min, max, values, length}; default id, value, ts",
    )
    seed: int = Field(0, description="random seed; the same seed gives the same records")


def _generator(name: str, spec: FieldSpec, rng: random.Random) -> Callable[[int], Any]:
    low, high = spec.min, spec.max
    if spec.kind == "sequence":
        start = int(low)
        return lambda index: start + index
    if spec.kind == "int":
        return lambda index: rng.randint(int(low), int(high))
    if spec.kind == "float":
        return lambda index: rng.uniform(low, high)
    if spec.kind == "choice":
        values = spec.values or [None]
        return lambda index: values[rng.randrange(len(values))]
    if spec.kind == "uuid":
        return lambda index: str(uuid.UUID(int=rng.getrandbits(128), version=4))
    if spec.kind == "timestamp":
        return lambda index: int(time.time() * 1000)
    letters = "abcdefghijklmnopqrstuvwxyz"
    length = spec.length
    return lambda index: "".join(rng.choice(letters) for _ in range(length))


class _DatagenReader(SourceReader):
    def __init__(self, options: DatagenOptions, ctx: ConnectorContext) -> None:
        self.ctx = ctx
        rng = self.rng = random.Random(options.seed * 1_000_003 + ctx.subtask_index)
        fields = options.fields or DEFAULT_FIELDS
        self.generators = [(n, _generator(n, s, rng)) for n, s in fields.items()]
        self.index = ctx.subtask_index
        self.step = ctx.parallelism
        self.limit = options.number_of_rows
        rate = options.rows_per_second
        self.rate = rate / ctx.parallelism if rate else None
        self.batch = (
            ctx.batch_size
            if self.rate is None
            else max(1, min(ctx.batch_size, int(self.rate / 10)))
        )
        self.emitted = 0
        self.started = 0.0

    def snapshot(self) -> Any:
        return (self.index, self.emitted, self.rng.getstate())

    def restore(self, position: Any) -> None:
        self.index, self.emitted, state = position
        self.rng.setstate(state)

    async def open(self) -> None:
        now = self.ctx.clock.now_ms() / 1000
        self.started = now - (self.emitted / self.rate if self.rate else 0)

    async def read_batch(self) -> list[Any] | None:
        if self.rate is not None:  # paced on the job's clock (a ManualClock in tests)
            clock = self.ctx.clock
            due = self.started + self.emitted / self.rate
            delay = due - clock.now_ms() / 1000
            if delay > 0:
                await clock.sleep(delay)
        out = []
        generators = self.generators
        for _ in range(self.batch):
            if self.limit is not None and self.index >= self.limit:
                break
            index = self.index
            out.append({name: gen(index) for name, gen in generators})
            self.index += self.step
        if not out:
            return None
        self.emitted += len(out)
        if self.rate is None:
            await asyncio.sleep(0)  # an unthrottled generator still lets other tasks run
        return out


class DatagenSource(Source):
    connector_type: ClassVar[str] = "datagen"

    def __init__(self, options: DatagenOptions) -> None:
        self.options = options
        self.name: str | None = None
        self.parallelism: int | None = None

    @property
    def boundedness(self) -> Boundedness:
        if self.options.number_of_rows is None:
            return Boundedness.UNBOUNDED
        return Boundedness.BOUNDED

    @property
    def is_parallel(self) -> bool:
        return True

    def create_reader(self, ctx: ConnectorContext) -> SourceReader:
        return _DatagenReader(self.options, ctx)


class DatagenConnector(OptionsConnector):
    type = "datagen"
    description = (
        "Synthetic records: sequences, random values, choices; rate-limited, bounded or not."
    )
    source_options = DatagenOptions

    def create_source(self, options: Mapping[str, Any]) -> Source:
        return DatagenSource(self.parse(options, "source", DatagenOptions))

    def create_sink(self, options: Mapping[str, Any]) -> Sink:
        self._model("sink")  # raises: datagen has no sink
        raise AssertionError("unreachable")
