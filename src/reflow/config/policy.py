"""What a job submitted through the REST API may touch (``security:`` of the system config).

Whoever holds the API token can submit jobs; without a policy a job could read
and write any file the server user can, reach any host, and read the server's
environment through ``${VAR}``. ``SubmissionPolicy`` is checked on the
*validated* job (after YAML and pydantic coercion), before anything is
imported, opened or connected:

- functions only from ``allowed_modules`` (and defined there);
- file paths (sources, sinks, dead letters, checkpoints, Avro schema files,
  SQLite databases) only under ``path_roots``;
- network addresses only those ``hosts`` allows for the connector;
- ``${VAR}`` only for the variable names in ``env``.

Jobs from ``--jobs-dir`` and ``reflow submit`` are the operator's own files
and are not checked: writing them needs access to the server's machine.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from reflow.errors import ConfigError
from reflow.masking import mask_credentials

__all__ = ["SUBMITTED", "SubmissionPolicy", "endpoints_of"]

# The source folder recorded for jobs that came through the API: their stored
# text is loaded again under the policy at every run.
SUBMITTED = "<submitted>"

# Ports of URL schemes that leave theirs out.
DEFAULT_PORTS = {
    "http": 80, "https": 443, "ws": 80, "wss": 443, "redis": 6379, "rediss": 6380,
    "amqp": 5672, "amqps": 5671, "nats": 4222, "tls": 4222, "mqtt": 1883,
    "postgresql": 5432, "postgres": 5432, "mysql": 3306, "mariadb": 3306, "s3": 443,
}  # fmt: skip

# Option names that hold a file path or a folder.
_PATH_OPTIONS = ("path", "avro_schema", "folder", "directory")
# Option names that hold one URL, or a comma-separated list of them / of host:port.
_URL_OPTIONS = ("url", "servers", "bootstrap_servers", "s3_endpoint", "endpoint")


@dataclass(frozen=True, slots=True)
class SubmissionPolicy:
    """Limits on API-submitted jobs; the defaults allow nothing outside the job itself.

    Attributes:
        allowed_modules: modules whose functions a job may name.
        path_roots: folders (or ``s3://bucket/prefix``) under which paths may lie.
        hosts: connector name (or ``*`` for any) -> ``host`` or ``host:port``
            patterns (``fnmatch``: ``*.internal:5432``) it may reach.
        env: environment variable names ``${VAR}`` may read.
        enabled: False trusts every token holder like the server user itself.
    """

    allowed_modules: tuple[str, ...] = ()
    path_roots: tuple[str, ...] = ()
    hosts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    env: tuple[str, ...] = ()
    enabled: bool = True

    def environment(self, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """The variables ``${VAR}`` may expand to: only the allowed names."""
        source = os.environ if environ is None else environ
        return {name: source[name] for name in self.env if name in source}

    def check_path(self, path: str, where: str) -> None:
        """Raise ConfigError unless ``path`` lies under one of ``path_roots``."""
        if path.startswith("s3://"):
            if any(_under_s3(path, root) for root in self.path_roots if root.startswith("s3://")):
                return
        else:
            real = os.path.realpath(_fixed_prefix(os.path.normpath(path)))
            for root in self.path_roots:
                if root.startswith("s3://"):
                    continue
                base = os.path.realpath(root)
                if real == base or real.startswith(base.rstrip(os.sep) + os.sep):
                    return
        roots = ", ".join(self.path_roots) or "none configured"
        raise ConfigError(
            f"{where}: path {path!r} is outside the folders submitted jobs may use ({roots}); "
            "add its folder to security.path_roots of the server's system config"
        )

    def check_address(self, connector: str, host: str, port: int | None, where: str) -> None:
        """Raise ConfigError unless ``connector`` may reach ``host:port``."""
        patterns = (*self.hosts.get(connector, ()), *self.hosts.get("*", ()))
        target = f"{host}:{port}" if port is not None else host
        for pattern in patterns:
            if ":" in pattern.rsplit("]", 1)[-1]:
                if fnmatch.fnmatchcase(target, pattern):
                    return
            elif fnmatch.fnmatchcase(host, pattern):
                return
        allowed = ", ".join(patterns) or "none configured"
        raise ConfigError(
            f"{where}: connector {connector!r} may not reach {target} (allowed: {allowed}); "
            f"add it to security.hosts.{connector} of the server's system config"
        )

    def check_connector(self, connector: str, options: Mapping[str, Any], where: str) -> None:
        """Check every path and address in a connector's (validated) options."""
        paths, addresses = endpoints_of(connector, options)
        for path in paths:
            self.check_path(path, where)
        for host, port in addresses:
            self.check_address(connector, host, port, where)


def _fixed_prefix(path: str) -> str:
    """The part of a glob before its first wildcard (what the pattern can reach)."""
    for index, char in enumerate(path):
        if char in "*?[":
            return os.path.dirname(path[:index]) or "."
    return path


def _under_s3(path: str, root: str) -> bool:
    root = root.rstrip("/")
    fixed = _fixed_prefix(posixpath.normpath(path.removeprefix("s3://")))
    root = root.removeprefix("s3://")
    return fixed == root or fixed.startswith(root + "/")


def _split_addresses(value: str) -> Iterable[tuple[str, int | None, str]]:
    """(host, port, scheme) of each comma-separated URL or host:port."""
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        if "://" not in part:
            part = "tcp://" + part
        url = urlsplit(part)
        scheme = url.scheme.split("+")[0].lower()
        try:
            port = url.port
        except ValueError:
            raise ConfigError(f"address {mask_credentials(part)!r} has an invalid port") from None
        yield url.hostname or "", port or DEFAULT_PORTS.get(scheme), scheme


def endpoints_of(
    connector: str, options: Mapping[str, Any]
) -> tuple[list[str], list[tuple[str, int | None]]]:
    """The file paths and (host, port) addresses a connector's options name."""
    paths: list[str] = []
    addresses: list[tuple[str, int | None]] = []
    for name in _PATH_OPTIONS:
        value = options.get(name)
        if isinstance(value, str) and value and not value.lstrip().startswith("{"):
            if name == "path" and connector in ("http", "webhook", "websocket"):
                continue  # an URL path, not a file
            paths.append(value)
    for name in _URL_OPTIONS:
        value = options.get(name)
        if not isinstance(value, str) or not value:
            continue
        if name == "url" and value.startswith("sqlite"):
            # sqlite:///relative.db, sqlite:////absolute.db, sqlite:// (in memory)
            database = value.split(":///", 1)[1].split("?", 1)[0] if ":///" in value else ""
            if database and database != ":memory:":
                paths.append(database)
            continue
        for host, port, _ in _split_addresses(value):
            addresses.append((host, port))
    listen = options.get("host")
    if isinstance(listen, str) and listen:
        port = options.get("port")
        addresses.append((listen, port if isinstance(port, int) else None))
    file_path = options.get("path")
    if (
        isinstance(file_path, str)
        and file_path.startswith("s3://")
        and not options.get("s3_endpoint")
    ):
        addresses.append(("s3.amazonaws.com", 443))
    return paths, addresses
