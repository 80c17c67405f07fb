"""SQL scalar expressions compiled into Python closures, with SQL's NULL semantics.

An expression parsed by sqlglot becomes a tree of small closures, one per
node, each taking a row (a dict) and returning a value; nothing is evaluated
from text. NULL is ``None``: arithmetic, comparisons and most functions of a
NULL are NULL, ``AND``/``OR``/``NOT`` follow three-valued logic, and a WHERE
clause keeps a row only when its condition is TRUE (not NULL).

Where SQL engines differ, reflow follows Flink SQL: integer ``/`` integer is an
integer (truncated toward zero), ``%`` takes the sign of the dividend,
``CAST(3.7 AS BIGINT)`` truncates, and a division by zero is an error that the
job's error policy handles for that row.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

from sqlglot import exp

from reflow.errors import ConfigError
from reflow.table.functions import (
    EXTRACT_UNITS,
    FLOOR_UNITS,
    FUNCTIONS,
    PART_FUNCTIONS,
    TIME_UNITS,
    check_format,
    check_regex,
    like_matcher,
    mod,
    text_of,
    timestamp_ms,
)

__all__ = [
    "Compiled",
    "SqlError",
    "compile_expression",
    "condition_of",
    "interval_ms",
    "is_true",
]

Compiled = Callable[[Mapping[str, Any]], Any]


class SqlError(ConfigError):
    """A SQL statement reflow cannot plan or run; ``line``/``column`` point at it."""

    def __init__(
        self, message: str, *, file: str | None = None, line: int | None = None, column: int = 0
    ) -> None:
        super().__init__(message, file=file, line=line)
        self.column = column
        if line is not None and column:
            place = f"{file or 'line'}:{line}:{column}: " if file else f"line {line}:{column}: "
            self.args = (place + message,)

    def located(self, file: str) -> SqlError:
        """The same error, naming the file it came from."""
        return SqlError(self.reason, file=file, line=self.line, column=self.column)


def position(node: exp.Expr | None) -> tuple[int | None, int]:
    """The (line, column) sqlglot recorded for ``node`` or its first child with one
    (or, for a node without either, as ``CURRENT_TIMESTAMP``, its parent's)."""
    line, col = _position_within(node)
    while line is None and node is not None and node.parent is not None:
        node = node.parent
        line, col = _position_within(node)
    return line, col


def _position_within(node: exp.Expr | None) -> tuple[int | None, int]:
    while node is not None:
        meta = node.meta
        if "line" in meta:  # sqlglot's column is the token's last character: give its first
            width = meta["end"] - meta["start"] if "start" in meta and "end" in meta else 0
            return meta["line"], meta.get("col", 0) - width
        for child in node.iter_expressions():
            line, col = _position_within(child)
            if line is not None:
                return line, col
        return None, 0
    return None, 0


def fail(node: exp.Expr | None, message: str) -> SqlError:
    line, col = position(node)
    return SqlError(message, line=line, column=col)


def is_true(value: Any) -> bool:
    """WHERE/HAVING/CASE keep a row only when the condition is TRUE (not NULL)."""
    return value is True or (value is not None and value is not False and bool(value))


_UNITS_MS = {
    "MILLISECOND": 1,
    "MILLISECONDS": 1,
    "SECOND": 1_000,
    "SECONDS": 1_000,
    "MINUTE": 60_000,
    "MINUTES": 60_000,
    "HOUR": 3_600_000,
    "HOURS": 3_600_000,
    "DAY": 86_400_000,
    "DAYS": 86_400_000,
}


def interval_ms(node: exp.Expr) -> int:
    """``INTERVAL '10' SECOND`` (or ``INTERVAL '10 seconds'``) in milliseconds."""
    if not isinstance(node, exp.Interval):
        raise fail(node, f"expected an INTERVAL such as INTERVAL '10' SECOND, got {node.sql()}")
    value = node.this
    unit = node.args.get("unit")
    text = value.name if isinstance(value, exp.Literal) else value.sql() if value else ""
    unit_name = unit.name.upper() if unit is not None else ""
    if not unit_name and " " in text.strip():
        text, unit_name = text.strip().split(None, 1)
        unit_name = unit_name.upper()
    if unit_name not in _UNITS_MS:
        raise fail(
            node,
            f"INTERVAL unit {unit_name or '(none)'!r} is not supported: use MILLISECOND, "
            "SECOND, MINUTE, HOUR or DAY",
        )
    try:
        amount = float(text)
    except ValueError:
        raise fail(node, f"INTERVAL {text!r} is not a number") from None
    return int(amount * _UNITS_MS[unit_name])


# -- NULL-aware operators -------------------------------------------------------------


def _int_div(a: Any, b: Any) -> Any:
    if type(a) is int and type(b) is int:
        q = abs(a) // abs(b)  # ZeroDivisionError: the row goes to the error policy
        return q if (a >= 0) == (b >= 0) else -q
    return a / b


_BINARY: dict[type[exp.Expr], Callable[[Any, Any], Any]] = {
    exp.Add: operator.add,
    exp.Sub: operator.sub,
    exp.Mul: operator.mul,
    exp.Div: _int_div,
    exp.Mod: mod,
    exp.EQ: operator.eq,
    exp.NEQ: operator.ne,
    exp.GT: operator.gt,
    exp.GTE: operator.ge,
    exp.LT: operator.lt,
    exp.LTE: operator.le,
    exp.DPipe: lambda a, b: text_of(a) + text_of(b),
}


def _to_int(value: Any) -> int:
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)  # exact: '9007199254740993' stays itself
        except ValueError:
            return int(float(text))  # '3.7' -> 3, as CAST(3.7 AS BIGINT)
    return int(value)


