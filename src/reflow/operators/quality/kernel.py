"""A pre-check of a batch against the record rules that can be written inline.

Most batches break no rule. For those, one generated loop that reads each
record's fields (a subscript each, the names bound as locals) and tests every
inlinable rule's condition on them is about half the cost of the rules'
column-at-a-time checks (which extract a column per field and walk it once per
rule). When the loop says the whole batch passes, those rules count it as passed
and are done; when it finds anything (or meets a record it cannot read), the
batch goes through the rules' exact checks, which find each violating record and
say why. So the pre-check may be stricter than the rules, never looser: it only
ever answers "all pass" when they would.

Typed rows (decoded from a declared schema, ``reflow/connectors/typed.py``) have
their columns read as attributes, which costs a tenth of calling their
``row[name]``: the loop has a second form for a batch whose first record is
such a row.

A rule that judges a column at once (a regex over the batch's values joined) has
the loop gather that column and its test run once after the loop.

Conditions a field's other rules already imply are left out: a field that must
not be null and must be an int is tested once, ``type(v) is int``.

The source is written by reflow from the fixed templates below and nothing a
job file gives reaches it as text but plain identifiers (ASCII letters, digits
and underscores, not a keyword, not starting with ``_``) read as a row's
attributes: other field names, bounds, value sets and types are bound as values
under generated names (``_b0``) and read from there, as the SQL kernels do
(``reflow/table/kernels.py``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any

from reflow.operators.base import decoded_key, is_plain_identifier, is_row

__all__ = ["Inliner", "precheck"]

_LOCAL = re.compile(r"\b_v\d+\b")
"""A field's local in the generated source (``Inliner.field``)."""


class Inliner:
    """What a rule's ``inline`` writes its conditions with: ``field(name)`` is the
    local holding the current record's value of ``name``, ``bind(value)`` the
    name a value is read from, ``column(name)`` the list of the batch's values
    of ``name`` for a test ``after`` the loop."""

    def __init__(self, required: frozenset[str] = frozenset()) -> None:
        self.values: dict[str, Any] = {}
        self.fields: dict[str, str] = {}
        self.columns: dict[str, str] = {}
        self.tests: list[str] = []
        """Conditions on the whole batch, tested after the loop."""
        self.types: dict[str, frozenset[type]] = {}
        """The types each field is held to so far (by earlier conditions)."""
        self.required = required
        """Fields some rule of the pre-check holds to be not null."""
        self.not_null_fields: set[str] = set()

    def bind(self, value: Any) -> str:
        name = f"_b{len(self.values)}"
        self.values[name] = value
        return name

    def nullable(self, name: str) -> bool:
        """False when a rule of the pre-check already holds the field not null."""
        return name not in self.required

    def not_null(self, name: str) -> str:
        """A condition: the field is not None (implied when a type held it)."""
        self.not_null_fields.add(name)
        if name in self.required and name in self.types:
            return "True"
        return f"{self.field(name)} is not None"

    def typed(self, name: str, kinds: frozenset[type]) -> str:
        """A condition: the field is of exactly one of ``kinds``, or None unless a
        rule holds it not null (always true when an earlier condition already
        held it to some of them)."""
        held = self.types.get(name)
        if held is not None and held <= kinds:
            return "True"
        self.types[name] = kinds if held is None else held & kinds
        value = self.field(name)
        if name in self.required:
            if len(kinds) == 1:
                (kind,) = kinds
                return f"_type({value}) is {self.bind(kind)}"
            return f"_type({value}) in {self.bind(kinds)}"
        if len(kinds) == 1:
            (kind,) = kinds
            return f"_type({value}) is {self.bind(kind)} or {value} is None"
        return f"_type({value}) in {self.bind(kinds | {type(None)})}"

    def field(self, name: str) -> str:
        local = self.fields.get(name)
        if local is None:
            local = self.fields[name] = f"_v{len(self.fields)}"
        return local

    def column(self, name: str) -> str:
        """The list the loop gathers the field's values into."""
        local = self.columns.get(name)
        if local is None:
            self.field(name)
            local = self.columns[name] = f"_c{len(self.columns)}"
        return local

    def after(self, test: str) -> None:
        """A condition on the whole batch (of ``column`` lists), tested once."""
        self.tests.append(test)


