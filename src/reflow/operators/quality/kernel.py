"""A pre-check of a batch against the record rules that can be written inline.

Most batches break no rule. For those, one generated loop that reads each field
once per record and tests every inlinable rule's condition on it is about half
the cost of the rules' column-at-a-time checks (which extract a column per field
and walk it once per rule). When the loop says the whole batch passes, those
rules count it as passed and are done; when it finds anything (or meets a
record it cannot read), the batch goes through the rules' exact checks, which
find each violating record and say why. So the pre-check may be stricter than
the rules, never looser: it only ever answers "all pass" when they would.

The source is written by reflow from the fixed templates below and nothing a
job file gives reaches it as text: field names, bounds, value sets and types
are bound as values under generated names (``_b0``) and read from there, as the
SQL kernels do (``reflow/table/kernels.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["Inliner", "precheck"]


class Inliner:
    """What a rule's ``inline`` writes its conditions with: ``field(name)`` is the
    local holding the current record's value of ``name``, ``bind(value)`` the
    name a value is read from."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.fields: dict[str, str] = {}
        self.types: dict[str, frozenset[type]] = {}
        """The types each field is held to so far (by earlier conditions)."""

    def bind(self, value: Any) -> str:
        name = f"_b{len(self.values)}"
        self.values[name] = value
        return name

    def typed(self, name: str, kinds: frozenset[type]) -> str:
        """A condition: the field is None or of exactly one of ``kinds`` (always
        true when an earlier condition already held it to some of them)."""
        held = self.types.get(name)
        if held is not None and held <= kinds:
            return "True"
        self.types[name] = kinds if held is None else held & kinds
        value = self.field(name)
        if len(kinds) == 1:
            (kind,) = kinds
            return f"_type({value}) is {self.bind(kind)} or {value} is None"
        return f"_type({value}) in {self.bind(kinds | {type(None)})}"

    def field(self, name: str) -> str:
        local = self.fields.get(name)
        if local is None:
            local = self.fields[name] = f"_v{len(self.fields)}"
        return local


def precheck(
    write: Sequence[Callable[[Inliner], list[str] | None]],
) -> Callable[[list[Any]], bool] | None:
    """The pre-check of the rules whose ``inline`` writers are ``write`` (None for
    none): ``check(batch)`` is True only if every record passes every condition."""
    inliner = Inliner()
    conditions = [c for writer in write for c in writer(inliner) or () if c != "True"]
    if not conditions:
        return None
    reads = "".join(
        f"            {local} = _r[{inliner.bind(name)}]\n"
        for name, local in list(inliner.fields.items())
    )
    test = " and ".join(f"({c})" for c in conditions)
    # Bound values as defaults: locals read faster than globals in the loop.
    defaults = "".join(f", {name}={name}" for name in ("_type", *inliner.values))
    source = (
        f"def _check(batch{defaults}):\n"
        "    try:\n"
        "        for _r in batch:\n"
        f"{reads}"
        f"            if not ({test}):\n"
        "                return False\n"
        "    except Exception:\n"
        "        return False\n"
        "    return True\n"
    )
    namespace: dict[str, Any] = {
        "__builtins__": {"Exception": Exception},
        "_type": type,
        **inliner.values,
    }
    # reflow's own template source: no text from the job is in it (module docstring)
    exec(compile(source, "<reflow quality pre-check>", "exec"), namespace)
    check: Callable[[list[Any]], bool] = namespace["_check"]
    return check
