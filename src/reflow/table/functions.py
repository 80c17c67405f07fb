"""The scalar functions of reflow SQL: strings, numbers and time, as Flink SQL names them.

Each function takes Python values and returns one; ``expressions`` compiles a call
into a closure that gives NULL when an argument is NULL (unless the function
takes NULLs itself, as ``NULLIF`` and ``CONCAT_WS`` do). A value a function cannot
take (``SQRT(-1)``, a text that is no time) raises, and the job's error policy
handles that row.

Time is what a ``TIMESTAMP`` column holds: epoch milliseconds (``window_start``,
``window_end`` and event time are too). Functions of time also take an ISO-8601
text (``2024-05-01T10:00:00Z``, ``2024-05-01 10:00:00``) and a ``datetime`` (what
a database source gives); a time without a zone is UTC, and every result is in
UTC (Flink's session time zone set to UTC). Formats are Java's
(``yyyy-MM-dd HH:mm:ss``), as in Flink's ``DATE_FORMAT``.

SQL from a job file or the REST API is untrusted: no function can take more than
linear time in its input (``LIKE`` is matched segment by segment, never by a
backtracking regex), and none builds a text longer than ``MAX_TEXT`` characters.
"""

from __future__ import annotations

import calendar
import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Any

from reflow.operators.quality.patterns import re2_compile, re2_reason

__all__ = [
    "FUNCTIONS",
    "MAX_TEXT",
    "Function",
    "check_format",
    "check_regex",
    "like_matcher",
    "mod",
    "text_of",
    "timestamp_ms",
]

MAX_TEXT = 1 << 24
"""The longest text (in characters) ``REPEAT``, ``LPAD`` and ``RPAD`` build."""

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def text_of(value: Any) -> str:
    """A value as SQL text: booleans as ``TRUE``/``FALSE``."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    return str(value)


# -- time ---------------------------------------------------------------------------------


def timestamp_ms(value: Any) -> int:
    """A time as epoch milliseconds: from epoch milliseconds, an ISO-8601 text or a
    ``datetime``/``date`` (without a zone: UTC)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"{value!r} is not a time: give epoch milliseconds or an ISO-8601 text "
                "such as 2024-05-01T10:00:00Z"
            ) from None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return _ms_of(value)
    if isinstance(value, date):
        return _ms_of(datetime(value.year, value.month, value.day, tzinfo=UTC))
    raise ValueError(f"{value!r} is neither epoch milliseconds nor an ISO-8601 time")


def _datetime(value: Any) -> datetime:
    return EPOCH + timedelta(milliseconds=timestamp_ms(value))


