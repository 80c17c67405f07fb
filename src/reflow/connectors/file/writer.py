"""Writing files: path templates, rolling files, buffered writes off the event loop.

The path may hold ``{date}`` (YYYY-MM-DD), ``{datetime}`` (YYYYMMDD-HHMMSS),
``{subtask}`` and ``{part}``. With parallelism above 1 a path without
``{subtask}`` gets ``-{subtask}`` before its extension, and with rolling on, a
path without ``{part}`` gets ``-{part}``, so writers never share a file. A new
file starts when the rendered path changes (a new day) or the current file
reached ``rolling_max_records`` / ``rolling_max_bytes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from datetime import datetime
from typing import IO, Any

from reflow.connectors.base import ConnectorContext, SinkWriter, cancel_and_wait
from reflow.connectors.file.formats import encode_csv, encode_json_lines, encode_text
from reflow.connectors.file.storage import storage_for
from reflow.errors import ConnectorError

__all__ = ["FileWriter", "render_template"]

# Encoded bytes gathered before one blocking write in the I/O pool: as for
# reads, few large hops cost far less than many small ones. ``flush_interval``
# bounds how long encoded records wait in this buffer on a quiet stream.
WRITE_BUFFER_BYTES = 4 * 1024 * 1024


def _insert_before_extension(path: str, text: str) -> str:
    directory, name = os.path.split(path)
    stem, dot, ext = name.partition(".")
    return os.path.join(directory, f"{stem}{text}{dot}{ext}")


def effective_template(path: str, parallelism: int, rolling: bool) -> str:
    """The path template after adding ``{subtask}``/``{part}`` where needed."""
    if parallelism > 1 and "{subtask}" not in path:
        path = _insert_before_extension(path, "-{subtask}")
    if rolling and "{part}" not in path:
        path = _insert_before_extension(path, "-{part}")
    return path


def render_template(template: str, now: datetime, subtask: int, part: int) -> str:
    try:
        return template.format(
            date=now.strftime("%Y-%m-%d"),
            datetime=now.strftime("%Y%m%d-%H%M%S"),
            subtask=subtask,
            part=part,
        )
    except (KeyError, IndexError, ValueError) as exc:
        raise ConnectorError(
            f"file sink: bad path template {template!r} ({exc}); use only "
            "{date}, {datetime}, {subtask} and {part}"
        ) from exc


# The suffix of files written but not yet committed (exactly-once).
IN_PROGRESS = ".inprogress"


class FileWriter(SinkWriter):
    """Encodes batches on the event loop and writes them in the I/O pool."""

    def __init__(self, options: Any, fmt: str, ctx: ConnectorContext) -> None:
        self.options = options
        self.fmt = fmt
        self.typed_rows = fmt == "json"  # JSON lines encode typed rows in one call
        self.ctx = ctx
        self.exactly_once = options.delivery == "exactly-once"
        rolling = bool(options.rolling_max_records or options.rolling_max_bytes)
        # Exactly-once commits one file per checkpoint: names need a part number.
        self.template = effective_template(
            options.path, ctx.parallelism, rolling or self.exactly_once
        )
        self.dated = "{date}" in self.template or "{datetime}" in self.template
        self.part = 0
        self.path: str | None = None
        self.file: IO[bytes] | None = None
        self.buffer: list[bytes] = []
        self.buffered_bytes = 0
        self.file_records = 0
        self.file_bytes = 0
        self.columns: list[str] | None = options.columns
        self.parquet: Any = None
        self.parquet_rows: list[Any] = []
        self.paths_written: list[str] = []
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None
        self.write_path: str | None = None
        self.token = uuid.uuid4().hex[:8]
        # Who owns an in-progress file: job, step and subtask ('~' appears in none of
        # them), so a restore removes only its own leftovers, never another job's or
        # another sink's writing into the same folder.
        self.owner = f"~{ctx.job_id or 'job'}~{ctx.step_id}~{ctx.subtask_index}"
        self.closed_parts: list[tuple[str, str]] = []
        self.staged: dict[int, list[tuple[str, str]]] = {}
        self.storage = storage_for(options.path, options)
        self.parquet_stream: Any = None  # the S3 object a Parquet writer writes into
        # At least once, into local text files: a checkpoint notes how far the file
        # being written was written; a restart cuts that file back to there and
        # appends to it, rather than truncating what earlier attempts wrote (the
        # records after the checkpoint are written again, once).
        self.resumable = not self.exactly_once and fmt != "parquet" and not self.storage.remote
        if ctx.checkpointing and not self.exactly_once and not self.resumable:
            kind = "Parquet files" if fmt == "parquet" else "S3 objects"
            raise ConnectorError(
                f"file sink {options.path}: {kind} written at least once cannot be taken up "
                "again after a restart (it would write them anew from empty, and a crash "
                "loses one not finished); with checkpoints set delivery: exactly-once, "
                "which finishes them at each checkpoint"
            )
        self.file_start = 0
        """The size of the file being written when it was opened."""
        self.file_written = 0
        """Bytes encoded into the file being written since it was opened."""
        self.resumed: dict[str, dict[str, Any]] = {}
        """Restored: the files to append to, with their checkpointed size."""

    async def open(self) -> None:
        interval = self.options.flush_interval
        if interval:
            self._timer = asyncio.create_task(self._flush_periodically(interval))

    async def _flush_periodically(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            if self.buffer:
                await self._flush_to_disk()

    def _render(self) -> str:
        return render_template(self.template, datetime.now(), self.ctx.subtask_index, self.part)

    def _open_file(self, path: str) -> None:
        storage = self.storage
        folder, name = storage.split(path)
        storage.makedirs(folder)
        mode = self.options.mode
        resumed = self.resumed.pop(path, None)
        if resumed is not None:
            self._cut_back(path, resumed["size"])
        elif mode == "error" and storage.exists(path):
            raise ConnectorError(
                f"file sink: {path} exists and mode is 'error'; remove it or set "
                "mode: overwrite / append"
            )
        write_path = path
        if self.exactly_once:
            # Written under a hidden in-progress name; renamed when its checkpoint completes.
            write_path = storage.join(folder, f".{name}.{self.owner}.{self.token}{IN_PROGRESS}")
        append = mode == "append" or resumed is not None
        if self.fmt == "parquet":
            self.file = None
        else:
            self.file = storage.open_write(write_path, append=append)
        self.file_start = storage.size(path) if append and self.resumable else 0
        self.file_written = 0
        # (a file appended to after a restart goes on with its counts)
        self.file_records = 0 if resumed is None else resumed["records"]
        self.file_bytes = 0 if resumed is None else resumed["size"]
        self.path = path
        self.write_path = write_path
        self.paths_written.append(path)

    async def _roll_if_needed(self, incoming: int) -> None:
        opts = self.options
        rolled = False
        if self.path is not None:
            full = (
                opts.rolling_max_records
                and self.file_records + incoming > opts.rolling_max_records
                and self.file_records > 0
            ) or (opts.rolling_max_bytes and self.file_bytes >= opts.rolling_max_bytes)
            if full:
                await self._close_file()
                self.part += 1
                rolled = True
        if self.path is None or rolled or self.dated:
            path = self._render()
            if path != self.path:
                if self.path is not None:
                    await self._close_file()
                await self.ctx.run_blocking(self._open_file, path)

    async def write(self, batch: list[Any]) -> None:
        max_records = self.options.rolling_max_records
        while batch:
            await self._roll_if_needed(len(batch))
            if max_records:
                room = max(1, max_records - self.file_records)
                chunk, batch = batch[:room], batch[room:]
            else:
                chunk, batch = batch, []
            await self._write_chunk(chunk)

    async def _write_chunk(self, chunk: list[Any]) -> None:
        opts = self.options
        self.file_records += len(chunk)
        if self.fmt == "parquet":
            self.parquet_rows.extend(chunk)
            if len(self.parquet_rows) >= opts.parquet_row_group_size:
                await self._write_parquet()
            return
        if self.fmt == "json":
            data = encode_json_lines(chunk, self.ctx.reject)
        elif self.fmt == "text":
            data = encode_text(chunk, opts.encoding, self.ctx.reject)
        else:
            if self.columns is None:
                first = chunk[0]
                if not isinstance(first, dict):
                    raise ConnectorError(
                        "file sink: CSV of non-dict records needs the 'columns' option"
                    )
                self.columns = list(first)
            header = opts.csv_header and self.file_bytes == 0 and not self.buffer
            data = encode_csv(
                chunk, self.columns, opts.csv_delimiter, header, opts.encoding, self.ctx.reject
            )
        size = len(data)
        self.buffer.append(data)
        self.buffered_bytes += size
        self.file_bytes += size
        self.file_written += size
        if self.buffered_bytes >= WRITE_BUFFER_BYTES:
            await self._write_buffer()

    async def _write_buffer(self) -> None:
        if self.buffer and self.file is not None:
            data, self.buffer = self.buffer, []
            self.buffered_bytes = 0
            # The lock keeps the timer's writes and the batches' writes in order.
            async with self._lock:
                await self.ctx.run_blocking(self.file.writelines, data)

    async def _write_parquet(self) -> None:
        rows, self.parquet_rows = self.parquet_rows, []
        if rows:
            rejected = await self.ctx.run_blocking(self._parquet_blocking, rows)
            for record, exc in rejected:
                self.ctx.reject(record, exc)

    def _parquet_blocking(self, rows: list[Any]) -> list[tuple[Any, Exception]]:
        """Write ``rows`` as a row group; the rows that cannot be (and why) are returned."""
        import pyarrow.parquet as pq

        table, rejected = _arrow_table(rows, None if self.parquet is None else self.parquet.schema)
        if table is None:
            return rejected
        if self.parquet is None:
            assert self.path is not None and self.write_path is not None
            target: Any = self.write_path
            if self.storage.remote:
                self.parquet_stream = target = self.storage.open_write(self.write_path, False)
            self.parquet = pq.ParquetWriter(target, table.schema)
        self.parquet.write_table(table)
        self.file_bytes += table.nbytes
        return rejected

    async def _close_file(self) -> None:
        if self.fmt == "parquet":
            await self._write_parquet()
            if self.parquet is not None:
                await self.ctx.run_blocking(self.parquet.close)
                self.parquet = None
            if self.parquet_stream is not None:  # completes the S3 upload
                await self.ctx.run_blocking(self.parquet_stream.close)
                self.parquet_stream = None
        else:
            await self._write_buffer()
            async with self._lock:
                if self.file is not None:
                    await self.ctx.run_blocking(self.file.close)
                    self.file = None
        if self.exactly_once and self.path is not None and self.write_path is not None:
            self.closed_parts.append((self.write_path, self.path))
        self.path = None

    # -- exactly-once: files become visible when their checkpoint completes --------

    async def pre_commit(self, checkpoint_id: int) -> Any:
        if not self.exactly_once:
            await self.flush()
            if not self.resumable or self.path is None:
                return None
            return {
                "path": self.path,
                "size": self.file_start + self.file_written,
                "records": self.file_records,
                "part": self.part,
            }
        if self.path is not None:
            await self._close_file()
            self.part += 1
        self.staged[checkpoint_id], self.closed_parts = self.closed_parts, []
        return {"files": list(self.staged[checkpoint_id]), "next_part": self.part}

    def _publish(self, files: list[tuple[str, str]]) -> None:
        storage = self.storage
        for pending, final in files:
            if storage.exists(pending):
                storage.replace(pending, final)
            elif not storage.exists(final):  # published before a restore: nothing to do
                raise ConnectorError(
                    f"file sink: the in-progress file {pending} of a completed checkpoint is "
                    f"gone, so {final} cannot be published and its records are missing; "
                    "something else removed it (another job cleaning this folder?). Give each "
                    "job its own folder, then restore from an earlier savepoint"
                )

    async def commit(self, checkpoint_id: int) -> None:
        for staged in sorted(c for c in self.staged if c <= checkpoint_id):
            await self.ctx.run_blocking(self._publish, self.staged[staged])
            del self.staged[staged]  # only once published: a failed commit is redone

    def _remove_strays(self, keep: frozenset[str] = frozenset(), beyond: int | None = None) -> None:
        """Remove this subtask's in-progress files of earlier runs (written after the
        checkpoint restored from), except ``keep`` (a restoring subtask publishes
        those); with ``beyond``, also those of this sink's subtasks ``beyond`` and up,
        which a rescale to fewer subtasks left without an owner."""
        storage = self.storage
        folder = storage.split(self.template)[0]
        stem = self.owner.rpartition("~")[0]  # ~<job>~<step>
        for name in storage.listdir(folder):
            if not name.endswith(IN_PROGRESS):
                continue
            path = storage.join(folder, name)
            if path in keep:
                continue
            # .<file name>.~<job>~<step>~<subtask>.<token>.inprogress
            prefix, _, token = name[: -len(IN_PROGRESS)].rpartition(".")
            owner_stem, _, index = prefix.rpartition("~")
            own = prefix.endswith("." + self.owner) and token != self.token
            gone = (
                beyond is not None
                and owner_stem.endswith("." + stem)
                and index.isdigit()
                and int(index) >= beyond
            )
            if own or gone:
                with contextlib.suppress(FileNotFoundError):
                    storage.remove(path)

    def _resume(self, states: list[Any]) -> None:
        """(At least once) the files the restored checkpoint was writing, each with the
        size it had then: the subtask that opens one again cuts it back to that size
        and appends to it. (After a rescale every subtask learns all of them; each
        file is opened by the one subtask whose name it is.)"""
        for state in states:
            if not isinstance(state, dict) or "size" not in state:
                continue  # a checkpoint of before resuming files was written
            numbers = [state.get(key) for key in ("size", "records", "part")]
            if not isinstance(state.get("path"), str) or not all(
                type(n) is int and n >= 0 for n in numbers
            ):
                raise ConnectorError(
                    f"file sink: the restored checkpoint holds a broken state for this sink "
                    f"({state!r:.200}); restore from another checkpoint"
                )
            # The furthest a file got (the dead-letter writer is shared by the subtasks,
            # each snapshot noting how far it was then).
            known = self.resumed.get(state["path"])
            if known is None or state["size"] >= known["size"]:
                self.resumed[state["path"]] = state
            self.part = max(self.part, state["part"])

    def _cut_back(self, path: str, size: int) -> None:
        """Drop what was written to ``path`` after the restored checkpoint (its
        records come again), and a last line a crash cut short."""
        if os.path.exists(path) and os.path.getsize(path) > size:
            os.truncate(path, size)

    async def restore(self, states: list[Any]) -> None:
        if not self.exactly_once:
            self._resume(states)
            return
        for state in states:
            await self.ctx.run_blocking(self._publish, [tuple(f) for f in state["files"]])
            self.part = max(self.part, state["next_part"])
        # Subtask 0 also clears what subtasks a rescale removed left behind.
        beyond = self.ctx.parallelism if self.ctx.subtask_index == 0 else None
        await self.ctx.run_blocking(self._remove_strays, frozenset(), beyond)

    async def adopt(self, states: list[Any]) -> None:
        if not self.exactly_once:
            self._resume(states)
        else:  # after a rescale: never reuse an old subtask's part names
            self.part = max([self.part, *(state["next_part"] for state in states)])
            # Its own leftovers of before the rescale, but not the files of the
            # checkpoint that subtask 0 is publishing meanwhile.
            pending = frozenset(f[0] for state in states for f in state["files"])
            await self.ctx.run_blocking(self._remove_strays, pending)

    async def flush(self) -> None:
        if self.exactly_once:  # end of input: the final commit
            if self.path is not None:
                await self._close_file()
                self.part += 1
            for staged in sorted(self.staged):
                await self.ctx.run_blocking(self._publish, self.staged.pop(staged))
            await self.ctx.run_blocking(self._publish, self.closed_parts)
            self.closed_parts = []
            return
        await self._flush_to_disk()

    async def _flush_to_disk(self) -> None:
        if self.fmt == "parquet":
            await self._write_parquet()
        else:
            await self._write_buffer()
            async with self._lock:
                if self.file is not None:
                    await self.ctx.run_blocking(self.file.flush)

    async def close(self) -> None:
        await cancel_and_wait(self._timer)
        self._timer = None
        if self.path is not None:
            await self._close_file()


def _arrow_table(rows: list[Any], schema: Any) -> tuple[Any, list[tuple[Any, Exception]]]:
    """``rows`` as an Arrow table of ``schema`` (None: inferred), and the rows that
    cannot be in it with the reason: a value of another type than its column's, one
    Arrow cannot hold, text with a lone surrogate. The batch converts in one call;
    only when that fails are rows taken one by one. A new file's schema is then
    inferred from the rows that convert alone, in order (a column null so far takes
    the type it gets next, an int column widens to float; a row whose types
    conflict with the rows before it is rejected)."""
    import pyarrow as pa

    problems = (pa.ArrowException, UnicodeError, TypeError, ValueError)
    try:
        return pa.Table.from_pylist(rows, schema=schema), []
    except problems:
        pass  # one by one
    if schema is None:
        for row in rows:
            try:
                alone = pa.Table.from_pylist([row]).schema
                schema = (
                    alone
                    if schema is None
                    else pa.unify_schemas([schema, alone], promote_options="permissive")
                )
            except problems:
                continue  # rejected below, with its reason
    good: list[Any] = []
    rejected: list[tuple[Any, Exception]] = []
    for row in rows:
        try:
            pa.Table.from_pylist([row], schema=schema)
        except problems as exc:
            rejected.append((row, exc))
            continue
        good.append(row)
    if not good:
        return None, rejected
    return pa.Table.from_pylist(good, schema=schema), rejected