def _cast(target: str) -> Callable[[Any], Any]:
    kind = target.upper()
    if kind in {"BIGINT", "INT", "INTEGER", "SMALLINT", "TINYINT"}:
        return _to_int
    if kind in {"DOUBLE", "FLOAT", "REAL", "DECIMAL"}:
        return float
    if kind in {"VARCHAR", "STRING", "TEXT", "CHAR"}:
        return text_of
    if kind in {"TIMESTAMP", "TIMESTAMPLTZ", "TIMESTAMPTZ", "DATETIME"}:
        return timestamp_ms  # a time is epoch milliseconds (ISO-8601 text is read)
    if kind in {"BOOLEAN", "BOOL"}:
        return lambda v: v.strip().lower() in {"true", "t", "1"} if isinstance(v, str) else bool(v)
    raise ValueError(kind)


def compile_expression(
    node: exp.Expr,
    columns: Callable[[exp.Column], str] | None = None,
    functions: Mapping[str, Callable[..., Any]] | None = None,
    *,
    attributes: bool = False,
) -> Compiled:
    """A closure computing ``node`` for a row. ``columns`` maps a column reference to
    the row key it reads (default: its name); ``functions`` are user functions by
    upper-case name (called with every argument, NULLs included, as Flink's Python
    UDFs are); ``attributes`` reads columns as attributes (typed rows), not keys.
    Raises SqlError for what v1 lacks."""
    resolve = columns or (lambda column: column.name)
    udfs = functions or {}

    def build(node: exp.Expr) -> Compiled:
        if isinstance(node, exp.Paren):
            return build(node.this)
        if isinstance(node, exp.Alias):
            return build(node.this)
        if isinstance(node, exp.Column):
            # row.get(name) or row.name, called from C: a missing field is NULL.
            if attributes:
                attribute: Compiled = operator.attrgetter(resolve(node))
                return attribute
            getter: Compiled = operator.methodcaller("get", resolve(node))
            return getter
        if isinstance(node, exp.Literal):
            value = _constant(node)
            return lambda row: value
        if isinstance(node, exp.Boolean):
            flag = bool(node.this)
            return lambda row: flag
        if isinstance(node, exp.Null):
            return lambda row: None
        if isinstance(node, exp.Neg):
            inner = build(node.this)
            return lambda row: None if (v := inner(row)) is None else -v
        if isinstance(node, (exp.Add, exp.Sub)):
            shifted = _shifted(node, build)
            if shifted is not None:
                return shifted
        op = _BINARY.get(type(node))
        if op is not None:
            left, right = build(node.this), build(node.expression)
            constant = _constant(node.expression)
            if constant is not None:  # `x op literal`: one call fewer per row
                value_ = constant
                if op is mod and type(constant) is int and constant > 0:

                    def mod_constant(row: Mapping[str, Any]) -> Any:
                        a = left(row)
                        if a is None:
                            return None
                        if type(a) is int and a >= 0:
                            return a % value_
                        return mod(a, value_)

                    return mod_constant

                def with_constant(row: Mapping[str, Any]) -> Any:
                    a = left(row)
                    return None if a is None else op(a, value_)

                return with_constant
            return _binary_of(type(node), left, right)
        if isinstance(node, exp.And):
            return _and(build(node.left), build(node.right))
        if isinstance(node, exp.Or):
            return _or(build(node.left), build(node.right))
        if isinstance(node, exp.Not):
            inner = build(node.this)
            return lambda row: None if (v := inner(row)) is None else not is_true(v)
        if isinstance(node, exp.Is):
            inner = build(node.this)
            if isinstance(node.expression, exp.Boolean):  # IS [NOT] TRUE/FALSE: never NULL
                wanted = bool(node.expression.this)
                negate = bool(node.args.get("negate"))

                def is_boolean(row: Mapping[str, Any]) -> bool:
                    v = inner(row)
                    holds = v is not None and is_true(v) == wanted
                    return holds != negate

                return is_boolean
            if not isinstance(node.expression, exp.Null):
                raise fail(
                    node,
                    f"IS {node.expression.sql()} is not supported; use IS [NOT] NULL, "
                    "IS [NOT] TRUE or IS [NOT] FALSE",
                )
            if node.args.get("negate"):  # a NOTNULL
                return lambda row: inner(row) is not None
            return lambda row: inner(row) is None
        if isinstance(node, (exp.NullSafeEQ, exp.NullSafeNEQ)):
            left, right = build(node.this), build(node.expression)
            same = isinstance(node, exp.NullSafeEQ)

            def distinct(row: Mapping[str, Any]) -> bool:
                a, b = left(row), right(row)
                equal = (a is None and b is None) or (a is not None and b is not None and a == b)
                return equal if same else not equal

            return distinct
        if isinstance(node, exp.In):
            return _in(build(node.this), [build(e) for e in node.expressions], node)
        if isinstance(node, exp.Between):
            value, low, high = build(node.this), build(node.args["low"]), build(node.args["high"])
            lower = _binary_of(exp.GTE, value, low)
            upper = _binary_of(exp.LTE, value, high)
            return _and(lower, upper)
        if isinstance(node, (exp.Like, exp.ILike)):
            return _like_of(node, build(node.this))
        if isinstance(node, exp.Escape) and isinstance(node.this, (exp.Like, exp.ILike)):
            return _like_of(node.this, build(node.this.this), node.expression.name)
        if isinstance(node, exp.Case):
            return _case(node, build)
        if isinstance(node, exp.If):
            return _case(exp.Case(ifs=[node], default=node.args.get("false")), build)
        if isinstance(node, (exp.Cast, exp.TryCast)):
            inner = build(node.this)
            target = node.to.this.name if node.to is not None else ""
            try:
                convert = _cast(target)
            except ValueError:
                raise fail(node, f"CAST to {node.to.sql()} is not supported") from None
            if isinstance(node, exp.TryCast):  # a value that does not convert is NULL

                def try_cast(row: Mapping[str, Any]) -> Any:
                    v = inner(row)
                    if v is None:
                        return None
                    try:
                        return convert(v)
                    except (ValueError, TypeError, ArithmeticError):
                        return None

                return try_cast
            return lambda row: None if (v := inner(row)) is None else convert(v)
        if isinstance(node, exp.Coalesce):
            parts = [build(node.this), *(build(e) for e in node.expressions)]

            def coalesce(row: Mapping[str, Any]) -> Any:
                for part in parts:
                    value = part(row)
                    if value is not None:
                        return value
                return None

            return coalesce
        if isinstance(node, exp.Anonymous) and str(node.this).upper() in udfs:
            return _udf(udfs[str(node.this).upper()], [build(a) for a in node.expressions])
        return _function(node, build)

    return build(node)


