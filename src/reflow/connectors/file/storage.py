"""Where the file connector's files live: the local disk or S3 (``s3://bucket/key``).

``storage_for(path, options)`` returns a ``Storage`` whose blocking methods the
reader and writer call in the I/O pool. Local files use the operating system
directly. S3 goes through pyarrow's S3 filesystem (already a dependency for
Parquet): objects are read with ranged GETs, written through multipart uploads
(an object appears when its writer closes it), and "renamed" by copy and
delete. Credentials come from the options or the usual AWS sources
(``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, profiles, instance roles);
``s3_endpoint`` (or ``AWS_ENDPOINT_URL``) points at an S3-compatible server.
"""

from __future__ import annotations

import fnmatch
import glob
import io
import os
import posixpath
from typing import IO, Any, Protocol

from reflow.errors import ConnectorError

__all__ = ["LocalStorage", "S3Storage", "Storage", "storage_for"]

# The file object's own buffer for local writes, allocated once per file.
FILE_BUFFER_BYTES = 1024 * 1024


class Storage(Protocol):
    remote: bool

    def list_files(self, pattern: str, role: str) -> list[str]: ...
    def size(self, path: str) -> int: ...
    def open_read(self, path: str) -> Any: ...
    def open_text(self, path: str, encoding: str) -> IO[str]:
        """The file as text; bytes not valid in ``encoding`` are read as lone
        surrogates (``surrogateescape``), for the reader to reject their line."""
        ...

    def open_write(self, path: str, append: bool) -> Any: ...
    def exists(self, path: str) -> bool: ...
    def makedirs(self, folder: str) -> None: ...
    def replace(self, source: str, target: str) -> None: ...
    def listdir(self, folder: str) -> list[str]: ...
    def remove(self, path: str) -> None: ...
    def split(self, path: str) -> tuple[str, str]: ...
    def join(self, folder: str, name: str) -> str: ...


def storage_for(path: str, options: Any) -> Storage:
    if path.startswith("s3://"):
        return S3Storage(options)
    return LocalStorage()


class LocalStorage:
    remote = False

    def list_files(self, pattern: str, role: str) -> list[str]:
        if os.path.isdir(pattern):
            files = sorted(
                os.path.join(pattern, f)
                for f in os.listdir(pattern)
                if os.path.isfile(os.path.join(pattern, f)) and not f.startswith(".")
            )
        elif glob.has_magic(pattern):
            files = sorted(f for f in glob.glob(pattern, recursive=True) if os.path.isfile(f))
        else:
            files = [pattern] if os.path.isfile(pattern) else []
        if not files:
            raise ConnectorError(
                f"file {role}: no file matches {pattern!r} (working directory {os.getcwd()}); "
                "check the path, or use a glob such as 'data/*.jsonl'"
            )
        return files

    def size(self, path: str) -> int:
        return os.path.getsize(path)

    def open_read(self, path: str) -> Any:
        return open(path, "rb", buffering=0)

    def open_text(self, path: str, encoding: str) -> IO[str]:
        return open(path, encoding=encoding, errors="surrogateescape", newline="")

    def open_write(self, path: str, append: bool) -> Any:
        return open(path, "ab" if append else "wb", buffering=FILE_BUFFER_BYTES)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def makedirs(self, folder: str) -> None:
        if folder:
            os.makedirs(folder, exist_ok=True)

    def replace(self, source: str, target: str) -> None:
        os.replace(source, target)

    def listdir(self, folder: str) -> list[str]:
        return os.listdir(folder or ".") if os.path.isdir(folder or ".") else []

    def remove(self, path: str) -> None:
        os.remove(path)

    def split(self, path: str) -> tuple[str, str]:
        return os.path.split(path)

    def join(self, folder: str, name: str) -> str:
        return os.path.join(folder, name)


