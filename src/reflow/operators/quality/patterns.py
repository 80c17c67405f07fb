"""Regular expressions from job files, matched in linear time by RE2, a batch at a time.

A pattern from a job file or the API is untrusted: Python's ``re`` backtracks,
so ``(a+)+$`` on a long string would hold the event loop for minutes. RE2
matches in time linear in the text whatever the pattern (it refuses
look-arounds and back-references, which need backtracking).

RE2's Python binding costs microseconds per call, so a batch is first matched
in one call: its values joined by newlines against ``(?:(?:PATTERN)\\n)*``.
When no value holds a newline and the pattern cannot match one (read off its
parse), each repetition matches exactly one value, so a match means every value
matches; otherwise (or when the batch fails) values are matched one by one.

RE2's binding lets go of the GIL for each call, and taking it back after the
interpreter's own work in between costs about as much as the match (17 µs
against 9 for a batch of 100 URLs in a running job). For a batch of ASCII
text and a pattern of the simple kind (literals, ``.``, classes of ASCII
characters and digits or word characters, groups, and at most one repetition
whose length can vary, of one character: ``https://x\\.com/item\\?q=\\d+``),
Python's own engine gives RE2's answer (the two read such patterns alike) in
time linear in the text, and matches without letting go: each value is a turn
of a possessive loop, which is atomic, so nothing backtracks from one value
into another, and one varying repetition of one character can only be tried at
each length once.
"""

from __future__ import annotations

import contextlib
import importlib
import re
from collections.abc import Callable
from typing import Any

from reflow.errors import ConfigError

__all__ = ["Pattern", "re2_compile", "re2_reason"]

# Distinct values whose result is remembered for the one-by-one path.
CACHE_SIZE = 65_536
# Pattern syntax Python's parser reads differently from RE2 (classes like
# [[:space:]], Unicode classes, quoting): such patterns skip the batch path.
_RE2_ONLY = ("[[:", "\\p", "\\P", "\\Q", "\\C")


def re2_compile(pattern: str, *, never_capture: bool = False) -> Any:
    """``pattern`` compiled by RE2 with its default options, except that a pattern
    RE2 refuses raises ``re2.error`` without RE2 also writing the reason to stderr
    (its C++ log: a second copy of the error, out of place in a CLI's output)."""
    import re2  # type: ignore[import-untyped]

    options = re2.Options()
    options.log_errors = False
    options.never_capture = never_capture
    return re2.compile(pattern, options)


def re2_reason(exc: BaseException) -> str:
    """Why RE2 refused a pattern, as text (its binding gives bytes)."""
    reason = exc.args[0] if len(exc.args) == 1 else exc
    if isinstance(reason, bytes):
        return reason.decode("utf-8", "replace")
    return str(reason)


class Pattern:
    """A compiled pattern: ``all_match(values)`` for a batch of strings, ``matches(v)``
    for one value."""

    def __init__(self, pattern: str, rule: str) -> None:
        import re2

        if not isinstance(pattern, str) or not pattern:
            raise ConfigError(f"rule {rule!r}: regex needs a non-empty 'pattern'")
        try:
            compiled = re2_compile(pattern)
        except (re2.error, re.error, TypeError, ValueError) as exc:
            raise ConfigError(
                f"rule {rule!r}: pattern {pattern!r} is not a valid RE2 expression "
                f"({re2_reason(exc)}); RE2 has no look-arounds or back-references"
            ) from None
        self._fullmatch: Callable[[str], Any] = compiled.fullmatch
        self._known: dict[str, bool] = {}
        tree = _parse(pattern)
        free = tree is not None and _newline_free(tree)
        self._batch = _batch_matcher(re2, pattern) if free else None
        self._text: Callable[[str], Any] | None = None
        """The batch match by Python's engine, for ASCII text (simple patterns)."""
        if free and _simple(tree, pattern):
            # Possessive: a value once matched is never matched again (each turn
            # of a possessive loop is atomic; an atomic group per value as well
            # costs about 75 instructions a value more and changes nothing).
            with contextlib.suppress(re.error, RecursionError, OverflowError):
                self._text = re.compile(f"(?:(?:{pattern})\n)*+", re.ASCII).fullmatch

    @property
    def batched(self) -> bool:
        """True when ``all_match`` can answer for a whole batch at once."""
        return self._batch is not None

    def matches(self, value: str) -> bool:
        """Whether the pattern matches ``value`` whole (False for a string that is not
        text RE2 can read: a lone surrogate has no UTF-8 form)."""
        known = self._known.get(value)
        if known is None:
            try:
                known = self._fullmatch(value) is not None
            except UnicodeEncodeError:
                known = False
            if len(self._known) >= CACHE_SIZE:
                self._known.clear()
            self._known[value] = known
        return known

    def all_match(self, values: list[Any]) -> bool:
        """True only if every value is None or a string the pattern matches whole
        (False means: look one by one)."""
        if self._batch is None:
            return False
        try:
            joined = "\n".join(values)
        except TypeError:  # nulls (which pass) or non-strings
            values = [v for v in values if v is not None]
            if not values:
                return True
            try:
                joined = "\n".join(values)
            except TypeError:
                return False
        # A value holding a newline would read as two: none may (a search for one
        # character in the values joined without one costs a third of counting the
        # newlines of ``joined``).
        if "\n" in "".join(values):
            return False
        if self._text is not None and joined.isascii():
            return self._text(joined + "\n") is not None
        try:
            text = (joined + "\n").encode()
        except UnicodeEncodeError:  # a lone surrogate: look one by one
            return False
        return self._batch(text)


