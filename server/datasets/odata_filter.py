"""OData ``$filter`` expressions: parsed once, evaluated per row, partly pushed down to SQL.

What is understood (a superset of ODK Central's ``$filter``):

- comparisons ``eq ne lt le gt ge``; ``and``, ``or``, ``not``, parentheses;
- literals: ``'text'`` (``''`` is a quote), numbers, ``true``/``false``/``null`` in any case, dates
  ``2026-05-01`` and date-times ``2026-05-01T10:00:00Z`` (bare or quoted);
- ``__system/submissionDate``, ``__system/updatedAt``, ``__system/submitterId``,
  ``__system/submitterName``, ``__system/reviewState``, ``__system/deviceId``, ``__system/formVersion``,
  ``__system/attachmentsPresent``, ``__system/attachmentsExpected``, ``__system/edits``, ``__id``,
  and form fields by their OData path (``group/question``); on a repeat table ``$root/Submissions/...``
  names the submission's values and a bare path the repeat row's;
- functions ``year month day hour minute second`` (of dates, in UTC), ``now()``, and for text
  ``contains startswith endswith tolower toupper trim length``.

``__system/reviewState`` of a submission nobody reviewed is ``null`` (as in Central); the literal
``'received'`` is accepted as a synonym of that ``null``.

Every expression is evaluated in Python on the values the requester may see (redacted values for a
redacted role, so a filter cannot probe personal data). The top-level ``and`` terms that compare
``submissionDate``, ``updatedAt`` or ``reviewState`` with a literal are also given to the database as
WHERE clauses, so that a date-bounded query never reads the rest of the table.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement

from server import errors
from server.models import ReviewState, Submission

RECEIVED_SYNONYM = ReviewState.RECEIVED.value
MAX_FILTER_LENGTH = 4000
MAX_DEPTH = 64


unparseable = errors.filter_unreadable
unknown_property = errors.unknown_property


# ---------------------------------------------------------------------------------------------- AST


@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class Member:
    path: str  # as written, without a leading $root/Submissions/ (see ``root``)
    root: bool = False  # written as $root/Submissions/...


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Compare:
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class BoolOp:
    op: str  # "and" | "or"
    left: Node
    right: Node


@dataclass(frozen=True)
class Not:
    operand: Node


Node = Literal | Member | Call | Compare | BoolOp | Not

COMPARISONS = {"eq", "ne", "lt", "le", "gt", "ge"}
_DATE_PARTS = {"year", "month", "day", "hour", "minute", "second"}
_FUNCTIONS = {
    **{name: 1 for name in _DATE_PARTS},
    "now": 0,
    "tolower": 1,
    "toupper": 1,
    "trim": 1,
    "length": 1,
    "contains": 2,
    "startswith": 2,
    "endswith": 2,
}

# ------------------------------------------------------------------------------------------- tokens

_DATETIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:\d\d)?"
_TOKEN = re.compile(
    r"(?P<space>\s+)"
    r"|(?P<string>'(?:[^']|'')*')"
    rf"|(?P<datetime>{_DATETIME})(?![\w.:-])"
    r"|(?P<date>\d{4}-\d\d-\d\d)(?![\w.:-])"
    r"|(?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)(?![\w.])"
    r"|(?P<name>\$?[A-Za-z_][\w]*(?:/[A-Za-z_][\w]*)*)"
    r"|(?P<punct>[(),])"
)


@dataclass
class _Token:
    kind: str
    text: str
    at: int


def _tokens(text: str) -> Iterator[_Token]:
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise unparseable(f"unexpected {text[pos : pos + 10]!r}", pos)
        kind = match.lastgroup or ""
        if kind != "space":
            yield _Token(kind, match.group(), pos)
        pos = match.end()


def parse_datetime(text: str) -> dt.datetime | None:
    """An ISO date or date-time as an aware UTC datetime (a date is its midnight, UTC)."""
    raw = text.strip()
    try:
        if len(raw) == 10:
            day = dt.date.fromisoformat(raw)
            return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
        # Collect writes offsets like +07; ISO needs +07:00.
        if re.search(r"[+-]\d\d$", raw):
            raw += ":00"
        value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


# ------------------------------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = list(_tokens(text))
        self.pos = 0
        self.depth = 0

    def peek(self) -> _Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def word(self) -> str | None:
        tok = self.peek()
        return tok.text.lower() if tok is not None and tok.kind == "name" else None

    def take(self) -> _Token:
        tok = self.peek()
        if tok is None:
            raise unparseable("the expression ends too early")
        self.pos += 1
        return tok

    def expect(self, text: str) -> None:
        tok = self.take()
        if tok.text != text:
            raise unparseable(f"expected {text!r} but found {tok.text!r}", tok.at)

    def parse(self) -> Node:
        node = self.or_expr()
        tok = self.peek()
        if tok is not None:
            raise unparseable(f"unexpected {tok.text!r}", tok.at)
        return node

    def or_expr(self) -> Node:
        node = self.and_expr()
        while self.word() == "or":
            self.take()
            node = BoolOp("or", node, self.and_expr())
        return node

    def and_expr(self) -> Node:
        node = self.not_expr()
        while self.word() == "and":
            self.take()
            node = BoolOp("and", node, self.not_expr())
        return node

    def not_expr(self) -> Node:
        if self.word() == "not":
            self.take()
            return Not(self.not_expr())
        return self.comparison()

    def comparison(self) -> Node:
        left = self.primary()
        if self.word() in COMPARISONS:
            op = self.take().text.lower()
            return Compare(op, left, self.primary())
        return left

    def primary(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise unparseable("the expression is nested too deeply")
        try:
            return self._primary()
        finally:
            self.depth -= 1

    def _primary(self) -> Node:
        tok = self.take()
        if tok.text == "(":
            node = self.or_expr()
            self.expect(")")
            return node
        if tok.kind == "string":
            return Literal(tok.text[1:-1].replace("''", "'"))
        if tok.kind in ("datetime", "date"):
            return Literal(parse_datetime(tok.text))
        if tok.kind == "number":
            is_float = any(c in tok.text for c in ".eE")
            return Literal(float(tok.text) if is_float else int(tok.text))
        if tok.kind == "name":
            lower = tok.text.lower()
            if lower in ("true", "false"):
                return Literal(lower == "true")
            if lower == "null":
                return Literal(None)
            nxt = self.peek()
            if nxt is not None and nxt.text == "(" and "/" not in tok.text:
                return self.call(tok)
            return _member(tok)
        raise unparseable(f"unexpected {tok.text!r}", tok.at)

    def call(self, name_tok: _Token) -> Node:
        name = name_tok.text.lower()
        if name not in _FUNCTIONS:
            raise errors.unsupported_function(name_tok.text, name_tok.at)
        self.expect("(")
        args: list[Node] = []
        if self.peek() is not None and self.peek().text != ")":  # type: ignore[union-attr]
            args.append(self.or_expr())
            while self.peek() is not None and self.peek().text == ",":  # type: ignore[union-attr]
                self.take()
                args.append(self.or_expr())
        self.expect(")")
        if len(args) != _FUNCTIONS[name]:
            raise unparseable(f"{name}() takes {_FUNCTIONS[name]} argument(s)", name_tok.at)
        return Call(name, tuple(args))


def _member(tok: _Token) -> Member:
    path = tok.text
    if path.startswith("$"):
        prefix = "$root/Submissions/"
        if not path.startswith(prefix) or len(path) == len(prefix):
            raise unparseable(f"{path!r}: only $root/Submissions/... may start with $", tok.at)
        return Member(path[len(prefix) :], root=True)
    return Member(path)


def parse(text: str) -> Node:
    if len(text) > MAX_FILTER_LENGTH:
        raise unparseable(f"longer than {MAX_FILTER_LENGTH} characters")
    if not text.strip():
        raise unparseable("the expression is empty")
    return _Parser(text).parse()


def members(node: Node) -> Iterator[Member]:
    if isinstance(node, Member):
        yield node
    elif isinstance(node, Call):
        for arg in node.args:
            yield from members(arg)
    elif isinstance(node, Compare | BoolOp):
        yield from members(node.left)
        yield from members(node.right)
    elif isinstance(node, Not):
        yield from members(node.operand)


# ---------------------------------------------------------------------------------------- evaluation

Resolver = Callable[[Member], Any]


def _as_datetime(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    if isinstance(value, str):
        return parse_datetime(value)
    return None


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _coerce(left: Any, right: Any) -> tuple[Any, Any] | None:
    """Both sides as one comparable type, or None when they cannot be compared."""
    if isinstance(left, bool) or isinstance(right, bool):
        if isinstance(left, str):
            left = left.strip().lower() in ("true", "1")
        if isinstance(right, str):
            right = right.strip().lower() in ("true", "1")
        return (left, right) if isinstance(left, bool) and isinstance(right, bool) else None
    if isinstance(left, dt.date) or isinstance(right, dt.date):
        a, b = _as_datetime(left), _as_datetime(right)
        return (a, b) if a is not None and b is not None else None
    if isinstance(left, int | float) or isinstance(right, int | float):
        a2, b2 = _as_number(left), _as_number(right)
        return (a2, b2) if a2 is not None and b2 is not None else None
    if isinstance(left, str) and isinstance(right, str):
        return left, right
    return None


def _compare(op: str, left: Any, right: Any) -> bool:
    if left is None or right is None:
        if op == "eq":
            return left is None and right is None
        if op == "ne":
            return not (left is None and right is None)
        return False
    pair = _coerce(left, right)
    if pair is None:
        return op == "ne"
    a, b = pair
    if op == "eq":
        return bool(a == b)
    if op == "ne":
        return bool(a != b)
    if op == "lt":
        return bool(a < b)
    if op == "le":
        return bool(a <= b)
    if op == "gt":
        return bool(a > b)
    return bool(a >= b)


def _call(name: str, args: list[Any]) -> Any:
    if name == "now":
        return dt.datetime.now(dt.UTC)
    if name in _DATE_PARTS:
        value = _as_datetime(args[0])
        return None if value is None else getattr(value, name)
    if any(a is None for a in args):
        return None
    texts = [a if isinstance(a, str) else str(a) for a in args]
    if name == "tolower":
        return texts[0].lower()
    if name == "toupper":
        return texts[0].upper()
    if name == "trim":
        return texts[0].strip()
    if name == "length":
        return len(texts[0])
    if name == "contains":
        return texts[1] in texts[0]
    if name == "startswith":
        return texts[0].startswith(texts[1])
    return texts[0].endswith(texts[1])


def _review_literal(node: Compare) -> Compare:
    """``__system/reviewState eq 'received'`` means "not reviewed": Central's ``null``."""

    def fix(side: Node) -> Node:
        return Literal(None) if isinstance(side, Literal) and side.value == RECEIVED_SYNONYM else side

    if any(isinstance(s, Member) and s.path == "__system/reviewState" for s in (node.left, node.right)):
        return Compare(node.op, fix(node.left), fix(node.right))
    return node


