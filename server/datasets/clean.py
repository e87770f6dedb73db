"""The cleaning pipeline: one set of rules applied to every export format.

For each value of a row read by :mod:`server.datasets.reader`:

1. **Whitespace** is normalised: leading and trailing whitespace removed, runs of spaces and tabs become
   one space (line breaks are kept in multi-line text), choice lists are re-joined with single spaces;
   a value that is only whitespace becomes empty.
2. **Types** follow the form's bind types: ``int`` → integer, ``decimal`` → decimal number, ``date`` →
   ``YYYY-MM-DD``, ``dateTime`` → ISO 8601 as sent, ``geopoint`` → latitude/longitude/altitude/accuracy,
   ``select`` (select_multiple) → list of choices. A value that does not fit its type is kept as text
   and flagged.
3. **Checks** that can be re-run without evaluating the whole form are re-run and *flagged, never
   fixed*: a ``required`` question left empty (only when neither it nor a group around it has a
   ``relevant`` condition, since a skipped question is legitimately empty, and only when the
   submission's form version has the question); a ``constraint`` made of comparisons of ``.`` with
   numbers or text, ``string-length(.)``, ``regex(., '...')``, ``and``/``or`` and parentheses (other
   constraints — ``today()``, other questions — are not re-run); values that do not fit the type.
   Each problem becomes one entry of the row's ``_issues`` column: ``<question>: <problem>``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from server.datasets.schema import Field

_SPACES = re.compile(r"[ \t\u00a0]+")
_WHITESPACE = re.compile(r"\s+")
NEEDS_NORMALISING = re.compile(r"[\t\n\r\f\v\u00a0]| {2}|^\s|\s$")
_INT = re.compile(r"^[+-]?\d+$")


def normalise(f: Field, value: str | None) -> str | None:
    """Whitespace rule (module docstring, 1)."""
    if value is None:
        return None
    if not NEEDS_NORMALISING.search(value):
        return value or None  # the common case: one scan, nothing to change
    if f.multiline:
        lines = [_SPACES.sub(" ", line).strip() for line in value.replace("\r\n", "\n").split("\n")]
        text = "\n".join(lines).strip()
    else:
        text = _WHITESPACE.sub(" ", value).strip()
    return text or None


@dataclass
class Geopoint:
    latitude: float
    longitude: float
    altitude: float | None = None
    accuracy: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return {
            "latitude": self.latitude,
            "longitude": self.longitude,
            "altitude": self.altitude,
            "accuracy": self.accuracy,
        }


def parse_geopoint(value: str) -> Geopoint | None:
    parts = value.split()
    try:
        numbers = [float(p) for p in parts[:4]]
    except ValueError:
        return None
    if len(numbers) < 2 or not (-90 <= numbers[0] <= 90 and -180 <= numbers[1] <= 180):
        return None
    return Geopoint(*numbers)  # type: ignore[arg-type]


TYPED_KINDS = {"int", "decimal", "date", "dateTime", "geopoint"}


def typed(f: Field, value: str) -> tuple[Any, str | None]:
    """(typed value, problem or None) for a normalised, non-empty value (module docstring, 2)."""
    kind = f.type
    if kind == "int":
        if _INT.match(value):
            return int(value), None
        return value, "not an integer"
    if kind == "decimal":
        try:
            number = Decimal(value)
        except InvalidOperation:
            return value, "not a number"
        return (number if number.is_finite() else value), (None if number.is_finite() else "not a number")
    if kind == "date":
        try:
            return dt.date.fromisoformat(value[:10]).isoformat(), None
        except ValueError:
            return value, "not a date"
    if kind == "dateTime":
        try:
            dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value, "not a date and time"
        return value, None
    if kind == "geopoint":
        point = parse_geopoint(value)
        return (point, None) if point is not None else (value, "not a location")
    if kind == "select":
        return value.split(), None
    return value, None


# ---------------------------------------------------------------------------------- constraints

_TOKEN = re.compile(
    r"\s*(?:(?P<num>-?\d+(?:\.\d+)?)|(?P<str>'[^']*'|\"[^\"]*\")|(?P<op><=|>=|!=|=|<|>)"
    r"|(?P<punct>[(),])|(?P<word>string-length|regex|and|or|\.))"
)

Check = Callable[[str], bool]


class _Unsupported(Exception):
    pass


class _Parser:
    def __init__(self, expr: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        expr = expr.strip()
        while pos < len(expr):
            match = _TOKEN.match(expr, pos)
            if match is None or match.end() == pos:
                raise _Unsupported(expr)
            kind = match.lastgroup or ""
            self.tokens.append((kind, match.group(kind)))
            pos = match.end()
            while pos < len(expr) and expr[pos].isspace():
                pos += 1
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, text: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (text is not None and token[1] != text):
            raise _Unsupported(text)
        self.i += 1
        return token

    def parse(self) -> Check:
        check = self.disjunction()
        if self.peek() is not None:
            raise _Unsupported("trailing")
        return check

    def disjunction(self) -> Check:
        parts = [self.conjunction()]
        while self.peek() == ("word", "or"):
            self.take()
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else (lambda v: any(p(v) for p in parts))

    def conjunction(self) -> Check:
        parts = [self.factor()]
        while self.peek() == ("word", "and"):
            self.take()
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else (lambda v: all(p(v) for p in parts))

    def factor(self) -> Check:
        token = self.peek()
        if token == ("punct", "("):
            self.take()
            inner = self.disjunction()
            self.take(")")
            return inner
        if token == ("word", "regex"):
            self.take()
            self.take("(")
            self.take(".")
            self.take(",")
            kind, text = self.take()
            if kind != "str":
                raise _Unsupported("regex")
            self.take(")")
            pattern = re.compile(text[1:-1])
            return lambda v: pattern.search(v) is not None
        left = self.operand()
        kind, op = self.take()
        if kind != "op":
            raise _Unsupported(op)
        right = self.operand()
        return _comparison(left, op, right)

    def operand(self) -> Callable[[str], Any]:
        kind, text = self.take()
        if text == ".":
            return lambda v: v
        if kind == "num":
            number = float(text)
            return lambda v: number
        if kind == "str":
            literal = text[1:-1]
            return lambda v: literal
        if text == "string-length":
            self.take("(")
            self.take(".")
            self.take(")")
            return lambda v: float(len(v))
        raise _Unsupported(text)


def _comparison(left: Callable[[str], Any], op: str, right: Callable[[str], Any]) -> Check:
    def check(value: str) -> bool:
        a, b = left(value), right(value)
        if isinstance(a, float) or isinstance(b, float) or op not in ("=", "!="):
            try:
                a, b = float(a), float(b)
            except ValueError:
                return False
        return {
            "=": a == b,
            "!=": a != b,
            "<": a < b,
            "<=": a <= b,
            ">": a > b,
            ">=": a >= b,
        }[op]

    return check


_COMPILED: dict[str, Check | None] = {}


def compile_constraint(expr: str | None) -> Check | None:
    """A check for a simple constraint, or None when it cannot be re-run here (module docstring, 3)."""
    if not expr:
        return None
    if expr not in _COMPILED:
        try:
            _COMPILED[expr] = _Parser(expr).parse()
        except (_Unsupported, re.error, ValueError):
            _COMPILED[expr] = None
    return _COMPILED[expr]


@dataclass(frozen=True)
class Issue:
    """One problem of one value; ``text(False)`` leaves the value out (for redacted fields)."""

    field: Field
    problem: str
    value: str | None = None

    def text(self, show_value: bool = True) -> str:
        quoted = f" ({self.value!r})" if show_value and self.value is not None else ""
        return f"{self.field.name}: {self.problem}{quoted}"


@dataclass
class CleanRow:
    """One row after cleaning: typed values by field path, and its issues in order."""

    values: dict[str, str] = field(default_factory=dict)  # normalised text, empty values left out
    issues: list[Issue] = field(default_factory=list)


def clean_values(fields: Iterable[Field], raw: dict[str, str], form_version: str) -> CleanRow:
    """Clean one row's values: ``fields`` are the row's table's leaf fields. Types are checked here;
    the typed values themselves are made by the formats that want them (:func:`typed`)."""
    out = CleanRow()
    for f in fields:
        text = raw.get(f.rel)
        value = normalise(f, text) if text is not None else None
        if value is None:
            if issue := required_issue(f, form_version):
                out.issues.append(issue)
            continue
        if issue := check_value(f, value):
            out.issues.append(issue)
        out.values[f.rel] = value
    return out


def check_value(f: Field, value: str) -> Issue | None:
    """The problem of one normalised, non-empty value (type, then simple constraint), if any."""
    problem = typed(f, value)[1] if f.type in TYPED_KINDS else None
    if problem:
        return Issue(f, problem, value)
    check = compile_constraint(f.constraint)
    if check is not None and not _safe(check, value):
        return Issue(f, f"breaks its constraint {f.constraint}", value)
    return None


def required_issue(f: Field, form_version: str) -> Issue | None:
    """An empty value of a required question that was certainly asked (module docstring, 3)."""
    if f.required and not f.conditional and not f.calculate and form_version in f.versions:
        return Issue(f, "required but empty")
    return None


def needs_normalising(value: str) -> bool:
    return NEEDS_NORMALISING.search(value) is not None


def _safe(check: Check, value: str) -> bool:
    try:
        return check(value)
    except (ValueError, TypeError):
        return False