def _batch_matcher(re2: Any, pattern: str) -> Callable[[bytes], bool] | None:
    try:
        compiled = re2_compile(f"(?:(?:{pattern})\n)*", never_capture=True)
        regexp = compiled._regexp  # the binding's RE2 object: one call, no offsets
        anchor = re2._re2.RE2.Anchor.ANCHOR_BOTH
    except (AttributeError, re2.error):
        return None

    def match(text: bytes) -> bool:
        return bool(regexp.Match(anchor, text, 0, len(text))[0][0] != -1)

    return match


def _parse(pattern: str) -> Any:
    """The pattern as CPython's regex parser reads it (None when it cannot, or the
    pattern holds syntax the two engines read differently)."""
    if any(marker in pattern for marker in _RE2_ONLY):
        return None
    try:
        # CPython's own regex parser (typeshed lists it in some versions only).
        parser: Any = importlib.import_module("re._parser")
        return parser.parse(pattern)
    except Exception:
        return None


def _newline_free(tree: Any) -> bool:
    """True when the parsed pattern cannot match a newline (False when unsure)."""
    c: Any = importlib.import_module("re._constants")
    try:
        return _free(tree, bool(tree.state.flags & c.SRE_FLAG_DOTALL), c)
    except Exception:
        return False


def _simple(tree: Any, pattern: str) -> bool:
    """True for a pattern Python's engine matches as RE2 does on ASCII text, in time
    linear in the text: no flags, anchors, alternatives, back-references or
    look-arounds, character classes of ASCII characters, digits and word
    characters only (``\\s`` differs: Python's holds a vertical tab), and at most
    one repetition whose length varies, of a single character."""
    if "{," in pattern:  # Python reads {,n} as {0,n}; RE2 as the text "{,n}"
        return False
    c: Any = importlib.import_module("re._constants")
    if tree.state.flags & ~c.SRE_FLAG_UNICODE:
        return False
    same = (c.CATEGORY_DIGIT, c.CATEGORY_NOT_DIGIT, c.CATEGORY_WORD, c.CATEGORY_NOT_WORD)
    varying = [0]

    def single(op: Any, av: Any) -> bool:
        """One character: a literal, ``.`` or a class."""
        if op is c.LITERAL or op is c.NOT_LITERAL or op is c.ANY:
            return True
        if op is c.IN:
            return all(
                kind in (c.LITERAL, c.RANGE, c.NEGATE) or (kind is c.CATEGORY and value in same)
                for kind, value in av
            )
        return False

    def walk(items: Any) -> bool:
        for op, av in items:
            if single(op, av):
                continue
            if op is c.SUBPATTERN:
                _, add, remove, body = av
                if add or remove or not walk(body):
                    return False
            elif op is c.MAX_REPEAT or op is c.MIN_REPEAT:
                low, high, body = av
                if len(body) != 1 or not single(*body[0]):
                    return False
                if low != high:
                    varying[0] += 1
                    if varying[0] > 1:
                        return False
            else:
                return False
        return True

    try:
        return walk(tree)
    except Exception:
        return False


_NEWLINE = ord("\n")


def _free(items: Any, dotall: bool, c: Any) -> bool:
    for op, av in items:
        if op is c.LITERAL:
            if av == _NEWLINE:
                return False
        elif op is c.NOT_LITERAL:
            if av != _NEWLINE:
                return False
        elif op is c.ANY:
            if dotall:
                return False
        elif op is c.IN:
            if not _class_free(av, c):
                return False
        elif op is c.BRANCH:
            if not all(_free(branch, dotall, c) for branch in av[1]):
                return False
        elif op is c.SUBPATTERN:
            _, add, remove, body = av
            inner = (dotall or bool(add & c.SRE_FLAG_DOTALL)) and not remove & c.SRE_FLAG_DOTALL
            if not _free(body, inner, c):
                return False
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT):
            if not _free(av[2], dotall, c):
                return False
        elif op is c.ATOMIC_GROUP:
            if not _free(av, dotall, c):
                return False
        elif op is not c.AT:  # anchors match no character; anything else: unsure
            return False
    return True


def _class_free(members: Any, c: Any) -> bool:
    safe = {c.CATEGORY_DIGIT, c.CATEGORY_WORD, c.CATEGORY_NOT_SPACE}
    for op, av in members:
        if op is c.NEGATE:
            return False
        if op is c.LITERAL and av == _NEWLINE:
            return False
        if op is c.RANGE and av[0] <= _NEWLINE <= av[1]:
            return False
        if op is c.CATEGORY and av not in safe:
            return False
        if op not in (c.LITERAL, c.RANGE, c.CATEGORY):
            return False
    return True
