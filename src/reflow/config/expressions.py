"""Record expressions of job files, checked against an allow-list of syntax.

A job file's ``expression:``, ``key:`` and ``timestamp:`` values are untrusted
input (they also arrive through ``POST /api/jobs``). They are parsed with
:mod:`ast`, every node of the tree is checked against the allow-list below,
and only then is the *checked tree* compiled; the source text is never given
to ``eval``. Allowed:

- the names ``r`` and ``record`` (the record) and the pure builtins of
  ``SAFE_BUILTINS``; constants; tuple, list, set and dict displays
  (``{**r, 'x': 1}`` included);
- arithmetic, comparison, boolean and conditional expressions, subscripts and
  slices; ``**`` only with a small constant exponent (no CPU bombs);
- calls of the safe builtins, and of the methods in ``SAFE_METHODS``
  (``r.get('x')``, ``s.lower()``) — attributes are reachable only as such a
  call, so no name starting with ``_`` can ever be read;
- f-strings without ``!r``/``!s``/``!a`` conversions.

Everything else — lambdas, comprehensions, the walrus, ``await``, starred
arguments, any other attribute — is refused with the construct's name.
"""

from __future__ import annotations

import ast
import builtins
import types
import warnings
from collections.abc import Callable
from typing import Any

from reflow.errors import ConfigError

__all__ = ["SAFE_BUILTINS", "SAFE_METHODS", "check_expression", "compile_expression"]

# Pure functions on values: nothing reaches files, modules, attributes or the
# interpreter. ``range`` is left out: ``list(range(10**12))`` is a memory bomb.
SAFE_BUILTINS: dict[str, Any] = {
    name: getattr(builtins, name)
    for name in (
        "abs", "all", "any", "bool", "dict", "divmod", "enumerate", "float", "int", "isinstance",
        "len", "list", "max", "min", "repr", "reversed", "round", "set", "sorted", "str",
        "sum", "tuple", "zip",
    )
}  # fmt: skip

# Methods of records and their values (dict, str, bytes, list) that return a
# new value and mutate nothing. ``format``/``format_map`` are left out: a
# format string reaches attributes (``"{0.__class__}".format(r)``).
SAFE_METHODS = frozenset(
    {
        # dict
        "get", "keys", "values", "items",
        # str / bytes
        "lower", "upper", "strip", "lstrip", "rstrip", "split", "rsplit", "splitlines",
        "startswith", "endswith", "replace", "title", "capitalize", "casefold", "swapcase",
        "isdigit", "isalpha", "isalnum", "isnumeric", "isdecimal", "isspace", "islower",
        "isupper", "join", "find", "rfind", "index", "rindex", "count", "zfill", "partition",
        "rpartition", "center", "ljust", "rjust", "removeprefix", "removesuffix", "encode",
        "decode", "hex",
    }
)  # fmt: skip

RECORD_NAMES = frozenset({"r", "record"})

# The largest constant exponent of ``**``: 2**64 is fine, 10**10**10 is not.
MAX_EXPONENT = 64

_OPERATORS: tuple[type[ast.AST], ...] = (
    # arithmetic and bitwise
    ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.BitAnd,
    ast.BitOr, ast.BitXor, ast.LShift, ast.RShift, ast.MatMult,
    # unary, boolean, comparison
    ast.UAdd, ast.USub, ast.Not, ast.Invert, ast.And, ast.Or, ast.Eq, ast.NotEq, ast.Lt,
    ast.LtE, ast.Gt, ast.GtE, ast.Is, ast.IsNot, ast.In, ast.NotIn,
    # contexts
    ast.Load,
)  # fmt: skip

_PLAIN_NODES: tuple[type[ast.AST], ...] = (
    ast.Expression, ast.BoolOp, ast.UnaryOp, ast.Compare, ast.IfExp, ast.Subscript,
    ast.Slice, ast.Tuple, ast.List, ast.Set, ast.Dict, ast.JoinedStr, ast.keyword,
)  # fmt: skip

_ALLOWED = (*_OPERATORS, *_PLAIN_NODES, ast.Constant)

_NAMES = {
    ast.Lambda: "lambda",
    ast.ListComp: "list comprehension",
    ast.SetComp: "set comprehension",
    ast.DictComp: "dict comprehension",
    ast.GeneratorExp: "generator expression",
    ast.NamedExpr: "':=' (walrus)",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
    ast.Starred: "'*' unpacking in a call",
    ast.Attribute: "attribute access",
}


def _refuse(source: str, what: str, where: Callable[[str], ConfigError]) -> ConfigError:
    return where(
        f"expression {source!r} may not use {what}; expressions allow the record r, "
        "constants, operators, subscripts, the builtins "
        f"{', '.join(sorted(SAFE_BUILTINS))} and methods such as r.get() and s.lower() "
        "(docs/yaml.md); use function: module:name for anything more"
    )


