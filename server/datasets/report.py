"""Donor reports: counts of a form's cleaned submissions by a few questions, safe to hand out.

A report is a cross-table: each row is a combination of the ``rows`` dimensions, each column a category
of the optional ``cols`` dimension, with row totals, column totals and the grand total. Counts below k
(``SARHAD_REPORT_MIN_CELL``, default 5) are hidden, and so are the counts that would let a hidden one be
worked out from the totals (:mod:`server.datasets.suppression`). Hidden counts print as ``[c]``.

A dimension is:
- a select_one question (also from a file), counted by its choices, labelled in the report's language;
- an integer question with bands: ``age:0-17,18-24,25-`` (``25-`` is open-ended and shows as ``25+``);
- ``period:day|month|quarter|year`` (when the server received the submission) or ``DATE_QUESTION:month``.

A question tagged ``sensitive`` may be the columns or the last row dimension. As the last of several row
dimensions, every one of its categories is listed under each combination of the others that occurs (a
group's single listed row would tell its answer). Its lines are protected against group disclosure
(:mod:`server.datasets.suppression`, step 3): each combination of the other rows is a group.

Free text, select_multiple (one submission would count in several columns and totals would not add up),
locations, files, questions inside repeats and questions tagged ``personal`` cannot be dimensions.
The submissions are those of an export with default filters (:class:`server.datasets.Filters`): the
current version of each, no rejected, deleted or test ones. Encrypted submissions cannot be read and are
not counted (the notes say how many). Only counts are held in memory, never the submissions.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy.orm import Session

from server import audit, errors
from server.datasets import Filters, SubmissionRecord, iter_submissions
from server.datasets.clean import normalise
from server.datasets.decrypt import Decryptor, Plain
from server.datasets.reader import UnreadableXml, read
from server.datasets.schema import Field, FormSchema
from server.datasets.suppression import suppress_column, suppress_grid, whole_group_lines
from server.models import AppUser, Form, User

AUDIT_ACTION = "form.submission.report"
CONFIDENTIAL = "[c]"
MISSING = "(missing)"
OTHER = "(other)"
TOTAL = "Total"
PERIODS = ("day", "month", "quarter", "year")
_BAND = re.compile(r"^\s*(\d+)\s*-\s*(\d*)\s*$")
_SPEC = re.compile(r"^\s*((?:/[A-Za-z_][\w.-]*)+|[A-Za-z_][\w.-]*)\s*(?::\s*(.*))?$")  # name or /path


@dataclass
class Dimension:
    """One question (or the received date) that rows or columns are counted by."""

    header: str
    categories: list[tuple[str, str]]  # (key, label), in display order
    key_of: Callable[[SubmissionRecord, dict[str, str]], str]
    fill_gaps: Callable[[set[str]], list[tuple[str, str]]] | None = None  # periods: keys between seen ones
    sensitive: bool = False  # from a question tagged sensitive: its lines are protected as groups

    def ordered(self, seen: set[str]) -> list[tuple[str, str]]:
        """Categories to show: the known ones in order, then any seen value the form does not list."""
        known = self.fill_gaps(seen) if self.fill_gaps else list(self.categories)
        keys = {key for key, _ in known}
        extra = sorted(key for key in seen if key not in keys and key not in (OTHER, MISSING))
        tail = [(key, key) for key in extra] + [(key, key) for key in (OTHER, MISSING) if key in seen]
        return known + tail


@dataclass(frozen=True)
class ReportRequest:
    rows: tuple[str, ...]
    cols: str | None
    lang: str | None
    filters: Filters
    min_cell: int
    # False only for a view whose reader may see the submissions themselves (the console's dashboard
    # for coordinators): every count is shown. Donor reports always suppress.
    suppress: bool = True

    def describe(self) -> dict[str, Any]:
        return {
            "rows": list(self.rows),
            "cols": self.cols,
            "lang": self.lang,
            "filters": self.filters.describe(),
            "min_cell": self.min_cell,
        }


@dataclass
class Report:
    """A finished report: labels, counts with their totals, and which of them are hidden."""

    form_id: str
    versions: list[str]
    request: ReportRequest
    row_headers: list[str]
    row_labels: list[list[str]]
    col_header: str | None
    col_labels: list[str]  # without "Total"; [] when there is no column dimension
    grid: list[list[int]]  # counts: one row per row label plus the total row; the total column last
    hidden: set[tuple[int, int]]
    group_hidden: set[tuple[int, int]] = field(default_factory=set)  # hidden for group disclosure
    sensitive: bool = False  # a dimension is a question tagged sensitive
    not_counted: dict[str, int] = field(default_factory=dict)
    generated_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    @property
    def primary(self) -> int:
        """How many counts were hidden for being below k (the rest of ``hidden`` protects them)."""
        return sum(
            0 < value < self.request.min_cell
            for r, line in enumerate(self.grid)
            for c, value in enumerate(line)
            if (r, c) in self.hidden
        )

    def cell(self, r: int, c: int) -> int | str:
        return CONFIDENTIAL if (r, c) in self.hidden else self.grid[r][c]

    def header(self) -> list[str]:
        return [*self.row_headers, *(self.col_labels or ["Count"]), *([TOTAL] if self.col_labels else [])]

    def lines(self) -> Iterator[list[int | str]]:
        """The table as it is published: the header, a line per row, the total line."""
        yield list(self.header())
        width = len(self.grid[0])
        for r, labels in enumerate([*self.row_labels, [TOTAL] + [""] * (len(self.row_headers) - 1)]):
            yield [*labels, *(self.cell(r, c) for c in range(width))]

    def notes(self) -> list[str]:
        request = self.request
        k = request.min_cell
        group = len(self.group_hidden - {cell for cell in self.hidden if 0 < self.grid[cell[0]][cell[1]] < k})
        secondary = len(self.hidden) - self.primary - group
        reasons = f"{self.primary} below {k}; " + (
            f"{group} where one answer holds a whole group; " if group else ""
        )
        notes = [
            f"Sarhad donor report of form {self.form_id} (versions {' / '.join(self.versions)}).",
            "Counts of submissions; each submission is counted once.",
            f"Rows: {' × '.join(self.row_headers)}."
            + (f" Columns: {self.col_header}." if self.col_header else ""),
            f"{CONFIDENTIAL} = confidential: hidden because the count is between 1 and {k - 1} or "
            "because it could otherwise be worked out from the totals and the other counts. Zeros are shown.",
            f"Counts hidden: {len(self.hidden)} ({reasons}{secondary} to protect them).",
            "Left out: rejected and deleted submissions; test submissions; older versions of edited ones.",
            f"Received: {_period_text(request.filters)}.",
        ]
        if self.sensitive:
            notes.append(
                "Group disclosure: a question tagged sensitive is counted here. Where one of its answers "
                "holds the whole count of a group (a row or column with every non-missing answer the same "
                "and the total line too) all of that group's answers are hidden [c] with their zeros and "
                "enough other counts that none can be worked out. The group's total stays shown."
            )
        if not request.suppress:
            notes[3:5] = ["Every count is shown: this table is for the project's own staff only."]
        for reason, count in sorted(self.not_counted.items()):
            notes.append(f"Not counted: {count} {reason}.")
        notes.append(f"Generated: {self.generated_at.isoformat(timespec='seconds').replace('+00:00', 'Z')}.")
        return notes


def _period_text(filters: Filters) -> str:
    since = filters.since.date().isoformat() if filters.since else "the start"
    if filters.until is None:
        return f"from {since} on"
    last = (filters.until - dt.timedelta(microseconds=1)).date().isoformat()
    return f"from {since} to {last}"


# ------------------------------------------------------------------------------------------ dimensions


def split_dimensions(text: str) -> tuple[str, ...]:
    """``region,age:0-17,18-`` → ``("region", "age:0-17,18-")``: a part that starts like a band belongs
    to the dimension before it."""
    parts: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if parts and part and (part[0].isdigit() or part.startswith("-")) and ":" in parts[-1]:
            parts[-1] += "," + part
        elif part:
            parts.append(part)
    return tuple(parts)


def parse_dimension(schema: FormSchema, spec: str, lang: str | None) -> Dimension:
    match = _SPEC.match(spec)
    if not match:
        raise errors.bad_request(f"{spec!r} is not a question name.", field="rows")
    name, detail = match.group(1), (match.group(2) or "").strip()
    if name == "period" and name not in _names(schema):
        return _period_dimension(None, detail or "month", lang)
    f = _find_field(schema, name)
    if f.type in ("date", "dateTime"):
        return _period_dimension(f, detail or "month", lang)
    if f.type == "int" and detail:
        return _band_dimension(f, detail, lang)
    if f.type == "select1" and not detail:
        return _choice_dimension(f, lang)
    if f.type == "int":
        raise errors.bad_request(
            f"{name!r} is a number: give bands, e.g. {name}:0-17,18-24,25-", field="rows"
        )
    raise errors.bad_request(
        f"{name!r} cannot be a report dimension: use select_one questions, numbers with bands or dates "
        "(free text, select_multiple, locations and files could single someone out or be counted twice).",
        field="rows",
    )


def _names(schema: FormSchema) -> set[str]:
    return {f.name for f in schema.fields}


def _find_field(schema: FormSchema, name: str) -> Field:
    if name.startswith("/"):
        matches = [f for f in schema.fields if f.rel == name]
    else:
        matches = [f for f in schema.fields if f.name == name and f.leaf]
    if not matches:
        raise errors.bad_request(f"The form {schema.xml_form_id!r} has no question {name!r}.", field="rows")
    if len(matches) > 1:
        paths = ", ".join(f.rel for f in matches)
        raise errors.bad_request(f"{name!r} names several questions ({paths}): give its path.", field="rows")
    f = matches[0]
    if f.repeat_rel is not None:
        raise errors.bad_request(
            f"{name!r} is inside a repeat: a report counts submissions, one per row.", field="rows"
        )
    if f.sensitivity == "personal":
        raise errors.bad_request(f"{name!r} is tagged personal data: it cannot be a dimension.", field="rows")
    return f


def _value(f: Field, values: dict[str, str]) -> str | None:
    return normalise(f, values.get(f.rel))


def _choice_dimension(f: Field, lang: str | None) -> Dimension:
    categories = [(c.value, f.choice_label(c.value, lang) or c.value) for c in f.choices]
    known = {key for key, _ in categories}

    def key_of(_record: SubmissionRecord, values: dict[str, str]) -> str:
        # A value the form does not list is counted as "(other)", never shown as sent: it came from a
        # device, not from the form, and could be anything.
        value = _value(f, values)
        return MISSING if value is None else value if value in known or not known else OTHER

    return Dimension(f.label(lang) or f.name, categories, key_of, sensitive=f.sensitivity == "sensitive")


def _band_dimension(f: Field, text: str, lang: str | None) -> Dimension:
    bands: list[tuple[int, int | None]] = []
    for part in text.split(","):
        match = _BAND.match(part)
        if not match:
            raise errors.bad_request(f"{part!r} is not a band like 18-24 or 25- (open-ended).", field="rows")
        low, high = int(match.group(1)), int(match.group(2)) if match.group(2) else None
        if (high is not None and high < low) or (bands and (bands[-1][1] is None or low <= bands[-1][1])):
            raise errors.bad_request(f"The bands {text!r} must go up without overlapping.", field="rows")
        bands.append((low, high))
    labels = [f"{low}+" if high is None else f"{low}-{high}" for low, high in bands]

    def key_of(_record: SubmissionRecord, values: dict[str, str]) -> str:
        value = _value(f, values)
        if value is None:
            return MISSING
        try:
            number = int(value)
        except ValueError:
            return OTHER
        for label, (low, high) in zip(labels, bands, strict=True):
            if number >= low and (high is None or number <= high):
                return label
        return OTHER

    categories = [(label, label) for label in labels]
    return Dimension(f.label(lang) or f.name, categories, key_of, sensitive=f.sensitivity == "sensitive")


def _period_dimension(f: Field | None, unit: str, lang: str | None) -> Dimension:
    if unit not in PERIODS:
        raise errors.bad_request(f"{unit!r} is not a period: use month, quarter or year.", field="rows")

    def key_of(record: SubmissionRecord, values: dict[str, str]) -> str:
        if f is None:
            return _period_key(record.created_at.astimezone(dt.UTC).date(), unit)
        value = _value(f, values)
        if value is None:
            return MISSING
        try:
            return _period_key(dt.date.fromisoformat(value[:10]), unit)
        except ValueError:
            return OTHER

    def fill_gaps(seen: set[str]) -> list[tuple[str, str]]:
        dated = sorted(key for key in seen if key not in (MISSING, OTHER))
        return [(key, key) for key in _periods_between(dated[0], dated[-1], unit)] if dated else []

    header = f"Received ({unit})" if f is None else f"{f.label(lang) or f.name} ({unit})"
    return Dimension(header, [], key_of, fill_gaps)


def _period_key(day: dt.date, unit: str) -> str:
    if unit == "day":
        return day.isoformat()
    if unit == "year":
        return f"{day.year}"
    if unit == "quarter":
        return f"{day.year}-Q{(day.month - 1) // 3 + 1}"
    return f"{day.year}-{day.month:02d}"


def _periods_between(first: str, last: str, unit: str) -> list[str]:
    """Every period from ``first`` to ``last`` (keys of ``_period_key``), so that empty ones show as 0."""
    if unit == "day":
        start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
        days = min((end - start).days, 10_000)
        return [(start + dt.timedelta(days=n)).isoformat() for n in range(days + 1)]
    year, rest = int(first[:4]), first[5:]
    step = {"year": 1, "quarter": 3, "month": 1}[unit]
    month = 1 if unit == "year" else (int(rest[1:]) - 1) * 3 + 1 if unit == "quarter" else int(rest)
    out: list[str] = []
    while True:
        key = _period_key(dt.date(year, month, 1), unit)
        out.append(key)
        if key >= last or len(out) > 10_000:
            return out
        if unit == "year":
            year += 1
        else:
            month += step
            year, month = year + (month - 1) // 12, (month - 1) % 12 + 1


# ----------------------------------------------------------------------------------------- counting


def build_report(
    session: Session,
    form: Form,
    schema: FormSchema,
    request: ReportRequest,
    decryptor: Decryptor | None = None,
) -> Report:
    """Count, lay out and suppress. Streams the submissions; holds only the counts. ``decryptor`` opens
    encrypted submissions (in memory, one at a time); without it they are not counted, and said so."""
    return build_reports(session, form, schema, [request], decryptor)[0]


def build_reports(
    session: Session,
    form: Form,
    schema: FormSchema,
    requests: list[ReportRequest],
    decryptor: Decryptor | None = None,
) -> list[Report]:
    """Several reports of one form from one pass over its submissions (the dashboard draws many tables
    of a form); they share the first request's filters."""
    dims = [_dimensions(schema, request) for request in requests]
    counts: list[Counter[tuple[tuple[str, ...], str]]] = [Counter() for _ in requests]
    not_counted: Counter[str] = Counter()
    filters = requests[0].filters if requests else Filters()
    for record, values in readable_rows(session, form, schema, filters, not_counted, decryptor):
        for (row_dims, col_dim), counted in zip(dims, counts, strict=True):
            row_key = tuple(d.key_of(record, values) for d in row_dims)
            counted[row_key, col_dim.key_of(record, values) if col_dim else ""] += 1
    return [
        _layout(form, schema, request, row_dims, col_dim, counted, dict(not_counted))
        for request, (row_dims, col_dim), counted in zip(requests, dims, counts, strict=True)
    ]