def precheck(
    write: Sequence[Callable[[Inliner], list[str] | None]],
) -> Callable[[list[Any]], bool] | None:
    """The pre-check of the rules whose ``inline`` writers are ``write`` (None for
    none): ``check(batch)`` is True only if every record passes every condition."""
    probe = Inliner()
    for writer in write:
        writer(probe)
    inliner = Inliner(frozenset(probe.not_null_fields))
    conditions = [c for writer in write for c in writer(inliner) or () if c != "True"]
    if not conditions and not inliner.tests:
        return None
    names = list(inliner.fields)
    gather = "".join(f"    {column} = []\n" for column in inliner.columns.values())
    test = " and ".join(f"({c})" for c in conditions)
    # list.append called as a method: the interpreter's own path for it (about 70
    # instructions a record less than calling a bound ``append`` kept in a local)
    body = "".join(
        f"{column}.append({inliner.fields[name]})\n" for name, column in inliner.columns.items()
    )
    if conditions:
        body += f"if not ({test}):\n    return False\n"
    after = " and ".join(f"({t})" for t in inliner.tests) or "True"
    # A field the loop uses once is read where it is used, not into a local first.
    uses = Counter(_LOCAL.findall(body))
    once = [name for name in names if uses[inliner.fields[name]] == 1]

    def loop(read: Callable[[str], str], indent: int) -> str:
        """The loop's body, each field read by ``read(name)``."""
        exprs = {inliner.fields[name]: read(name) for name in once}
        text = _LOCAL.sub(lambda found: exprs.get(found[0], found[0]), body)
        reads = "".join(f"{inliner.fields[n]} = {read(n)}\n" for n in names if n not in once)
        return _indent(reads + (text or "pass\n"), indent)

    if all(is_plain_identifier(name) for name in names):
        rows = loop(lambda name: f"_r.{name}", 16)
    else:
        # One name: the getter gives the value itself; more: a tuple to unpack.
        target = ", ".join(inliner.fields[name] for name in names)
        getter = inliner.bind(attrgetter(*names))
        rows = _indent(f"{target} = {getter}(_r)\n" + (body or "pass\n"), 16)
    # A subscript per field, its name a bound local: cheaper than one itemgetter
    # call making a tuple to unpack (about 250 instructions a record for six); the
    # name the decoder's own key object (about 60 instructions a field less).
    keys = {name: inliner.bind(decoded_key(name)) for name in names}
    subscripts = loop(lambda name: f"_r[{keys[name]}]", 16)
    # A dict without one of the fields (an optional one) stops the one-call read with
    # KeyError: the batch is read again field by field, a missing field as null.
    gets = {name: inliner.bind(name) for name in names}
    getting = loop(lambda name: f"_r.get({gets[name]})", 12)
    # Bound values as defaults: locals read faster than globals in the loop.
    defaults = "".join(f", {name}={name}" for name in ("_type", "_is_row", *inliner.values))
    source = (
        f"def _check(batch{defaults}):\n"
        f"{gather}"
        "    try:\n"
        "        if _is_row(batch[0]):\n"
        "            for _r in batch:\n"
        f"{rows}"
        "        else:\n"
        "            for _r in batch:\n"
        f"{subscripts}"
        f"        return bool({after})\n"
        "    except KeyError:\n"
        "        pass\n"
        "    except Exception:\n"
        "        return False\n"
        f"{gather}"
        "    try:\n"
        "        for _r in batch:\n"
        f"{getting}"
        f"        return bool({after})\n"
        "    except Exception:\n"
        "        return False\n"
    )
    namespace: dict[str, Any] = {
        "__builtins__": {"Exception": Exception, "KeyError": KeyError, "bool": bool},
        "_type": type,
        "_is_row": is_row,
        **inliner.values,
    }
    # reflow's own template source: of the job's text, plain identifiers only (docstring)
    exec(compile(source, "<reflow quality pre-check>", "exec"), namespace)
    check_batch: Callable[[list[Any]], bool] = namespace["_check"]
    return check_batch


def _indent(text: str, spaces: int) -> str:
    pad = " " * spaces
    return "".join(pad + line + "\n" for line in text.splitlines())
