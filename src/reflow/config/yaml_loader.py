"""Safe YAML loading that remembers where every value came from.

``load_yaml`` returns the data with a map from each value's path to its line,
so that validation errors can say ``job.yaml:14: ...``. ``${NAME}`` and
``${NAME:-default}`` in strings are replaced from the environment (for
secrets); the paths of substituted values are recorded so they are never shown.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reflow.errors import ConfigError
from reflow.masking import mask_credentials

__all__ = ["LoadedYaml", "load_yaml", "load_yaml_text"]

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

Path_ = tuple[str | int, ...]

# Limits on one YAML document (job files also arrive through the API). A job
# file is a few hundred nodes; aliases can make a 400-byte text expand to
# billions ("billion laughs"), so what counts is the expanded tree.
MAX_YAML_CHARS = 1_000_000
# Substituted values shorter than this are not hidden in messages: hiding "1" or
# "db" would garble the message and protect nothing.
MIN_SECRET_CHARS = 4
MAX_YAML_NODES = 20_000
MAX_YAML_DEPTH = 50


@dataclass(slots=True)
class LoadedYaml:
    """YAML data, its file, the line of every path, and the paths holding secrets."""

    data: Any
    file: str
    lines: dict[Path_, int] = field(default_factory=dict)
    secret_paths: set[Path_] = field(default_factory=set)

    def line_of(self, path: Path_) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        normalized = {_normalize(p): line for p, line in self.lines.items()}
        key = _normalize(tuple(path))
        while key:
            if key in normalized:
                return normalized[key]
            key = key[:-1]
        return self.lines.get((), None)

    def error(self, path: Path_, message: str) -> ConfigError:
        """A ConfigError at ``path``; values that came from ``${VAR}`` are shown as ***."""
        dotted = ".".join(str(p) for p in path) or None
        return ConfigError(
            self.hide_secrets(message), file=self.file, line=self.line_of(path), path=dotted
        )

    def hide_secrets(self, text: str) -> str:
        """``text`` with every value substituted from the environment replaced by ***."""
        for secret_path in self.secret_paths:
            value: Any = self.data
            for part in secret_path:
                try:
                    value = value[part]
                except (KeyError, IndexError, TypeError):
                    value = None
                    break
            if isinstance(value, str) and len(value) >= MIN_SECRET_CHARS:
                text = text.replace(value, "***")
        return mask_credentials(text)


def _normalize(path: Path_) -> Path_:
    # batchSize, batch_size and batch-size name the same key.
    return tuple(
        p.replace("_", "").replace("-", "").lower() if isinstance(p, str) else p for p in path
    )


def _walk(node: yaml.Node, path: Path_, loaded: LoadedYaml) -> None:
    if len(loaded.lines) >= MAX_YAML_NODES:
        raise ConfigError(
            f"the document expands to more than {MAX_YAML_NODES} values (through aliases "
            "or sheer size); a job file is far smaller: remove the repeated '*' aliases",
            file=loaded.file,
            line=node.start_mark.line + 1,
        )
    if len(path) > MAX_YAML_DEPTH:
        raise ConfigError(
            f"the document nests deeper than {MAX_YAML_DEPTH} levels; flatten it",
            file=loaded.file,
            line=node.start_mark.line + 1,
        )
    loaded.lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(
                    f"key {key!r} appears twice (first on line {seen[key]}); keep one",
                    file=loaded.file,
                    line=line,
                )
            seen[key] = line
            _walk(value_node, (*path, key), loaded)
            loaded.lines[(*path, key)] = line
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), loaded)


def _substitute(
    value: Any, path: Path_, loaded: LoadedYaml, env: Mapping[str, str], restricted: bool = False
) -> Any:
    if isinstance(value, str) and "${" in value:

        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            if restricted:
                raise loaded.error(
                    path,
                    f"environment variable {name} is not one that submitted jobs may read; "
                    "list it in security.env of the server's system config",
                )
            raise loaded.error(
                path,
                f"environment variable {name} is not set; export it, or write "
                f"${{{name}:-default}} to give a default",
            )

        loaded.secret_paths.add(path)
        return _ENV.sub(replace, value)
    if isinstance(value, dict):
        return {
            k: _substitute(v, (*path, str(k)), loaded, env, restricted) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_substitute(v, (*path, i), loaded, env, restricted) for i, v in enumerate(value)]
    return value


def load_yaml_text(
    text: str,
    file: str = "<string>",
    env: Mapping[str, str] | None = None,
    *,
    restricted_env: bool = False,
) -> LoadedYaml:
    """Parse ``text`` safely; raises ConfigError with file and line on bad YAML.

    ``env`` replaces the environment for ``${VAR}``; with ``restricted_env`` a
    variable missing from it is reported as not allowed (API submissions).
    """
    loaded = LoadedYaml(None, file)
    if len(text) > MAX_YAML_CHARS:
        raise ConfigError(
            f"the document is {len(text)} characters; the limit is {MAX_YAML_CHARS}", file=file
        )
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                raise ConfigError("the file is empty; see docs/yaml.md for the format", file=file)
            _walk(node, (), loaded)
            data = loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(
            f"invalid YAML: {problem} (check indentation, colons and quotes)", file=file, line=line
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", file=file) from None
    except RecursionError:
        raise ConfigError(
            f"the document nests too deeply to read (more than {MAX_YAML_DEPTH} levels "
            "are refused); flatten it",
            file=file,
        ) from None
    loaded.data = _substitute(data, (), loaded, os.environ if env is None else env, restricted_env)
    return loaded


def load_yaml(path: str | Path, env: Mapping[str, str] | None = None) -> LoadedYaml:
    """Read and parse a YAML file; raises ConfigError if it is missing or invalid."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"no such file (working directory {os.getcwd()})", file=str(path)
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=str(path)) from None
    return load_yaml_text(text, str(path), env)