def _udf(fn: Callable[..., Any], args: list[Compiled]) -> Compiled:
    if len(args) == 1:
        only = args[0]
        return lambda row: fn(only(row))
    return lambda row: fn(*(a(row) for a in args))


def _constant(node: exp.Expr) -> Any:
    """The value of a non-NULL literal (None for anything else)."""
    if isinstance(node, exp.Paren):
        return _constant(node.this)
    if isinstance(node, exp.Literal):
        text = node.this
        if node.is_string:
            return text
        return float(text) if any(c in text for c in ".eE") else int(text)
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) and not node.this.is_string:
        value = _constant(node.this)
        return -value
    return None


def _binary_of(kind: type[exp.Expr], left: Compiled, right: Compiled) -> Compiled:
    op = _BINARY[kind]

    def binary(row: Mapping[str, Any]) -> Any:
        a = left(row)
        if a is None:
            return None
        b = right(row)
        return None if b is None else op(a, b)

    return binary


def _and(left: Compiled, right: Compiled) -> Compiled:
    def both(row: Mapping[str, Any]) -> Any:
        a = left(row)
        if a is not None and not is_true(a):
            return False
        b = right(row)
        if b is not None and not is_true(b):
            return False
        return None if a is None or b is None else True

    return both


def _or(left: Compiled, right: Compiled) -> Compiled:
    def either(row: Mapping[str, Any]) -> Any:
        a = left(row)
        if a is not None and is_true(a):
            return True
        b = right(row)
        if b is not None and is_true(b):
            return True
        return None if a is None or b is None else False

    return either


