"""Connector options: pydantic models that validate and describe themselves.

Option names are snake_case; the seed's camelCase spellings (``batchSize``,
``flushInterval``) are accepted too. Durations take seconds or strings such
as ``500ms``, ``5s``, ``2m``, ``5 minutes``, ``1h``, or a ``timedelta``.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from reflow.connectors.base import Connector
from reflow.errors import ConnectorConfigError
from reflow.graph.durations import seconds

__all__ = [
    "ConfigDescriptor",
    "ConnectorOptions",
    "Duration",
    "OptionDescriptor",
    "OptionsConnector",
    "parse_duration",
]

M = TypeVar("M", bound=BaseModel)


def parse_duration(value: Any) -> Any:
    """``5`` / ``"5s"`` / ``"500ms"`` / ``"2m"`` / ``"5 minutes"`` / ``timedelta`` -> seconds."""
    if isinstance(value, bool | int | float | str | timedelta):
        return seconds(value)
    return value


Duration = Annotated[float, BeforeValidator(parse_duration)]


class ConnectorOptions(BaseModel):
    """Base of every connector's options model."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        alias_generator=to_camel,
        frozen=True,
        arbitrary_types_allowed=True,
    )
    secret_fields: ClassVar[frozenset[str]] = frozenset()


@dataclass(frozen=True, slots=True)
class OptionDescriptor:
    name: str
    type: str
    required: bool
    default: Any
    description: str
    secret: bool
    roles: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ConfigDescriptor:
    """What ``reflow connectors NAME`` prints."""

    connector: str
    description: str
    options: tuple[OptionDescriptor, ...]


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) or str(annotation)
    return text.replace("typing.", "").replace("NoneType", "None")


def _option_names(model: type[BaseModel]) -> dict[str, str]:
    """Each option by its name, its camelCase spelling (the seed's) and its alias."""
    names: dict[str, str] = {}
    for name, info in model.model_fields.items():
        names[name] = names[to_camel(name)] = name
        if info.alias:
            names[info.alias] = name
    return names


def _describe(model: type[ConnectorOptions], role: str) -> list[OptionDescriptor]:
    out = []
    for name, info in model.model_fields.items():
        out.append(
            OptionDescriptor(
                name=name,
                type=_type_name(info.annotation),
                required=info.is_required(),
                default=None if info.is_required() else info.default,
                description=info.description or "",
                secret=name in model.secret_fields,
                roles=(role,),
            )
        )
    return out


class OptionsConnector(Connector):
    """A Connector whose options are pydantic models (``source_options``/``sink_options``)."""

    source_options: ClassVar[type[ConnectorOptions] | None] = None
    sink_options: ClassVar[type[ConnectorOptions] | None] = None

    def _model(self, role: str) -> type[ConnectorOptions]:
        model = self.source_options if role == "source" else self.sink_options
        if model is None:
            raise ConnectorConfigError(
                self.type, f"has no {role}; see `reflow connectors {self.type}` for what it offers"
            )
        return model

    def parse(self, options: Mapping[str, Any], role: str, model: type[M]) -> M:
        """Validate ``options`` into ``model``, raising ConnectorConfigError with the fix."""
        names = _option_names(model)
        self._check_names(options, names, role, sorted(model.model_fields))
        given: dict[str, str] = {}
        for key in options:
            if names[key] in given:
                raise ConnectorConfigError(
                    self.type,
                    f"option {names[key]!r} is given twice ({given[names[key]]!r} and {key!r})",
                    option=str(key),
                )
            given[names[key]] = key
        try:
            return model.model_validate({names[key]: value for key, value in options.items()})
        except ValidationError as exc:
            problems = []
            first_option = None
            for err in exc.errors():
                if first_option is None and err["loc"]:
                    first_option = given.get(str(err["loc"][0]))
                message = err["msg"].removeprefix("Value error, ")
                if not err["loc"]:  # a check across options: its message says it all
                    problems.append(message)
                    continue
                loc = ".".join(str(p) for p in err["loc"])
                shown = "" if err["type"] == "missing" else f" (got {err.get('input')!r})"
                problems.append(f"option {loc!r}: {message}{shown}")
            raise ConnectorConfigError(
                self.type, f"{role}: " + "; ".join(problems), option=first_option
            ) from None

    def _check_names(
        self, options: Mapping[str, Any], names: Mapping[str, str], role: str, listed: list[str]
    ) -> None:
        for key in options:
            if key not in names:
                close = difflib.get_close_matches(str(key), sorted(names), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConnectorConfigError(
                    self.type,
                    f"unknown {role} option {key!r}{hint} (options: {', '.join(listed)})",
                    option=str(key),
                )

    def check_option_names(self, options: Mapping[str, Any]) -> None:
        """Refuse option names neither the source nor the sink knows (when a spec is
        made, before the job is built: a typo fails where it was written)."""
        names: dict[str, str] = {}
        listed: set[str] = set()
        for model in (self.source_options, self.sink_options):
            if model is not None:
                names |= _option_names(model)
                listed |= set(model.model_fields)
        roles = " or ".join(
            r for r, m in (("source", self.source_options), ("sink", self.sink_options)) if m
        )
        self._check_names(options, names, roles, sorted(listed))

    def validate_config(self, options: Mapping[str, Any], role: str) -> None:
        self.parse(options, role, self._model(role))

    def config_descriptor(self) -> ConfigDescriptor:
        merged: dict[str, OptionDescriptor] = {}
        for role, model in (("source", self.source_options), ("sink", self.sink_options)):
            if model is None:
                continue
            for option in _describe(model, role):
                if option.name in merged:
                    option = _merge_roles(merged[option.name], role)
                merged[option.name] = option
        return ConfigDescriptor(self.type, self.description, tuple(merged.values()))


def _merge_roles(prev: OptionDescriptor, role: str) -> OptionDescriptor:
    return OptionDescriptor(
        prev.name,
        prev.type,
        prev.required,
        prev.default,
        prev.description,
        prev.secret,
        (*prev.roles, role),
    )