class S3Storage:
    remote = True

    def __init__(self, options: Any) -> None:
        from pyarrow import fs

        endpoint = getattr(options, "s3_endpoint", None) or os.environ.get("AWS_ENDPOINT_URL")
        kwargs: dict[str, Any] = {
            "region": getattr(options, "s3_region", None)
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or "us-east-1",
            "connect_timeout": 5,
            "request_timeout": 10,
            "retry_strategy": fs.AwsStandardS3RetryStrategy(max_attempts=4),
        }
        if endpoint:
            scheme, _, host = endpoint.rpartition("://")
            kwargs["endpoint_override"] = host.rstrip("/")
            kwargs["scheme"] = scheme or "https"
        access_key = getattr(options, "s3_access_key", None)
        if access_key:
            kwargs["access_key"] = access_key
            kwargs["secret_key"] = getattr(options, "s3_secret_key", None) or ""
        self.endpoint = endpoint or "AWS S3"
        self.fs = fs.S3FileSystem(**kwargs)

    @staticmethod
    def _key(path: str) -> str:
        return path.removeprefix("s3://")

    def _error(self, action: str, path: str, exc: OSError) -> ConnectorError:
        return ConnectorError(
            f"file connector: {action} {path} on {self.endpoint} failed: {exc}. Check the "
            "bucket, the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or s3_access_key) "
            "and s3_endpoint"
        )

    def list_files(self, pattern: str, role: str) -> list[str]:
        from pyarrow import fs

        key = self._key(pattern)
        try:
            if glob.has_magic(key):
                magic = min(key.index(c) for c in "*?[" if c in key)
                base = key[:magic].rpartition("/")[0]
                infos = self.fs.get_file_info(
                    fs.FileSelector(base, recursive=True, allow_not_found=True)
                )
                # fnmatch's * also crosses "/": on S3, a pattern matches whole keys.
                found = [
                    i.path
                    for i in infos
                    if i.type == fs.FileType.File and fnmatch.fnmatchcase(i.path, key)
                ]
            else:
                info = self.fs.get_file_info(key)
                if info.type == fs.FileType.File:
                    found = [key]
                else:
                    infos = self.fs.get_file_info(
                        fs.FileSelector(key.rstrip("/"), recursive=True, allow_not_found=True)
                    )
                    found = [i.path for i in infos if i.type == fs.FileType.File]
        except OSError as exc:
            raise self._error("listing", pattern, exc) from exc
        found = [p for p in found if not posixpath.basename(p).startswith(".")]
        if not found:
            raise ConnectorError(
                f"file {role}: no object matches {pattern!r} on {self.endpoint}; check the "
                "bucket and prefix, or use a glob such as 's3://bucket/data/*.jsonl'"
            )
        return sorted(f"s3://{p}" for p in found)

    def size(self, path: str) -> int:
        size = self.fs.get_file_info(self._key(path)).size
        return int(size or 0)

    def open_read(self, path: str) -> Any:
        try:
            return self.fs.open_input_file(self._key(path))
        except OSError as exc:
            raise self._error("reading", path, exc) from exc

    def open_text(self, path: str, encoding: str) -> IO[str]:
        try:
            stream = self.fs.open_input_stream(self._key(path))
        except OSError as exc:
            raise self._error("reading", path, exc) from exc
        return io.TextIOWrapper(stream, encoding=encoding, errors="surrogateescape", newline="")

    def open_write(self, path: str, append: bool) -> Any:
        if append:
            raise ConnectorError(
                f"file sink: S3 objects cannot be appended to ({path}); use mode: overwrite "
                "with rolling files"
            )
        try:
            return self.fs.open_output_stream(self._key(path))
        except OSError as exc:
            raise self._error("writing", path, exc) from exc

    def exists(self, path: str) -> bool:
        from pyarrow import fs

        return bool(self.fs.get_file_info(self._key(path)).type != fs.FileType.NotFound)

    def makedirs(self, folder: str) -> None:
        """S3 has no folders: a key's prefix exists once an object has it."""

    def replace(self, source: str, target: str) -> None:
        self.fs.move(self._key(source), self._key(target))

    def listdir(self, folder: str) -> list[str]:
        from pyarrow import fs

        infos = self.fs.get_file_info(fs.FileSelector(self._key(folder), allow_not_found=True))
        return [posixpath.basename(i.path) for i in infos if i.type == fs.FileType.File]

    def remove(self, path: str) -> None:
        self.fs.delete_file(self._key(path))

    def split(self, path: str) -> tuple[str, str]:
        return posixpath.split(path)

    def join(self, folder: str, name: str) -> str:
        return posixpath.join(folder, name)