def _in(value: Compiled, options: list[Compiled], node: exp.Expr) -> Compiled:
    if not options:
        raise fail(node, "IN needs a list of values; subqueries in IN are not supported yet")

    def member(row: Mapping[str, Any]) -> Any:
        v = value(row)
        if v is None:
            return None
        unknown = False
        for option in options:
            o = option(row)
            if o is None:
                unknown = True
            elif o == v:
                return True
        return None if unknown else False

    return member


def _like_of(node: exp.Expr, value: Compiled, escape: str | None = None) -> Compiled:
    pattern_node = node.expression
    if not isinstance(pattern_node, exp.Literal) or not pattern_node.is_string:
        raise fail(node, "LIKE needs a string literal pattern")
    match = like_matcher(pattern_node.this, escape, ignore_case=isinstance(node, exp.ILike))
    if node.args.get("negate"):  # NOT LIKE
        return lambda row: None if (v := value(row)) is None else not match(str(v))
    return lambda row: None if (v := value(row)) is None else match(str(v))


def _case(node: exp.Case, build: Callable[[exp.Expr], Compiled]) -> Compiled:
    subject = build(node.this) if node.this is not None else None
    branches = [(build(when.this), build(when.args["true"])) for when in node.args["ifs"]]
    default_node = node.args.get("default")
    default = build(default_node) if default_node is not None else (lambda row: None)

    def case(row: Mapping[str, Any]) -> Any:
        if subject is None:
            for condition, result in branches:
                if is_true(condition(row)):
                    return result(row)
        else:
            value = subject(row)
            for candidate, result in branches:
                if value is not None and value == candidate(row):
                    return result(row)
        return default(row)

    return case


def _unit(node: exp.Expr | None) -> exp.Expr:
    """A time unit written as a word (``HOUR``) as a text constant."""
    if isinstance(node, (exp.Column, exp.Var, exp.Identifier)):
        return exp.Literal.string(node.name.upper())
    if node is None:
        raise ValueError("a time unit is missing")
    return node