def _dimensions(schema: FormSchema, request: ReportRequest) -> tuple[list[Dimension], Dimension | None]:
    if not request.rows:
        raise errors.bad_request("Name at least one question to count by (rows).", field="rows")
    row_dims = [parse_dimension(schema, spec, request.lang) for spec in request.rows]
    col_dim = parse_dimension(schema, request.cols, request.lang) if request.cols else None
    if any(d.sensitive for d in row_dims[:-1]):
        raise errors.bad_request(
            "A question tagged sensitive can be the columns or the last row dimension (then each "
            "combination of the rows before it is a group whose every answer is listed).",
            field="rows",
        )
    return row_dims, col_dim


def readable_rows(
    session: Session,
    form: Form,
    schema: FormSchema,
    filters: Filters,
    not_counted: Counter[str],
    decryptor: Decryptor | None = None,
) -> Iterator[tuple[SubmissionRecord, dict[str, str]]]:
    """Each counted submission with its root row's values, through the one reader; what cannot be read
    is tallied in ``not_counted`` by reason. Every aggregate (reports, the console's dashboard) counts
    from here."""
    for record in iter_submissions(session, form, filters):
        if record.encrypted:
            opened = decryptor.open(record.version_id) if decryptor is not None else None
            if not isinstance(opened, Plain):
                not_counted["encrypted submissions (their answers cannot be read)"] += 1
                continue
            record = replace(record, xml=opened.xml, encrypted=False)
        try:
            values = next(read(record.xml, schema.by_rel, record.instance_id)).values
        except UnreadableXml:
            not_counted["submissions whose XML cannot be read"] += 1
            continue
        yield record, values


