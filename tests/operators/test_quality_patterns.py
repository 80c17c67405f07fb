"""The regex rule's batch match: a batch answered at once must get the answer RE2
gives value by value, by whichever engine answers it."""

from __future__ import annotations

import re
from typing import Any

import pytest
import re2  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st

from reflow.operators.quality.patterns import Pattern

# Pieces of the simple patterns Python's engine answers for (one character each,
# never a newline: a pattern that can match one is looked at value by value).
_ONE = st.sampled_from(
    ["a", "b", "Z", "7", "\\.", "\\-", "\\?", ".", "[a-c]", "[0-9_]", "\\d", "\\w", "[]a]"]
)
_FIXED = st.builds(lambda one, n: f"(?:{one}){{{n}}}" if n != 1 else one, _ONE, st.integers(1, 3))
_VARYING = st.builds(
    lambda one, rep: one + rep,
    _ONE,
    st.sampled_from(["+", "*", "?", "{1,3}", "{2,}", "+?", "*?"]),
)


@st.composite
def _simple_patterns(draw: Any) -> str:
    items = draw(st.lists(_FIXED, min_size=0, max_size=5))
    if draw(st.booleans()) or not items:
        items.insert(draw(st.integers(0, len(items))), draw(_VARYING))
    if draw(st.booleans()):  # written otherwise: hex escapes, an alternative
        items.append(draw(st.sampled_from(["[\\x41-\\x43]", "\\x2e", "(?:a|b)", "[\\d.]"])))
    if draw(st.booleans()):  # a group around some of it
        cut = draw(st.integers(0, len(items)))
        items = [f"({''.join(items[:cut])})", *items[cut:]]
    return "".join(items)


_TEXT = st.text(alphabet="abcZ7.-?_AB\n\tx\x0bé€", max_size=8)


def _exact(pattern: str, values: list[Any]) -> bool:
    """RE2, value by value: every value is None or a string matched whole."""
    compiled = re2.compile(pattern)
    return all(v is None or compiled.fullmatch(v) is not None for v in values)


@settings(max_examples=400, deadline=None)
@given(_simple_patterns(), st.lists(_TEXT, min_size=1, max_size=6))
def test_a_simple_pattern_on_ascii_text_gets_re2s_answer_exactly(
    pattern: str, values: list[str]
) -> None:
    matcher = Pattern(pattern, "r")
    assert matcher._text is not None, pattern  # answered by Python's engine
    expected = _exact(pattern, values)
    answer = matcher.all_match(values)
    if all(v.isascii() and "\n" not in v for v in values):
        assert answer is expected, (pattern, values)
    else:  # the batch may be looked at value by value, never passed wrongly
        assert not answer or expected, (pattern, values)


@settings(max_examples=200, deadline=None)
@given(_simple_patterns(), st.lists(st.one_of(st.none(), _TEXT, st.integers()), max_size=6))
def test_values_that_pass_together_pass_one_by_one(pattern: str, values: list[Any]) -> None:
    """Nulls pass, other non-strings fail; RE2's batch path agrees where Python's
    does not answer."""
    for matcher in (Pattern(pattern, "r"), _without_python(Pattern(pattern, "r"))):
        if matcher.all_match(values):
            assert all(v is None or isinstance(v, str) for v in values)
            assert _exact(pattern, values), (pattern, values)


def _without_python(matcher: Pattern) -> Pattern:
    matcher._text = None
    return matcher


@pytest.mark.parametrize(
    "pattern",
    [
        "(a+)+",  # nested repetition: exponential when backtracked
        "a*a*b",  # two repetitions that vary: polynomial
        "\\d+\\.\\d+",
        "(ab)+",  # a repetition of more than one character
        "a{,2}",  # Python reads {0,2}, RE2 the text "a{,2}"
        "\\s+",  # Python's \s holds a vertical tab, RE2's does not
        "(?i)abc",  # flags
        "(?s)a.c",
        "^abc",  # anchors
        "abc\\b",
        "ab|cd",  # alternatives of more than one character
        "\\pL+",  # RE2-only classes
        "[[:alpha:]]+",
    ],
)
def test_patterns_python_could_read_otherwise_or_backtrack_on_stay_with_re2(
    pattern: str,
) -> None:
    matcher = Pattern(pattern, "r")
    assert matcher._text is None
    for values in (["x"], ["abc", "ab"], ["aaaa"], ["1.5"]):
        answer = matcher.all_match(values)
        # RE2 answers for the batch when it can; otherwise it is looked at one by one
        assert answer is _exact(pattern, values) if matcher.batched else answer is False


def test_a_long_value_against_a_repetition_takes_one_pass() -> None:
    """The one repetition that varies, before a tail that fails at the last
    character: each length is tried once, so 200,000 characters answer at once."""
    matcher = Pattern("\\w*a{20}!", "r")
    assert matcher._text is not None
    value = "a" * 200_000
    assert matcher.all_match([value, value + "!"]) is False
    assert matcher.all_match([value + "!"]) is True


def test_the_python_pattern_is_atomic_per_value() -> None:
    compiled = re.compile("(?>(?:\\d+)\\n)*+", re.ASCII)
    assert compiled.fullmatch("12\n3\n") is not None
    matcher = Pattern("\\d+", "r")
    assert matcher.all_match(["12", "3"]) is True
    assert matcher.all_match(["12", "3\n4"]) is False  # a newline inside a value
    assert matcher.all_match(["12", None, "3"]) is True  # nulls pass
    assert matcher.all_match([None, None]) is True
    assert matcher.all_match(["12", 3]) is False


@pytest.mark.parametrize("pattern", ["(a+)+\\1", "(?<=x)y", "[z-a]"])
def test_a_refused_pattern_is_one_clear_error_and_nothing_on_stderr(
    pattern: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """RE2's C++ log would print the reason a second time (and a notice about its
    logging) on the process's stderr, in the middle of `reflow validate`'s output;
    the error itself gives the reason as text, not as the binding's bytes."""
    from reflow.errors import ConfigError
    from reflow.table.functions import check_regex

    with pytest.raises(ConfigError) as refused:
        Pattern(pattern, "format")
    with pytest.raises(ValueError) as refused_in_sql:
        check_regex(pattern)
    for message in (str(refused.value), str(refused_in_sql.value)):
        assert "is not a" in message and "b'" not in message and 'b"' not in message
    assert capfd.readouterr().err == ""