def _call_of(node: exp.Expr) -> tuple[str, list[exp.Expr]]:
    """The function name and arguments, in the order ``FUNCTIONS`` takes them, of a
    call sqlglot parsed into its own node."""
    arg = node.args.get
    if isinstance(node, exp.Anonymous):
        name = str(node.this).upper()
        args = list(node.expressions)
        if name in ("TIMESTAMPADD", "TIMESTAMPDIFF") and args:
            args[0] = _unit(args[0])
        return name, args
    if isinstance(node, exp.Extract):
        return "EXTRACT", [_unit(node.this), node.expression]
    if isinstance(node, (exp.Floor, exp.Ceil)) and arg("to") is not None:
        kind = "FLOOR_TIME" if isinstance(node, exp.Floor) else "CEIL_TIME"
        return kind, [node.this, _unit(arg("to"))]
    if isinstance(node, exp.Trim):
        where = str(arg("position") or "BOTH").upper()
        name = {"LEADING": "LTRIM", "TRAILING": "RTRIM"}.get(where, "TRIM")
        chars = arg("expression")
        return name, [node.this] if chars is None else [node.this, chars]
    if isinstance(node, exp.StrPosition):  # POSITION(sub IN s), LOCATE(sub, s[, from])
        start = arg("position")
        return "LOCATE", [arg("substr"), node.this, *([start] if start is not None else [])]
    if isinstance(node, exp.Pad):
        fill = arg("fill_pattern") or exp.Literal.string(" ")
        return ("LPAD" if arg("is_left") else "RPAD"), [node.this, node.expression, fill]
    if isinstance(node, exp.Log):
        base, value = node.this, node.expression
        if value is None:  # LOG(x): the natural logarithm, as Flink
            return "LN", [base]
        literal = isinstance(base, exp.Literal)
        known = {"10": "LOG10", "2": "LOG2"}.get(base.name) if literal else None
        return (known, [value]) if known else ("LOG", [base, value])
    if isinstance(node, exp.Func):
        name = node.sql_name().upper()
        if name not in FUNCTIONS and name not in PART_FUNCTIONS and name != "TRUNC":
            return name, []  # refused by name
        ordered = {
            exp.RegexpReplace: ("expression", "replacement"),
            exp.RegexpExtract: ("expression", "position"),  # Flink: the group's index
            exp.Substring: ("start", "length"),
            exp.Round: ("decimals",),
            exp.Trunc: ("decimals",),
            exp.Replace: ("expression", "replacement"),
            exp.Repeat: ("times",),
        }.get(type(node), ("expression",))
        args = [a for a in (node.this, *(arg(k) for k in ordered)) if isinstance(a, exp.Expr)]
        args += list(node.expressions)
        # Whatever else the call says would be left out: refuse it rather than ignore it.
        used = {"this", "expressions", *ordered}
        extra = [k for k, v in node.args.items() if k not in used and isinstance(v, exp.Expr)]
        if extra:
            raise fail(node, f"{node.sql()}: {', '.join(extra)} is not supported in reflow SQL")
        return {"TRUNC": "TRUNCATE"}.get(name, name), args
    raise fail(node, f"{node.sql()} is not supported in reflow SQL yet")


def _arity(least: int, most: int | None) -> str:
    if most == least:
        return f"{least} argument{'s' if least != 1 else ''}"
    if most is None:
        return f"{least} or more arguments"
    return f"{least} to {most} arguments"


def _check_arguments(name: str, args: list[exp.Expr], node: exp.Expr) -> None:
    """Units and date formats written as constants are checked as the job is planned."""

    def text(i: int) -> str | None:
        a = args[i] if i < len(args) else None
        return a.this if isinstance(a, exp.Literal) and a.is_string else None

    units = {
        "EXTRACT": EXTRACT_UNITS,
        "TIMESTAMPADD": TIME_UNITS,
        "TIMESTAMPDIFF": TIME_UNITS,
    }.get(name)
    unit_at = 1 if name in ("FLOOR_TIME", "CEIL_TIME") else 0
    if name in ("FLOOR_TIME", "CEIL_TIME"):
        units = FLOOR_UNITS
    if units is not None:
        unit = text(unit_at)
        if unit is None or unit.upper() not in units:
            raise fail(node, f"{node.sql()}: the unit must be one of {', '.join(units)}")
        args[unit_at] = exp.Literal.string(unit.upper())
    formats = {"DATE_FORMAT": (1, False), "FROM_UNIXTIME": (1, False)}
    formats |= {"TO_TIMESTAMP": (1, True), "UNIX_TIMESTAMP": (1, True)}
    if name in formats:
        index, parsing = formats[name]
        pattern = text(index)
        if pattern is not None:
            try:
                check_format(pattern, parsing=parsing)
            except ValueError as exc:
                raise fail(node, str(exc)) from None
    if name.startswith("REGEXP") and text(1) is not None:
        try:
            check_regex(str(text(1)))
        except ValueError as exc:
            raise fail(node, str(exc)) from None
    if name == "TO_TIMESTAMP_LTZ" and len(args) > 1:
        precision = _constant(args[1])
        if precision not in (0, 3):
            raise fail(node, f"{node.sql()}: the precision is 0 (seconds) or 3 (milliseconds)")


