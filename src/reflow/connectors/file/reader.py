"""Reading files: splits (whole files or byte ranges of line files) and their readers.

A line-oriented file (JSON lines, text) read by several subtasks is cut into
byte ranges; a range owns every line that *starts* inside it, so each line is
read exactly once whatever the cut points.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import re
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain
from typing import IO, Any

import msgspec

from reflow.connectors.base import ConnectorContext, SourceReader
from reflow.connectors.file.formats import decode_json_lines
from reflow.connectors.file.storage import LocalStorage, Storage
from reflow.connectors.typed import decode_typed_lines, row_type, typed_decoder
from reflow.errors import ConnectorError

__all__ = ["FileSplit", "list_files", "make_reader", "plan_splits"]

# Bytes read per blocking call. Every hop to the I/O pool costs a GIL
# hand-over between the loop and the worker (about 0.3 ms when the loop is
# busy): 4 MiB chunks make that a few dozen hops per GB. Measured on Nexmark
# Q1 (170 MB): 1 MiB chunks ran 12% slower than 4 MiB. Lines are then cut
# into micro-batches of ``batch_size`` on the loop.
READ_CHUNK_BYTES = 4 * 1024 * 1024
# Smallest byte range worth giving a reader of its own.
MIN_SPLIT_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class FileSplit:
    path: str
    start: int = 0
    end: int | None = None
    """Exclusive end byte; None reads to the end of the file."""


def list_files(pattern: str, storage: Storage | None = None) -> list[str]:
    """The files a path, folder or glob names, sorted; raises if there are none."""
    return (storage or LocalStorage()).list_files(pattern, "source")


def plan_splits(
    files: list[str], parallelism: int, splittable: bool, storage: Storage | None = None
) -> list[FileSplit]:
    """Whole files, or, for line formats with fewer files than readers, byte ranges."""
    if not splittable or parallelism <= 1 or len(files) >= parallelism:
        return [FileSplit(f) for f in files]
    storage = storage or LocalStorage()
    splits = []
    for path in files:
        size = storage.size(path)
        pieces = max(1, min(parallelism, size // MIN_SPLIT_BYTES))
        step = -(-size // pieces) if size else 0
        for i in range(pieces):
            start = i * step
            end = None if i == pieces - 1 else (i + 1) * step
            splits.append(FileSplit(path, start, end))
    return splits


class _RawChunks:
    """Raw byte chunks of one split, ending on a line end (blocking; run in a thread)."""

    def __init__(self, split: FileSplit, storage: Storage) -> None:
        self.split = split
        self.file = storage.open_read(split.path)
        start = 0
        if split.start > 0:
            # The line crossing `start` belongs to the previous split: skip to its end.
            self.file.seek(split.start - 1)
            start = split.start - 1
            while True:
                probe = self.file.read(4096)
                cut = probe.find(b"\n")
                if cut >= 0:
                    start += cut + 1
                    break
                if not probe:
                    break
                start += len(probe)
        self.file.seek(start)
        self.position = start
        self.done = False

    def read(self, prefix: bytes = b"") -> bytes | bytearray | None:
        """The next chunk after ``prefix`` (the previous chunk's unfinished line): read
        into one buffer behind it, so neither is copied again on the event loop;
        None at the end of the split."""
        if self.done:
            return None
        end = self.split.end
        size = READ_CHUNK_BYTES if end is None else min(READ_CHUNK_BYTES, end - self.position)
        data = self._read_after(prefix, size) if size > 0 else None
        if data is None:
            self.done = True
            return None
        self.position += len(data) - len(prefix)
        if end is not None and self.position >= end:
            self.done = True
            while not data.endswith(b"\n"):
                more = self.file.read(4096)
                if not more:
                    break
                cut = more.find(b"\n")
                data += more if cut < 0 else more[: cut + 1]
                if cut >= 0:
                    break
        return data

    def _read_after(self, prefix: bytes, size: int) -> bytes | bytearray | None:
        readinto = getattr(self.file, "readinto", None)
        if readinto is None:  # a file object of a remote store without readinto
            data = self.file.read(size)
            return prefix + data if data else None
        buffer = bytearray(len(prefix) + size)
        buffer[: len(prefix)] = prefix
        got = 0
        with memoryview(buffer) as view:
            while got < size:  # a raw read may return less than asked before the end
                n = readinto(view[len(prefix) + got :])
                if not n:
                    break
                got += n
        if not got:
            return None
        del buffer[len(prefix) + got :]
        return buffer

    def close(self) -> None:
        self.file.close()


class LineReader(SourceReader):
    """JSON lines or text lines from a list of splits, about ``batch_size`` lines per
    batch.

    Chunks are read in the I/O pool (the next one while the current one is parsed).
    A batch is a piece of the chunk's bytes cut at the line end nearest
    ``batch_size`` lines' worth of bytes, so the position after it is exact and
    costs nothing to keep; only the piece is cut into lines.
    """

    def __init__(
        self,
        splits: list[FileSplit],
        fmt: str,
        encoding: str,
        ctx: ConnectorContext,
        storage: Storage | None = None,
    ):
        self.storage = storage or LocalStorage()
        self.splits = list(splits)
        self.fmt = fmt
        self.encoding = encoding
        self.ctx = ctx
        self.batch = max(1, ctx.batch_size)
        self.current: _RawChunks | None = None
        self.pending: asyncio.Future[bytes | bytearray | None] | None = None
        self.body: bytes | bytearray = b""  # the chunk being read: its lines end at limit
        self.limit = 0
        self.cursor = 0  # offset in body of the next batch
        self.body_base = 0  # file offset of body
        self.carry = b""
        self.piece = 0  # bytes of about `batch` lines, from the first chunk
        self.line_base: int | None = None  # number of the line at cursor, when known
        self.split_cursor = -1  # index of the split being read
        self.position = 0  # file offset after the last line returned

    def snapshot(self) -> Any:
        return (self.split_cursor, self.position)

    def restore(self, position: Any) -> None:
        cursor, offset = position
        if cursor < 0:
            return
        remaining = self.splits[cursor:]
        if remaining:
            first = remaining[0]
            # Resume at a line start: a split starting at offset skips the line
            # that ends at offset - 1, which was returned.
            remaining[0] = FileSplit(first.path, offset, first.end)
        self.splits = remaining
        self.split_cursor = cursor - 1

    def backlogged(self) -> bool:
        return self.cursor < self.limit

    async def _refill(self) -> bool:
        """Load the next chunk's whole lines; False at the end of every split."""
        while True:
            if self.current is None:
                if not self.splits:
                    return False
                split = self.splits.pop(0)
                self.split_cursor += 1
                self.current = await self.ctx.run_blocking(_RawChunks, split, self.storage)
                self.line_base = 1 if split.start == 0 else None
                self.position = self.current.position
                self.carry = b""
            # The chunk comes after the carry (the last chunk's unfinished line).
            if self.pending is not None:
                data, self.pending = await self.pending, None
            else:
                data = await self.ctx.run_blocking(self.current.read, self.carry)
            if data is None:
                self.current.close()
                self.current = None
                if self.carry:
                    last, self.carry = self.carry, b""
                    if self._take(last, final=True):
                        return True
                continue
            taken = self._take(data, final=False)
            self.pending = asyncio.ensure_future(
                self.ctx.run_blocking(self.current.read, self.carry)
            )
            if taken:
                return True

    def _take(self, data: bytes | bytearray, final: bool) -> bool:
        """Hold the whole lines of ``data`` (all of it when ``final``) as the body to
        read, keep the rest as carry; False when there is no whole line."""
        cut = len(data) if final else data.rfind(b"\n") + 1
        # Every earlier body was read whole: this one starts where the last batch ended.
        self.body_base = self.position
        self.body, self.limit, self.carry = data, cut, bytes(data[cut:])
        self.cursor = 0
        if cut and not self.piece:
            self.piece = max(1, cut * self.batch // (data.count(b"\n", 0, cut) or 1))
        return cut > 0

    async def read_batch(self) -> list[Any] | None:
        if self.cursor >= self.limit and not await self._refill():
            return None
        body, start, limit = self.body, self.cursor, self.limit
        end = body.find(b"\n", start + self.piece - 1, limit)
        end = limit if end < 0 else end + 1
        self.cursor = end
        self.position = self.body_base + end
        piece: bytes | memoryview = memoryview(body)[start:end]
        if not self.decodes_views:
            piece = bytes(piece)
        return await self._decode(piece, self.body_base + start)

    decodes_views = False
    """``_decode`` takes a view of the chunk (no copy of the piece) instead of bytes."""

    async def _decode(self, piece: Any, offset: int) -> list[Any]:
        """The records of ``piece``, whole lines starting at file ``offset``."""
        lines = piece.splitlines(keepends=True)
        first = self.line_base
        if first is not None:
            self.line_base = first + len(lines)
        where = self._locator(lines, offset, first)
        if self.fmt == "json":
            return decode_json_lines(lines, self.ctx.reject, where)
        encoding = self.encoding
        try:
            return [line.decode(encoding).rstrip("\r\n") for line in lines]
        except UnicodeDecodeError:
            pass
        out = []
        for index, line in enumerate(lines):
            try:
                out.append(line.decode(encoding).rstrip("\r\n"))
            except UnicodeDecodeError as exc:
                self.ctx.reject(line, ValueError(f"{where(index)}: not valid {encoding}: {exc}"))
        return out

    def _locator(self, lines: list[bytes], offset: int, first: int | None) -> Callable[[int], str]:
        """Names the place of ``lines[index]`` for an error: file and line number, or
        byte offset when the split starts inside the file."""
        path = self.current.split.path if self.current is not None else "file"

        def where(index: int) -> str:
            if first is not None:
                return f"{path}:{first + index}"
            return f"{path} at byte {offset + sum(map(len, lines[:index]))}"

        return where

    async def close(self) -> None:
        if self.pending is not None:
            # The reader is closing: the read's result or error no longer matters.
            with contextlib.suppress(Exception):
                await self.pending
            self.pending = None
        if self.current is not None:
            self.current.close()
            self.current = None


def _convert(value: str, kind: str) -> Any:
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    if kind == "bool":
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes", "y", "t"):
            return True
        if lowered in ("false", "0", "no", "n", "f", ""):
            return False
        raise ValueError(f"{value!r} is not a boolean")
    return value


class _WholeFiles(SourceReader):
    """Readers that read whole files in order; position = (file index, rows returned)."""

    files: list[str]
    file_cursor = -1
    rows_returned = 0
    skip_rows = 0

    def snapshot(self) -> Any:
        return (self.file_cursor, self.rows_returned)

    def restore(self, position: Any) -> None:
        cursor, rows = position
        if cursor >= 0:
            self.files = self.files[cursor:]
            self.file_cursor = cursor - 1
            self.skip_rows = rows


class CsvReader(_WholeFiles):
    """CSV rows as dicts (with a header or ``columns``) or lists, typed by ``types``."""

    def __init__(
        self,
        files: list[str],
        *,
        delimiter: str,
        header: bool,
        columns: list[str] | None,
        types: dict[str, str],
        encoding: str,
        ctx: ConnectorContext,
        storage: Storage | None = None,
    ) -> None:
        self.storage = storage or LocalStorage()
        self.files = list(files)
        self.delimiter = delimiter
        self.header = header
        self.columns = columns
        self.types = types
        self.encoding = encoding
        self.ctx = ctx
        self.file: IO[str] | None = None
        self.reader: Any = None
        self.path = ""
        self.fieldnames: list[str] | None = None

    def _open(self, path: str) -> None:
        self.file = self.storage.open_text(path, self.encoding)
        self.reader = csv.reader(self.file, delimiter=self.delimiter)
        self.path = path
        self.fieldnames = self.columns
        self.file_cursor += 1
        self.rows_returned = 0
        if self.header:
            first = next(self.reader, None)
            if first is not None and any(_UNDECODED.search(name) for name in first):
                raise ConnectorError(
                    f"file source: the header of {path} has bytes that are not "
                    f"{self.encoding} text; fix the file or set the source's 'encoding'"
                )
            if self.fieldnames is None and first is not None:
                self.fieldnames = first
        while self.skip_rows > 0 and next(self.reader, None) is not None:
            self.skip_rows -= 1
            self.rows_returned += 1

    def _rows(self, count: int) -> list[tuple[int, list[str]]]:
        rows = []
        reader = self.reader
        for row in reader:
            rows.append((reader.line_num, row))
            if len(rows) >= count:
                break
        return rows

    async def read_batch(self) -> list[Any] | None:
        while True:
            if self.file is None:
                if not self.files:
                    return None
                await self.ctx.run_blocking(self._open, self.files.pop(0))
            rows = await self.ctx.run_blocking(self._rows, self.ctx.batch_size)
            if not rows:
                await self.close()
                continue
            self.rows_returned += len(rows)
            return self._convert(rows)

    def _convert(self, rows: list[tuple[int, list[str]]]) -> list[Any]:
        names = self.fieldnames
        types = self.types
        # Bytes not valid in the encoding were read as lone surrogates: one search
        # of the batch, and row by row only when it finds one.
        undecoded = _UNDECODED.search("".join(chain.from_iterable(row for _, row in rows)))
        out: list[Any] = []
        for line_num, row in rows:
            if not row:
                continue
            if undecoded is not None and self._undecoded(line_num, row):
                continue
            try:
                if names is None:
                    out.append(row)
                    continue
                if len(row) != len(names):
                    raise ValueError(
                        f"{self.path}:{line_num}: expected {len(names)} fields, got {len(row)}"
                    )
                record = dict(zip(names, row, strict=True))
                for column, kind in types.items():
                    if column in record:
                        try:
                            record[column] = _convert(record[column], kind)
                        except ValueError as exc:
                            raise ValueError(
                                f"{self.path}:{line_num}: column {column!r}: {exc}"
                            ) from exc
                out.append(record)
            except ValueError as exc:
                self.ctx.reject(row, exc)
        return out

    def _undecoded(self, line_num: int, row: list[str]) -> bool:
        """Whether ``row`` holds bytes not valid in the encoding; if so it is rejected,
        its values shown with those bytes escaped (``\\xff``)."""
        for value in row:
            if (bad := _UNDECODED.search(value)) is not None:
                byte = ord(bad.group()) - 0xDC00
                shown = [
                    v.encode(self.encoding, "surrogateescape").decode(
                        self.encoding, "backslashreplace"
                    )
                    for v in row
                ]
                self.ctx.reject(
                    shown,
                    ValueError(
                        f"{self.path}:{line_num}: byte 0x{byte:02x} is not {self.encoding} "
                        "text; fix the file or set the source's 'encoding'"
                    ),
                )
                return True
        return False

    async def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


# Lone surrogates: what ``surrogateescape`` reads bytes not valid in an encoding as.
_UNDECODED = re.compile("[\udc80-\udcff]")


class ParquetReader(_WholeFiles):
    """Parquet files, row batch by row batch, as dicts."""

    def __init__(
        self, files: list[str], ctx: ConnectorContext, storage: Storage | None = None
    ) -> None:
        self.storage = storage or LocalStorage()
        self.files = list(files)
        self.ctx = ctx
        self.batches: Any = None
        self.handle: Any = None  # the open S3 object of the current file
        self.path = ""

    def _next(self) -> list[Any] | None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        while True:
            if self.batches is None:
                if not self.files:
                    return None
                path = self.path = self.files.pop(0)
                self.file_cursor += 1
                self.rows_returned = 0
                try:
                    if self.storage.remote:
                        self._close_handle()
                        self.handle = self.storage.open_read(path)
                    self.batches = pq.ParquetFile(self.handle or path).iter_batches(
                        batch_size=self.ctx.batch_size
                    )
                except (pa.ArrowException, OSError) as exc:
                    self._reject_file(path, "cannot be opened as Parquet", exc)
                    continue
            try:
                batch = next(self.batches, None)
            except (pa.ArrowException, OSError) as exc:
                self.batches = None
                self._reject_file(self.path, f"is corrupt after row {self.rows_returned}", exc)
                continue
            if batch is None:
                self.batches = None
                continue
            rows: list[Any] = batch.to_pylist()
            if self.skip_rows:
                skipped = rows[: self.skip_rows]
                rows = rows[self.skip_rows :]
                self.skip_rows -= len(skipped)
                self.rows_returned += len(skipped)
                if not rows:
                    continue
            self.rows_returned += len(rows)
            return rows

    def _reject_file(self, path: str, problem: str, exc: BaseException) -> None:
        """A file that cannot be read goes to the error policy (the rest of it is skipped)."""
        self.ctx.reject(
            {"file": path, "row": self.rows_returned},
            ValueError(f"{path} {problem}: {type(exc).__name__}: {exc}"),
        )

    async def read_batch(self) -> list[Any] | None:
        return await self.ctx.run_blocking(self._next)

    def _close_handle(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None

    async def close(self) -> None:
        self._close_handle()


class TypedLineReader(LineReader):
    """JSON lines decoded into typed rows of a declared schema, a batch's piece at a
    time in one C-level call (msgspec's ``decode_lines``) straight from the bytes:
    no bytes object per line. Only a piece holding a bad line is cut into lines; the
    line is rejected with its file and line number, counted only then."""

    def __init__(
        self,
        splits: list[FileSplit],
        ctx: ConnectorContext,
        row: type[Any],
        storage: Storage | None = None,
    ) -> None:
        super().__init__(splits, "json", "utf-8", ctx, storage)
        self.row = row
        self.decode_lines = typed_decoder(row).decode_lines
        self.counted = ("", 0, 1)  # (path, offset, number of the line starting there)

    decodes_views = True  # msgspec decodes from the chunk's buffer as it is

    async def _decode(self, piece: Any, offset: int) -> list[Any]:
        try:
            rows: list[Any] = self.decode_lines(piece)
            return rows
        except msgspec.DecodeError:
            pass
        lines = bytes(piece).splitlines(keepends=True)
        first = None
        if self.line_base is not None and self.current is not None:
            first = await self.ctx.run_blocking(self._line_at, self.current.split.path, offset)
        return decode_typed_lines(
            lines, self.row, self.ctx.reject, self._locator(lines, offset, first)
        )

    def _line_at(self, path: str, offset: int) -> int:
        """The number of the line starting at ``offset`` of ``path``, counted on from
        the last place counted (blocking)."""
        known, start, line = self.counted
        if known != path or start > offset:
            start, line = 0, 1
        with self.storage.open_read(path) as file:
            file.seek(start)
            remaining = offset - start
            while remaining > 0:
                chunk = file.read(min(remaining, READ_CHUNK_BYTES))
                if not chunk:
                    break
                line += chunk.count(b"\n")
                remaining -= len(chunk)
        self.counted = (path, offset, line)
        return line


def make_reader(
    fmt: str,
    splits: list[FileSplit],
    options: Any,
    ctx: ConnectorContext,
    storage: Storage | None = None,
) -> SourceReader:
    files = [s.path for s in splits]
    if fmt in ("json", "text"):
        schema = getattr(options, "schema_", None)
        if fmt == "json" and schema:
            return TypedLineReader(splits, ctx, row_type(schema), storage)
        return LineReader(splits, fmt, options.encoding, ctx, storage)
    if fmt == "csv":
        return CsvReader(
            files,
            delimiter=options.csv_delimiter,
            header=options.csv_header,
            columns=options.columns,
            types=dict(options.types or {}),
            encoding=options.encoding,
            ctx=ctx,
            storage=storage,
        )
    return ParquetReader(files, ctx, storage)