def _ms_of(moment: datetime) -> int:
    return int((moment - EPOCH) // _MS)


# Java's date-format letters reflow takes, with how each formats a UTC datetime
# (given the letter's count); ``_PARSE_LETTERS`` says what each reads.
def _year(d: datetime, n: int) -> str:
    return f"{d.year % 100:02d}" if n == 2 else f"{d.year:0{n}d}"


# English names whatever the machine's locale (calendar's follow LC_TIME).
_MONTHS = (
    *("January", "February", "March", "April", "May", "June", "July", "August"),
    *("September", "October", "November", "December"),
)
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _month(d: datetime, n: int) -> str:
    if n >= 4:
        return _MONTHS[d.month - 1]
    if n == 3:
        return _MONTHS[d.month - 1][:3]
    return f"{d.month:0{n}d}"


def _fraction(d: datetime, n: int) -> str:
    millis = f"{d.microsecond // 1000:03d}"
    return millis[:n] if n <= 3 else millis + "0" * (n - 3)


def _weekday(d: datetime, n: int) -> str:
    return _DAYS[d.weekday()] if n >= 4 else _DAYS[d.weekday()][:3]


def _zone(d: datetime, n: int) -> str:
    return "+0000"


_FORMAT_LETTERS: dict[str, Callable[[datetime, int], str]] = {
    "y": _year,
    "M": _month,
    "d": lambda d, n: f"{d.day:0{n}d}",
    "H": lambda d, n: f"{d.hour:0{n}d}",
    "h": lambda d, n: f"{(d.hour % 12) or 12:0{n}d}",
    "m": lambda d, n: f"{d.minute:0{n}d}",
    "s": lambda d, n: f"{d.second:0{n}d}",
    "S": _fraction,
    "a": lambda d, n: "AM" if d.hour < 12 else "PM",
    "E": _weekday,
    "D": lambda d, n: f"{d.timetuple().tm_yday:0{n}d}",
    "Z": _zone,
    "X": lambda d, n: "Z",
}
# Parsing: the letters a time is read from, each as (regex, field).
_PARSE_LETTERS: dict[str, tuple[str, str]] = {
    "y": (r"\d{4}", "year"),
    "M": (r"\d{1,2}", "month"),
    "d": (r"\d{1,2}", "day"),
    "H": (r"\d{1,2}", "hour"),
    "m": (r"\d{1,2}", "minute"),
    "s": (r"\d{1,2}", "second"),
    "S": (r"\d{1,9}", "fraction"),
}


def _tokens(pattern: str) -> list[tuple[str, int] | str]:
    """A Java date format as (letter, count) fields and literal texts; raises
    ValueError naming what it cannot take."""
    tokens: list[tuple[str, int] | str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "'":  # quoted text; '' is a quote
            end = pattern.find("'", i + 1)
            if end == i + 1:
                tokens.append("'")
                i += 2
                continue
            if end < 0:
                raise ValueError(f"date format {pattern!r}: a quote ' is not closed")
            tokens.append(pattern[i + 1 : end])
            i = end + 1
        elif ch.isascii() and ch.isalpha():
            j = i
            while j < len(pattern) and pattern[j] == ch:
                j += 1
            if ch not in _FORMAT_LETTERS:
                known = "".join(sorted(_FORMAT_LETTERS))
                raise ValueError(
                    f"date format {pattern!r}: the letter {ch!r} is not supported "
                    f"(letters: {known}; put text in single quotes, as 'T')"
                )
            tokens.append((ch, j - i))
            i = j
        else:
            tokens.append(ch)
            i += 1
    return tokens


@functools.lru_cache(maxsize=256)
def _formatter(pattern: str) -> Callable[[datetime], str]:
    tokens = _tokens(pattern)

    def format_(moment: datetime) -> str:
        return "".join(
            token if isinstance(token, str) else _FORMAT_LETTERS[token[0]](moment, token[1])
            for token in tokens
        )

    return format_


@functools.lru_cache(maxsize=256)
def _parser(pattern: str) -> Callable[[str], datetime]:
    regex: list[str] = []
    fields: list[str] = []
    for token in _tokens(pattern):
        if isinstance(token, str):
            regex.append(re.escape(token))
            continue
        letter, count = token
        if letter not in _PARSE_LETTERS:
            raise ValueError(
                f"date format {pattern!r}: the letter {letter!r} can format a time but not "
                f"read one (reading takes {''.join(_PARSE_LETTERS)})"
            )
        group, field = _PARSE_LETTERS[letter]
        if letter == "y" and count != 4:  # 'yy' would read 24 as the year 24
            raise ValueError(f"date format {pattern!r}: to read a year, write yyyy")
        if letter not in "yS" and count > 2:  # 'MMM' is a name: read as digits, nonsense
            raise ValueError(
                f"date format {pattern!r}: {letter * count} can format a time but not read "
                f"one (write {letter * 2})"
            )
        if field in fields:
            raise ValueError(f"date format {pattern!r}: the {field} is given twice")
        regex.append(f"({group})" if count == 1 or letter == "S" else f"(\\d{{{count}}})")
        fields.append(field)
    compiled = re.compile("".join(regex))

    def parse(text: str) -> datetime:
        match = compiled.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"{text!r} does not have the date format {pattern!r}")
        values = dict(zip(fields, match.groups(), strict=True))
        fraction = values.pop("fraction", "0")
        micros = int(fraction.ljust(6, "0")[:6])
        parts = {k: int(v) for k, v in values.items()}
        return datetime(
            parts.get("year", 1970),
            parts.get("month", 1),
            parts.get("day", 1),
            parts.get("hour", 0),
            parts.get("minute", 0),
            parts.get("second", 0),
            micros,
            tzinfo=UTC,
        )

    return parse


def check_format(pattern: str, *, parsing: bool) -> None:
    """Raise ValueError if ``pattern`` is no date format reflow can format (or, with
    ``parsing``, read) times with."""
    _parser(pattern) if parsing else _formatter(pattern)


DEFAULT_FORMAT = "yyyy-MM-dd HH:mm:ss"


def date_format(value: Any, pattern: str) -> str:
    return _formatter(pattern)(_datetime(value))


def from_unixtime(seconds: Any, pattern: str = DEFAULT_FORMAT) -> str:
    return _formatter(pattern)(EPOCH + timedelta(seconds=int(seconds)))


def to_timestamp(text: Any, pattern: str | None = None) -> int:
    if pattern is None:
        return timestamp_ms(text)
    return _ms_of(_parser(pattern)(str(text)))


def unix_timestamp(text: Any, pattern: str | None = None) -> int:
    return to_timestamp(text, pattern) // 1000


def to_timestamp_ltz(amount: Any, precision: int = 3) -> int:
    if precision == 0:
        return int(amount * 1000) if isinstance(amount, float) else int(amount) * 1000
    if precision == 3:
        return int(amount)
    raise ValueError(f"TO_TIMESTAMP_LTZ precision {precision}: use 0 (seconds) or 3 (milliseconds)")


def _extract(unit: str, value: Any) -> int:
    d = _datetime(value)
    match unit:
        case "YEAR":
            return d.year
        case "QUARTER":
            return (d.month - 1) // 3 + 1
        case "MONTH":
            return d.month
        case "WEEK":
            return d.isocalendar()[1]
        case "DAY" | "DAYOFMONTH":
            return d.day
        case "DOY" | "DAYOFYEAR":
            return d.timetuple().tm_yday
        case "DOW" | "DAYOFWEEK":  # 1 = Sunday ... 7 = Saturday, as Flink
            return (d.weekday() + 1) % 7 + 1
        case "HOUR":
            return d.hour
        case "MINUTE":
            return d.minute
        case "SECOND":
            return d.second
        case "MILLISECOND":  # the seconds too, as Flink: 1.5 s past the minute is 1500
            return d.second * 1000 + d.microsecond // 1000
    raise ValueError(f"EXTRACT of {unit}")


EXTRACT_UNITS = (
    *("YEAR", "QUARTER", "MONTH", "WEEK", "DAY", "DAYOFMONTH", "DOY", "DAYOFYEAR"),
    *("DOW", "DAYOFWEEK", "HOUR", "MINUTE", "SECOND", "MILLISECOND"),
)

_FIXED_UNITS_MS = {
    "MILLISECOND": 1,
    "SECOND": 1_000,
    "MINUTE": 60_000,
    "HOUR": 3_600_000,
    "DAY": 86_400_000,
    "WEEK": 7 * 86_400_000,
}
_MONTH_UNITS = {"MONTH": 1, "QUARTER": 3, "YEAR": 12}
TIME_UNITS = (*_FIXED_UNITS_MS, *_MONTH_UNITS)


def _add_months(d: datetime, months: int) -> datetime:
    index = d.year * 12 + d.month - 1 + months
    year, month = divmod(index, 12)
    day = min(d.day, calendar.monthrange(year, month + 1)[1])  # Jan 31 + 1 month: Feb 28/29
    return d.replace(year=year, month=month + 1, day=day)


def timestamp_add(unit: str, amount: Any, value: Any) -> int:
    if unit in _FIXED_UNITS_MS:
        return timestamp_ms(value) + int(amount) * _FIXED_UNITS_MS[unit]
    return _ms_of(_add_months(_datetime(value), int(amount) * _MONTH_UNITS[unit]))


def _months_between(start: datetime, end: datetime) -> int:
    if end < start:
        return -_months_between(end, start)
    months = (end.year - start.year) * 12 + end.month - start.month
    if (end.day, end.time()) < (start.day, start.time()):  # the last month is not whole
        months -= 1
    return months


def timestamp_diff(unit: str, start: Any, end: Any) -> int:
    """Whole ``unit``s from ``start`` to ``end`` (negative when ``end`` is earlier),
    truncated toward zero."""
    if unit in _FIXED_UNITS_MS:
        delta = timestamp_ms(end) - timestamp_ms(start)
        whole = abs(delta) // _FIXED_UNITS_MS[unit]
        return whole if delta >= 0 else -whole
    months = _months_between(_datetime(start), _datetime(end))
    step = _MONTH_UNITS[unit]
    return abs(months) // step * (1 if months >= 0 else -1)


FLOOR_UNITS = ("MILLISECOND", "SECOND", "MINUTE", "HOUR", "DAY", "MONTH", "QUARTER", "YEAR")


def floor_time(value: Any, unit: str) -> int:
    if unit in _FIXED_UNITS_MS:
        size = _FIXED_UNITS_MS[unit]
        return timestamp_ms(value) // size * size
    d = _datetime(value)
    month = d.month if unit == "MONTH" else 1 if unit == "YEAR" else (d.month - 1) // 3 * 3 + 1
    return _ms_of(datetime(d.year, month, 1, tzinfo=UTC))


def ceil_time(value: Any, unit: str) -> int:
    floor = floor_time(value, unit)
    if floor == timestamp_ms(value):
        return floor
    if unit in _FIXED_UNITS_MS:
        return floor + _FIXED_UNITS_MS[unit]
    return _ms_of(_add_months(_datetime(floor), _MONTH_UNITS[unit]))


# -- strings --------------------------------------------------------------------------------


def _substring(s: str, start: int, length: int | None = None) -> str:
    """Characters from the ``start``-th (1-based; a negative start counts from the
    end, as Flink and DuckDB do; 0 is the place before the first), ``length`` of them."""
    begin = start - 1 if start > 0 else len(s) + start if start < 0 else -1
    end = len(s) if length is None else begin + length
    return s[max(begin, 0) : max(end, 0)]


def _left(s: str, n: int) -> str:
    return s[:n] if n > 0 else ""


def _right(s: str, n: int) -> str:
    return s[-n:] if n > 0 else ""


def _bounded(length: int) -> None:
    if length > MAX_TEXT:
        raise ValueError(f"a text of {length} characters is more than the {MAX_TEXT} allowed")


def _repeat(s: str, n: int) -> str:
    if n <= 0:
        return ""
    _bounded(len(s) * n)
    return s * n


def _pad(s: str, length: int, fill: str, *, left: bool) -> str | None:
    if length < 0 or (not fill and length > len(s)):
        return None
    if length <= len(s):
        return s[:length]
    _bounded(length)
    padding = (fill * ((length - len(s)) // len(fill) + 1))[: length - len(s)]
    return padding + s if left else s + padding


def _position(needle: str, haystack: str, start: int = 1) -> int:
    """1-based, 0 when absent; looking from the ``start``-th character."""
    return haystack.find(needle, max(start - 1, 0)) + 1


def _concat_ws(separator: Any, *parts: Any) -> str | None:
    if separator is None:
        return None
    return text_of(separator).join(text_of(p) for p in parts if p is not None)


def _nullif(a: Any, b: Any) -> Any:
    return None if a is not None and b is not None and a == b else a


def like_matcher(
    pattern: str, escape: str | None = None, *, ignore_case: bool = False
) -> Callable[[str], bool]:
    """Whether a text matches the SQL ``LIKE`` pattern (``%`` any run, ``_`` one
    character), in time linear in the text times the pattern: the parts between
    ``%`` have fixed lengths, so the leftmost place of each is the right one (a
    regex of several ``.*`` backtracks: ``%a%a%a%a%a%b`` took 3.7 s on 100 characters)."""
    segments: list[list[str]] = [[]]
    chars = iter(pattern)
    for ch in chars:
        if escape is not None and ch == escape:
            segments[-1].append(re.escape(next(chars, "")))
        elif ch == "%":
            segments.append([])
        elif ch == "_":
            segments[-1].append(".")
        else:
            segments[-1].append(re.escape(ch))
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    parts = [(re.compile("".join(s), flags), len(s)) for s in segments]
    if len(parts) == 1:
        whole = parts[0][0].fullmatch
        return lambda text: whole(text) is not None
    (first, first_len), *middle, (last, last_len) = parts
    middle = [(p, n) for p, n in middle if n]  # %% is %

    def match(text: str) -> bool:
        if len(text) < first_len + last_len or first.match(text) is None:
            return False
        end = len(text) - last_len
        if last.match(text, end) is None:
            return False
        at = first_len
        for part, _ in middle:
            found = part.search(text, at, end)
            if found is None:
                return False
            at = found.end()
        return True

    return match


@functools.lru_cache(maxsize=256)
def _regex(pattern: str) -> Any:
    """``pattern`` compiled by RE2 (time linear in the text: SQL is untrusted input);
    ValueError if RE2 does not take it."""
    import re2  # type: ignore[import-untyped]

    try:
        return re2_compile(pattern)
    except (re2.error, re.error, TypeError, ValueError) as exc:
        raise ValueError(
            f"{pattern!r} is not a regular expression RE2 takes ({re2_reason(exc)}); "
            "RE2 has no look-arounds or back-references"
        ) from None


def check_regex(pattern: str) -> None:
    """Raise ValueError if ``pattern`` is no regular expression RE2 takes."""
    _regex(pattern)


def _replacement(java: str) -> str:
    """A Java replacement (``$1`` a group, ``\\$`` a dollar) as a Python one."""
    out: list[str] = []
    i = 0
    while i < len(java):
        ch = java[i]
        if ch == "\\" and i + 1 < len(java):
            literal = java[i + 1]
            out.append("\\\\" if literal == "\\" else literal)
            i += 2
        elif ch == "$" and i + 1 < len(java) and java[i + 1].isdigit():
            j = i + 1
            while j < len(java) and java[j].isdigit():
                j += 1
            out.append(f"\\g<{java[i + 1 : j]}>")
            i = j
        else:
            out.append("\\\\" if ch == "\\" else ch)
            i += 1
    return "".join(out)


def _regexp(text: str, pattern: str) -> bool:
    return _regex(pattern).search(text) is not None


def _regexp_replace(text: str, pattern: str, replacement: str) -> str:
    return str(_regex(pattern).sub(_replacement(replacement), text))


def _regexp_extract(text: str, pattern: str, index: int = 0) -> str | None:
    regex = _regex(pattern)
    if not 0 <= index <= regex.groups:
        raise ValueError(f"REGEXP_EXTRACT: {pattern!r} has no group {index}")
    match = regex.search(text)
    return None if match is None else match.group(index)


# -- numbers ------------------------------------------------------------------------------


def _round(value: Any, digits: int = 0) -> Any:
    if isinstance(value, int):
        if digits >= 0:
            return value
        factor = 10**-digits
        return int(Decimal(value / factor).quantize(Decimal(1), ROUND_HALF_UP)) * factor
    quantum = Decimal(1).scaleb(-digits)
    return float(Decimal(repr(value)).quantize(quantum, ROUND_HALF_UP))


def _truncate(value: Any, digits: int = 0) -> Any:
    if isinstance(value, int):
        if digits >= 0:
            return value
        factor = 10**-digits
        return abs(value) // factor * factor * (1 if value >= 0 else -1)
    quantum = Decimal(1).scaleb(-digits)
    return float(Decimal(repr(value)).quantize(quantum, ROUND_DOWN))


def mod(a: Any, b: Any) -> Any:
    """SQL MOD: the sign of the dividend (Flink)."""
    if type(a) is int and type(b) is int:
        r = abs(a) % abs(b)
        return -r if a < 0 else r
    return math.fmod(a, b)


def _sign(value: Any) -> Any:
    sign = (value > 0) - (value < 0)
    return float(sign) if isinstance(value, float) else sign


def _greatest(*values: Any) -> Any:
    return max(values)


def _least(*values: Any) -> Any:
    return min(values)


@dataclass(frozen=True, slots=True)
class Function:
    """A scalar function: how many arguments it takes, and whether it is given NULL
    arguments (otherwise a NULL argument makes the result NULL without a call)."""

    fn: Callable[..., Any]
    least: int
    most: int | None
    takes_nulls: bool = False


def _f(fn: Callable[..., Any], least: int, most: int | None = -1, nulls: bool = False) -> Function:
    return Function(fn, least, least if most == -1 else most, nulls)


FUNCTIONS: dict[str, Function] = {
    # strings
    "UPPER": _f(str.upper, 1),
    "LOWER": _f(str.lower, 1),
    "LENGTH": _f(len, 1),
    "CHAR_LENGTH": _f(len, 1),
    "CHARACTER_LENGTH": _f(len, 1),
    "TRIM": _f(str.strip, 1, 2),
    "LTRIM": _f(str.lstrip, 1, 2),
    "RTRIM": _f(str.rstrip, 1, 2),
    "SUBSTRING": _f(_substring, 2, 3),
    "SUBSTR": _f(_substring, 2, 3),
    "CONCAT": _f(lambda *parts: "".join(text_of(p) for p in parts), 1, None),
    "CONCAT_WS": _f(_concat_ws, 2, None, nulls=True),
    "REPLACE": _f(lambda s, old, new: text_of(s).replace(old, new), 3),
    "LOCATE": _f(_position, 2, 3),
    "LEFT": _f(_left, 2),
    "RIGHT": _f(_right, 2),
    "LPAD": _f(functools.partial(_pad, left=True), 3),
    "RPAD": _f(functools.partial(_pad, left=False), 3),
    "REPEAT": _f(_repeat, 2),
    "REVERSE": _f(lambda s: s[::-1], 1),
    "NULLIF": _f(_nullif, 2, nulls=True),
    "REGEXP": _f(_regexp, 2),
    "REGEXP_LIKE": _f(_regexp, 2),
    "REGEXP_REPLACE": _f(_regexp_replace, 3),
    "REGEXP_EXTRACT": _f(_regexp_extract, 2, 3),
    # numbers
    "ABS": _f(abs, 1),
    "FLOOR": _f(math.floor, 1),
    "CEIL": _f(math.ceil, 1),
    "CEILING": _f(math.ceil, 1),
    "SQRT": _f(math.sqrt, 1),
    "POWER": _f(lambda a, b: float(a) ** b, 2),
    "POW": _f(lambda a, b: float(a) ** b, 2),
    "EXP": _f(math.exp, 1),
    "LN": _f(math.log, 1),
    "LOG10": _f(math.log10, 1),
    "LOG2": _f(math.log2, 1),
    "LOG": _f(lambda base, x: math.log(x) / math.log(base), 2),
    "SIGN": _f(_sign, 1),
    "ROUND": _f(_round, 1, 2),
    "TRUNCATE": _f(_truncate, 1, 2),
    "MOD": _f(mod, 2),
    "GREATEST": _f(_greatest, 1, None),
    "LEAST": _f(_least, 1, None),
    # time
    "TO_TIMESTAMP": _f(to_timestamp, 1, 2),
    "TO_TIMESTAMP_LTZ": _f(to_timestamp_ltz, 1, 2),
    "UNIX_TIMESTAMP": _f(unix_timestamp, 1, 2),
    "FROM_UNIXTIME": _f(from_unixtime, 1, 2),
    "DATE_FORMAT": _f(date_format, 2),
    "EXTRACT": _f(_extract, 2),
    "TIMESTAMPADD": _f(timestamp_add, 3),
    "TIMESTAMPDIFF": _f(timestamp_diff, 3),
    "FLOOR_TIME": _f(floor_time, 2),
    "CEIL_TIME": _f(ceil_time, 2),
}
"""By upper-case name. ``EXTRACT``, ``TIMESTAMPADD`` and ``TIMESTAMPDIFF`` take
their unit as the first argument (a text), ``FLOOR_TIME``/``CEIL_TIME`` are
``FLOOR(ts TO unit)``/``CEIL(ts TO unit)``."""

# The parts of a time HOUR(ts), YEAR(ts), ... give: EXTRACT of that unit.
PART_FUNCTIONS = {
    "YEAR": "YEAR",
    "QUARTER": "QUARTER",
    "MONTH": "MONTH",
    "WEEK": "WEEK",
    "DAYOFMONTH": "DAY",
    "DAY_OF_MONTH": "DAY",
    "DAYOFYEAR": "DOY",
    "DAY_OF_YEAR": "DOY",
    "DAYOFWEEK": "DOW",
    "DAY_OF_WEEK": "DOW",
    "HOUR": "HOUR",
    "MINUTE": "MINUTE",
    "SECOND": "SECOND",
}