def evaluate(node: Node, resolve: Resolver) -> Any:
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Member):
        return resolve(node)
    if isinstance(node, Call):
        return _call(node.name, [evaluate(a, resolve) for a in node.args])
    if isinstance(node, Compare):
        node = _review_literal(node)
        return _compare(node.op, evaluate(node.left, resolve), evaluate(node.right, resolve))
    if isinstance(node, BoolOp):
        left = _truthy(evaluate(node.left, resolve))
        if node.op == "and":
            return left and _truthy(evaluate(node.right, resolve))
        return left or _truthy(evaluate(node.right, resolve))
    return not _truthy(evaluate(node.operand, resolve))


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1")
    return bool(value)


def matches(node: Node, resolve: Resolver) -> bool:
    return _truthy(evaluate(node, resolve))


# ------------------------------------------------------------------------------------------ pushdown

_SQL_DATES = {
    "__system/submissionDate": Submission.created_at,
    "__system/updatedAt": Submission.updated_at,
}
_FLIP = {"lt": "gt", "le": "ge", "gt": "lt", "ge": "le", "eq": "eq", "ne": "ne"}


def _conjuncts(node: Node) -> Iterator[Node]:
    if isinstance(node, BoolOp) and node.op == "and":
        yield from _conjuncts(node.left)
        yield from _conjuncts(node.right)
    else:
        yield node