def _exponent_ok(node: ast.expr) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        node = node.operand
    if not isinstance(node, ast.Constant) or type(node.value) not in (int, float):
        return False
    value: float = node.value  # type: ignore[assignment]
    return abs(value) <= MAX_EXPONENT


def check_expression(
    tree: ast.Expression, source: str, where: Callable[[str], ConfigError]
) -> None:
    """Raise ConfigError unless every node of ``tree`` is on the allow-list."""
    stack: list[ast.AST] = [tree]
    while stack:  # a stack, not recursion: "1+1+...+1" nests as deep as it is long
        node = stack.pop()
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            # A method call: the one place an attribute may appear.
            if node.func.attr not in SAFE_METHODS:
                raise _refuse(source, f"the method {node.func.attr!r}", where)
            _check_keywords(node, source, where)
            stack.extend((node.func.value, *node.args, *node.keywords))
            continue
        _check_node(node, source, where)
        stack.extend(ast.iter_child_nodes(node))


def _check_keywords(call: ast.Call, source: str, where: Callable[[str], ConfigError]) -> None:
    if any(k.arg is None for k in call.keywords):
        raise _refuse(source, "'**' unpacking in a call", where)


def _check_node(node: ast.AST, source: str, where: Callable[[str], ConfigError]) -> None:
    if (
        isinstance(node, ast.Subscript)
        and isinstance(node.value, ast.Name)
        and node.value.id not in RECORD_NAMES
    ):
        # ``dict[r]`` is a type alias: the typing machinery then reads the record's
        # dunder attributes (``__parameters__``); no expression needs it.
        raise _refuse(source, f"subscripting the builtin {node.value.id!r}", where)
    if isinstance(node, _ALLOWED):
        return
    if isinstance(node, ast.Name):
        if node.id not in RECORD_NAMES and node.id not in SAFE_BUILTINS:
            raise _refuse(source, f"the name {node.id!r}", where)
        return
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, ast.Pow) and not _exponent_ok(node.right):
            raise _refuse(
                source, f"'**' with an exponent other than a constant <= {MAX_EXPONENT}", where
            )
        return
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name):
            raise _refuse(source, "a call of anything but a safe builtin or method", where)
        if node.func.id not in SAFE_BUILTINS:
            raise _refuse(source, f"a call of {node.func.id!r}", where)
        _check_keywords(node, source, where)
        return
    if isinstance(node, ast.FormattedValue):
        if node.conversion != -1:
            raise _refuse(source, "an f-string conversion (!r, !s, !a)", where)
        return
    raise _refuse(source, _NAMES.get(type(node), type(node).__name__), where)


# Longest expression text accepted: parsing is linear, but a job file has no
# business carrying megabytes of expression.
MAX_EXPRESSION_CHARS = 10_000


def compile_expression(source: str, where: Callable[[str], ConfigError]) -> Callable[[Any], Any]:
    """A function of one record ``r`` (also named ``record``) from a checked expression.

    Raises:
        ConfigError: (through ``where``) for a syntax error or a construct
            outside the allow-list, naming the construct.
    """
    if not isinstance(source, str):
        raise where(f"an expression must be text, not {type(source).__name__}")
    if len(source) > MAX_EXPRESSION_CHARS:
        raise where(f"expression is {len(source)} characters; the limit is {MAX_EXPRESSION_CHARS}")
    try:
        tree = ast.parse(source.strip(), "<expression>", "eval")
    except SyntaxError as exc:
        raise where(f"invalid expression {source!r}: {exc.msg}") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise where(f"invalid expression {source!r}: {type(exc).__name__}") from None
    check_expression(tree, source, where)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == "record":
            node.id = "r"  # ``record`` is another name for r
    # The record is the only argument; the body is the checked tree.
    func = ast.Expression(
        body=ast.Lambda(
            args=ast.arguments(
                posonlyargs=[],
                args=[ast.arg(arg="r")],
                vararg=None,
                kwonlyargs=[],
                kw_defaults=[],
                kwarg=None,
                defaults=[],
            ),
            body=tree.body,
        )
    )
    ast.fix_missing_locations(func)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)  # "'int' is not subscriptable"
            code = compile(func, "<expression>", "eval")
    except (SyntaxError, ValueError, RecursionError) as exc:
        raise where(f"invalid expression {source!r}: {exc}") from None
    body = next(c for c in code.co_consts if isinstance(c, types.CodeType))
    # A function made from the checked code: its globals hold the safe builtins only.
    env: dict[str, Any] = {"__builtins__": {}, **SAFE_BUILTINS}
    expression = types.FunctionType(body, env, f"expression({source})")
    expression.__qualname__ = expression.__name__
    return expression