def _function(node: exp.Expr, build: Callable[[exp.Expr], Compiled]) -> Compiled:
    name, args = _call_of(node)
    if name in PART_FUNCTIONS:  # HOUR(ts) is EXTRACT(HOUR FROM ts)
        name, args = "EXTRACT", [exp.Literal.string(PART_FUNCTIONS[name]), *args]
    spec = FUNCTIONS.get(name)
    if spec is None and isinstance(node, exp.AggFunc):
        raise fail(
            node,
            f"aggregate {name} is not supported: the aggregates are COUNT, COUNT(DISTINCT), "
            "SUM, MIN, MAX and AVG (with FILTER (WHERE ...))",
        )
    if spec is None:
        known = ", ".join(sorted(n for n in FUNCTIONS if not n.endswith("_TIME")))
        raise fail(node, f"function {name} is not supported; the scalar functions are: {known}")
    if len(args) < spec.least or (spec.most is not None and len(args) > spec.most):
        raise fail(
            node, f"{name} takes {_arity(spec.least, spec.most)}, not {len(args)}: {node.sql()}"
        )
    _check_arguments(name, args, node)
    compiled = [build(a) for a in args]
    fn = spec.fn
    if spec.takes_nulls:
        return lambda row: fn(*[c(row) for c in compiled])
    if len(compiled) == 1:
        only = compiled[0]
        return lambda row: None if (v := only(row)) is None else fn(v)

    def call(row: Mapping[str, Any]) -> Any:
        values = [c(row) for c in compiled]
        if None in values:
            return None
        return fn(*values)

    return call


def _shifted(node: exp.Expr, build: Callable[[exp.Expr], Compiled]) -> Compiled | None:
    """``time + INTERVAL ...``, ``INTERVAL ... + time`` or ``time - INTERVAL ...`` (None
    for other additions): a time in epoch milliseconds."""
    left, right = node.this, node.expression
    if isinstance(right, exp.Interval):
        time, interval, sign = left, right, (-1 if isinstance(node, exp.Sub) else 1)
    elif isinstance(left, exp.Interval) and isinstance(node, exp.Add):
        time, interval, sign = right, left, 1
    elif isinstance(left, exp.Interval):
        raise fail(node, f"{node.sql()}: an INTERVAL can be added to a time, not take one away")
    else:
        return None
    unit = interval.args.get("unit")
    months = {"MONTH": 1, "MONTHS": 1, "QUARTER": 3, "YEAR": 12, "YEARS": 12}.get(
        unit.name.upper() if unit is not None else ""
    )
    value = build(time)
    if months is None:
        ms = sign * interval_ms(interval)
        return lambda row: None if (v := value(row)) is None else timestamp_ms(v) + ms
    amount = _constant(interval.this)
    if not isinstance(amount, int):
        try:
            amount = int(str(interval.this.name))
        except ValueError:
            raise fail(interval, f"{interval.sql()}: a whole number of months is needed") from None
    step = sign * amount * months
    add = FUNCTIONS["TIMESTAMPADD"].fn
    return lambda row: None if (v := value(row)) is None else add("MONTH", step, v)


_PREDICATES = (
    exp.EQ,
    exp.NEQ,
    exp.GT,
    exp.GTE,
    exp.LT,
    exp.LTE,
    exp.And,
    exp.Or,
    exp.Not,
    exp.Is,
    exp.In,
    exp.Between,
    exp.Like,
    exp.ILike,
)


def is_predicate(node: exp.Expr) -> bool:
    """A comparison or logic: it gives exactly True, False or NULL."""
    inner = node.this if isinstance(node, exp.Paren) else node
    return isinstance(inner, _PREDICATES)


def conjuncts(node: exp.Expr) -> list[exp.Expr]:
    """``a AND b AND c`` as its parts (a row passes only if each part is TRUE)."""
    if isinstance(node, exp.Paren):
        return conjuncts(node.this)
    if isinstance(node, exp.And):
        return conjuncts(node.this) + conjuncts(node.expression)
    return [node]


def condition_of(
    node: exp.Expr,
    columns: Callable[[exp.Column], str] | None = None,
    functions: Mapping[str, Callable[..., Any]] | None = None,
) -> tuple[Compiled, bool]:
    """A WHERE/HAVING condition, and whether it gives exactly True, False or NULL
    (comparisons and logic: a row is kept when it ``is True``; any other expression
    is kept when ``is_true``)."""
    return compile_expression(node, columns, functions), is_predicate(node)
