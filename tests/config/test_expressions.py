"""Job-file expressions run only allow-listed syntax: escape attempts are refused,
and random expression trees never reach an underscore attribute or a call
outside the allow-list (hypothesis)."""

from __future__ import annotations

import ast
import gc
import sys
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reflow.config.expressions import SAFE_BUILTINS, SAFE_METHODS, compile_expression
from reflow.config.job_file import load_job_text
from reflow.errors import ConfigError


def _where(message: str) -> ConfigError:
    return ConfigError(message)


ESCAPES = [
    # Reported: a lambda or comprehension inside the expression reaches object's subclasses.
    "(lambda: [c for c in ().__class__.__base__.__subclasses__() if c.__name__ == 'Popen'])()",
    "[c for c in ().__class__.__bases__[0].__subclasses__()]",
    "{c: 1 for c in r.__class__.__mro__}",
    "list(x for x in ().__class__.__base__.__subclasses__())",
    "(lambda f: f)(len)",
    "r.__class__",
    "r.get.__self__",
    "str.__dict__",
    "'{0.__class__.__mro__}'.format(r)",
    "'{x.__class__}'.format_map({'x': r})",
    "f'{r!r}'",
    "(y := r)",
    "__import__('os').system('id')",
    "open('/etc/passwd').read()",
    "getattr(r, '__class__')",
    "type(r)",
    "vars(r)",
    "eval('1')",
    "r.pop('a')",
    "r.update(a=1)",
    "len(*r)",
    "dict(**r)",
    "r['f']()",
    "10 ** 10 ** 10",
    "2 ** r['n']",
    # Found by the random test below: a type alias, whose making reads the record's
    # dunder attributes.
    "dict[r][r]",
]


@pytest.mark.parametrize("source", ESCAPES)
def test_escape_attempts_are_refused_with_the_construct_named(source: str) -> None:
    with pytest.raises(ConfigError, match="may not use"):
        compile_expression(source, _where)


def test_allowed_expressions_compute_what_they_say() -> None:
    record = {"a": 3, "s": " Ab ", "xs": [3, 1, 2]}
    cases = {
        "{**r, 'b': r['a'] * 2}": {**record, "b": 6},
        "record['a'] + 1": 4,
        "r.get('missing', 'd')": "d",
        "r['s'].strip().lower()": "ab",
        "sorted(r['xs'])[-1]": 3,
        "'big' if r['a'] > 2 else 'small'": "big",
        "f\"{r['a']:03d}\"": "003",
        "2 ** 10 + r['a']": 1027,
        "dict(r, tagged=True)['tagged']": True,
        "r['xs'][1:]": [1, 2],
    }
    for source, expected in cases.items():
        assert compile_expression(source, _where)(record) == expected, source


def test_an_api_style_job_with_a_lambda_escape_is_refused_at_its_line() -> None:
    text = (
        "job:\n  name: x\n  source: {connector: memory, config: {collection: c}}\n"
        "  operators:\n"
        '    - {name: m, type: map, expression: "(lambda: ().__class__)()"}\n'
        "  sink: {connector: stdout}\n"
    )
    with pytest.raises(ConfigError, match=r":5: .*may not use"):
        load_job_text(text)


# -- fuzzing -------------------------------------------------------------------------------

NAMES = ["r", "record", "len", "str", "dict", "open", "getattr", "__import__", "type", "x"]
ATTRS = ["get", "lower", "join", "format", "__class__", "__subclasses__", "_x", "mro", "keys"]
LEAF = st.one_of(
    st.builds(ast.Name, id=st.sampled_from(NAMES), ctx=st.just(ast.Load())),
    st.builds(ast.Constant, value=st.one_of(st.integers(-5, 5), st.text(max_size=3))),
)


def _extend(children: st.SearchStrategy[ast.expr]) -> st.SearchStrategy[ast.expr]:
    ops = st.sampled_from([ast.Add(), ast.Mult(), ast.Mod(), ast.Pow(), ast.Sub()])
    return st.one_of(
        st.builds(ast.BinOp, left=children, op=ops, right=children),
        st.builds(
            ast.Attribute, value=children, attr=st.sampled_from(ATTRS), ctx=st.just(ast.Load())
        ),
        st.builds(
            ast.Call,
            func=children,
            args=st.lists(children, max_size=2),
            keywords=st.just([]),
        ),
        st.builds(ast.Subscript, value=children, slice=children, ctx=st.just(ast.Load())),
        st.builds(ast.List, elts=st.lists(children, max_size=2), ctx=st.just(ast.Load())),
        st.builds(
            ast.Lambda,
            args=st.just(
                ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[], defaults=[])
            ),
            body=children,
        ),
        st.builds(
            ast.ListComp,
            elt=children,
            generators=st.builds(
                lambda it: [
                    ast.comprehension(
                        target=ast.Name(id="x", ctx=ast.Store()), iter=it, ifs=[], is_async=0
                    )
                ],
                children,
            ),
        ),
        st.builds(
            ast.JoinedStr,
            values=st.lists(
                st.builds(
                    ast.FormattedValue,
                    value=children,
                    conversion=st.sampled_from([-1, 114, 115]),
                    format_spec=st.none(),
                ),
                max_size=2,
            ),
        ),
    )


EXPRESSIONS = st.recursive(LEAF, _extend, max_leaves=8)

# What a checked expression may call: its builtins, the allowed methods, and the
# machinery of the function object itself.
ALLOWED_CALLS = set(SAFE_BUILTINS) | set(SAFE_METHODS)


class _Probe(dict[str, Any]):
    """A record that notes every attribute read whose name starts with '_'."""

    touched: list[str] = []

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("_"):
            _Probe.touched.append(name)
        return super().__getattribute__(name)


_PROBE_CODE = _Probe.__getattribute__.__code__


def _calls_made(fn: Callable[[Any], Any], record: Any) -> list[str]:
    called: list[str] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "c_call" and frame.f_code is not _PROBE_CODE:  # not the probe's own
            called.append(getattr(arg, "__name__", repr(arg)))
        elif event == "call" and frame.f_code not in (fn.__code__, _PROBE_CODE):
            called.append(frame.f_code.co_name)

    # No collection meanwhile: a GC callback (Hypothesis times collections) would
    # show up as a call the expression made.
    collecting = gc.isenabled()
    gc.disable()
    sys.setprofile(profile)
    try:
        fn(record)
    except Exception:
        pass  # a type error of a random expression is fine; what it reached is checked
    finally:
        sys.setprofile(None)
        if collecting:
            gc.enable()
    assert called[-1] == "setprofile"  # the profiler's own removal
    return called[:-1]


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(EXPRESSIONS)
def test_random_expressions_never_reach_underscore_attributes_or_other_calls(
    tree: ast.expr,
) -> None:
    try:
        source = ast.unparse(ast.fix_missing_locations(ast.Expression(body=tree)))
    except Exception:
        return  # not an expression Python can print
    try:
        fn = compile_expression(source, _where)
    except ConfigError:
        return  # refused: nothing ran
    parsed = ast.parse(source, mode="eval")
    for node in ast.walk(parsed):
        assert not (isinstance(node, ast.Attribute) and node.attr.startswith("_")), source
        assert not isinstance(node, ast.Lambda | ast.ListComp), source
    _Probe.touched = []
    record = _Probe(x=1, s="Ab")
    called = _calls_made(fn, record)
    outside = [name for name in called if name not in ALLOWED_CALLS]
    assert not outside, f"{source}: called {outside}"
    assert not _Probe.touched, f"{source}: read {_Probe.touched}"