def sum_numbers(
    session: Session, form: Form, schema: FormSchema, filters: Filters, names: list[str]
) -> tuple[dict[str, int], dict[str, int]]:
    """The sums of integer questions over the counted submissions (people counted in a group, e.g. a
    focus group's participants by sex and age), cleaned as every export is; and what was not counted.
    A value that is not a whole number >= 0 is left out (the cleaning pipeline flags it)."""
    fields = [_find_field(schema, name) for name in names]
    sums = dict.fromkeys(names, 0)
    not_counted: Counter[str] = Counter()
    for _record, values in readable_rows(session, form, schema, filters, not_counted):
        for name, f in zip(names, fields, strict=True):
            value = _value(f, values)
            if value is not None and value.isdigit():
                sums[name] += int(value)
    return sums, dict(not_counted)


def _layout(
    form: Form,
    schema: FormSchema,
    request: ReportRequest,
    row_dims: list[Dimension],
    col_dim: Dimension | None,
    counts: Counter[tuple[tuple[str, ...], str]],
    not_counted: dict[str, int],
) -> Report:
    per_dim = [dim.ordered({key[0][i] for key in counts}) for i, dim in enumerate(row_dims)]
    if len(row_dims) == 1:
        # One question: every category is a row, so that a donor sees the zeros too.
        row_keys = [(key,) for key, _ in per_dim[0]]
    else:
        # Several: only the combinations that occur (a zero row would show nothing more), except that a
        # sensitive last dimension lists every category in each group (a lone row would tell its answer).
        rank = [{key: i for i, (key, _) in enumerate(cats)} for cats in per_dim]
        seen = {key[0] for key in counts}
        if row_dims[-1].sensitive:
            seen = {(*prefix[:-1], key) for prefix in seen for key, _ in per_dim[-1]}
        row_keys = sorted(seen, key=lambda keys: tuple(rank[i][k] for i, k in enumerate(keys)))
    labels = [dict(cats) for cats in per_dim]
    row_labels = [[labels[i][k] for i, k in enumerate(keys)] for keys in row_keys]
    cols = col_dim.ordered({key[1] for key in counts}) if col_dim else [("", "Count")]
    grid = [[counts[keys, col] for col, _ in cols] for keys in row_keys]
    totals = [sum(line[c] for line in grid) for c in range(len(cols))]
    grid.append(totals)
    if col_dim:
        grid = [[*line, sum(line)] for line in grid]
    groups = _whole_groups(grid, row_keys, cols, row_dims, col_dim) if request.suppress else set()
    if not request.suppress:
        hidden: set[tuple[int, int]] = set()
    elif col_dim:
        hidden = suppress_grid(grid, request.min_cell, groups)
    else:
        rows_hidden, total_hidden = suppress_column(
            [line[0] for line in grid[:-1]], totals[0], request.min_cell, {r for r, _ in groups}
        )
        hidden = {(r, 0) for r in rows_hidden} | ({(len(grid) - 1, 0)} if total_hidden else set())
    return Report(
        form_id=form.xml_form_id,
        versions=schema.versions,
        request=request,
        row_headers=[d.header for d in row_dims],
        row_labels=row_labels,
        col_header=col_dim.header if col_dim else None,
        col_labels=[label for _, label in cols] if col_dim else [],
        grid=grid,
        hidden=hidden,
        group_hidden=groups,
        sensitive=any(d.sensitive for d in [*row_dims, *([col_dim] if col_dim else [])]),
        not_counted=not_counted,
    )