def _sql_compare(op: str, column: Any, value: Any) -> ColumnElement[bool]:
    if value is None:
        return column.is_(None) if op == "eq" else column.is_not(None)
    return {  # type: ignore[no-any-return]
        "eq": column == value,
        "ne": column != value,
        "lt": column < value,
        "le": column <= value,
        "gt": column > value,
        "ge": column >= value,
    }[op]


def _sql_term(node: Node, on_root: bool) -> ColumnElement[bool] | None:
    if not isinstance(node, Compare):
        return None
    node = _review_literal(node)
    op, left, right = node.op, node.left, node.right
    if isinstance(right, Member) and isinstance(left, Literal):
        op, left, right = _FLIP[op], right, left
    if not (isinstance(left, Member) and isinstance(right, Literal)):
        return None
    if not on_root and not left.root:
        return None
    path, value = left.path, right.value
    if path in _SQL_DATES:
        if value is None and op not in ("eq", "ne"):
            return None
        when = _as_datetime(value) if value is not None else None
        if value is not None and when is None:
            return None
        return _sql_compare(op, _SQL_DATES[path], when)
    if path == "__system/reviewState" and op in ("eq", "ne"):
        if value is not None and not isinstance(value, str):
            return None
        state = RECEIVED_SYNONYM if value is None else value
        return _sql_compare(op, Submission.review_state, state)
    return None


@dataclass
class Pushdown:
    """What the database can do of a filter: WHERE clauses, and whether they are the whole filter."""

    clauses: list[ColumnElement[bool]]
    complete: bool


def pushdown(node: Node | None, *, on_root: bool = True) -> Pushdown:
    """WHERE clauses equivalent to some top-level ``and`` terms of ``node`` (never stricter)."""
    if node is None:
        return Pushdown([], True)
    clauses, complete = [], True
    for term in _conjuncts(node):
        clause = _sql_term(term, on_root)
        if clause is None:
            complete = False
        else:
            clauses.append(clause)
    return Pushdown(clauses, complete)