def _whole_groups(
    grid: list[list[int]],
    row_keys: list[tuple[str, ...]],
    cols: list[tuple[str, str]],
    row_dims: list[Dimension],
    col_dim: Dimension | None,
) -> set[tuple[int, int]]:
    """The cells to hide for group disclosure (:mod:`server.datasets.suppression`, step 3)."""
    cells: set[tuple[int, int]] = set()
    if col_dim is not None and col_dim.sensitive:
        categories = [c for c, (key, _) in enumerate(cols) if key != MISSING]
        cells |= whole_group_lines(grid, categories, rows=True)
    if row_dims[-1].sensitive:  # each column within each combination of the rows before it is a group
        blocks: dict[tuple[str, ...], list[int]] = {}
        for r, keys in enumerate(row_keys):
            if keys[-1] != MISSING:
                blocks.setdefault(keys[:-1], []).append(r)
        for categories in blocks.values():
            cells |= whole_group_lines(grid, categories, rows=False)
    return cells


def record_report(
    session: Session, form: Form, request: ReportRequest, fmt: str, actor: User | AppUser | None, via: str
) -> None:
    audit.record(
        session,
        AUDIT_ACTION,
        actor=actor,
        project_id=form.project_id,
        target_type="form",
        target_id=form.xml_form_id,
        format=fmt,
        via=via,
        **request.describe(),
    )
