"""The tables of a dataset and the rows that fill them: read → clean → redact → label.

Every format (CSV zip, XLSX, JSONL, GeoJSON) reads the same :class:`Dataset`: its :class:`Table` list
(columns in ODK Central's order) and, per submission, the processed rows. Central's
``submissions.csv.zip`` uses it with ``clean=False`` (the text as sent, Central's exact layout); Sarhad's
own exports use ``clean=True`` (the cleaning pipeline of :mod:`server.datasets.clean` and an ``_issues``
column). Redaction (:mod:`server.datasets.redact`) is applied in both, before labels.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy.orm import Session

from server.datasets import Filters, SubmissionRecord, iter_submissions
from server.datasets.clean import (
    NEEDS_NORMALISING,
    TYPED_KINDS,
    check_value,
    compile_constraint,
    normalise,
    required_issue,
    typed,
)
from server.datasets.decrypt import Decryptor, Failed
from server.datasets.reader import TableRow, UnreadableXml, read
from server.datasets.redact import Access, Treatment, pseudonym, redact_value
from server.datasets.schema import Field, FormSchema
from server.models import Form, ReviewState

GEO_PARTS = ("Latitude", "Longitude", "Altitude", "Accuracy")
ROOT_META = (
    "KEY",
    "SubmitterID",
    "SubmitterName",
    "AttachmentsPresent",
    "AttachmentsExpected",
    "Status",
    "ReviewState",
    "DeviceID",
    "Edits",
    "FormVersion",
)
ISSUES = "_issues"
LABEL_SEPARATOR = "; "
_UNSAFE_NAME = re.compile(r'[/\\?<>:*|"\x00-\x1f\x80-\x9f]')


@dataclass(frozen=True)
class ExportOptions:
    """What to export and how. ``clean=False`` is ODK Central's raw layout."""

    access: Access
    filters: Filters = field(default_factory=Filters)
    clean: bool = True
    lang: str | None = None
    labels: bool = False  # choice labels instead of codes
    label_headers: bool = False  # question labels instead of column names
    group_paths: bool = True
    split_select_multiples: bool = False
    attachments: bool = True
    merged: bool = True  # fields of every published version (Central: deletedFields=true)

    def describe(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "lang": self.lang,
            "labels": self.labels,
            "label_headers": self.label_headers,
            "group_paths": self.group_paths,
            "split_select_multiples": self.split_select_multiples,
            "attachments": self.attachments,
            "merged_versions": self.merged,
        }


@dataclass(frozen=True)
class Column:
    header: str
    field: Field | None = None
    part: int | None = None  # geopoint part 0..3
    choice: str | None = None  # split select_multiple choice
    meta: str | None = None  # SubmissionDate, KEY, PARENT_KEY, ..., _issues


@dataclass
class Table:
    repeat: Field | None  # None: the root table
    name: str  # Central's file name without .csv: formId or formId-repeat(~n)
    columns: list[Column]

    def __post_init__(self) -> None:
        # The field columns sit between the leading and trailing metadata columns: render them with
        # one dict lookup each (geopoint parts under "path#i", split choices from OutRow.choices).
        field_columns = [c for c in self.columns if c.meta is None]
        self.lead = (
            [c.meta for c in self.columns[: self.columns.index(field_columns[0])]] if field_columns else []
        )
        self.keys = [_cell_key(c) for c in field_columns]
        self.defaults = ["" for _ in field_columns]
        self.choice_columns = [(i, c.field.rel, c.choice) for i, c in enumerate(field_columns) if c.choice]
        self.tail = [c.meta for c in self.columns[len(self.lead) + len(field_columns) :]]
        if not field_columns:
            self.lead, self.tail = [c.meta for c in self.columns], []

    @property
    def path(self) -> str | None:
        return self.repeat.rel if self.repeat else None

    def render(self, row: OutRow) -> list[Any]:
        """The CSV cells of a row (Central's text rules), fast: this runs for every row."""
        cells: list[Any] = meta_values(self.lead, row)  # type: ignore[arg-type]
        values = list(map(row.values.get, self.keys, self.defaults))
        for i, rel, choice in self.choice_columns:
            values[i] = 1 if choice in row.choices.get(rel, ()) else 0
        cells += values
        cells += meta_values(self.tail, row)  # type: ignore[arg-type]
        return cells


def _cell_key(c: Column) -> str:
    assert c.field is not None
    if c.part is not None:
        return f"{c.field.rel}#{c.part}"
    return c.field.rel


@dataclass
class OutRow:
    """A processed row: display values (text) by field path, its issues, and for root rows its record."""

    table: str | None
    key: str
    parent_key: str | None
    values: dict[str, str]
    issues: list[str]
    record: SubmissionRecord
    # select_multiple answers as choice codes (after redaction, before labels): split columns use them.
    choices: dict[str, list[str]] = field(default_factory=dict)


def sanitize_filename(name: str) -> str:
    """Close to the sanitize-filename package Central uses: unsafe characters removed."""
    cleaned = _UNSAFE_NAME.sub("", name).strip().rstrip(".")
    return cleaned[:255] or "_"


def submission_date(value: dt.datetime) -> str:
    """JavaScript's ``toISOString()``: ``2026-05-01T10:00:00.000Z``."""
    utc = value.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _basename(f: Field, table_path: str, opts: ExportOptions) -> str:
    if opts.label_headers:
        label = f.label(opts.lang)
        if label:
            return label
    if not opts.group_paths:
        return f.name
    return f.rel[len(table_path) + 1 :].replace("/", "-")


def build_tables(
    schema: FormSchema, opts: ExportOptions, select_values: dict[str, list[str]] | None = None
) -> list[Table]:
    """The root table and one table per repeat, with Central's column order and file names."""
    root_columns = [Column("SubmissionDate", meta="SubmissionDate")]
    root_columns += _field_columns(schema.table_fields(None), "", opts, select_values)
    root_columns += [Column(name, meta=name) for name in ROOT_META]
    if opts.clean:
        root_columns.append(Column(ISSUES, meta=ISSUES))
    tables = [Table(None, sanitize_filename(schema.xml_form_id), root_columns)]
    repeats = schema.repeats
    totals: dict[str, int] = {}
    for r in repeats:
        totals[r.name] = totals.get(r.name, 0) + 1
    counts: dict[str, int] = {}
    for r in repeats:
        columns = _field_columns(schema.table_fields(r.rel), r.rel, opts, select_values)
        columns += [Column("PARENT_KEY", meta="PARENT_KEY"), Column("KEY", meta="KEY")]
        if opts.clean:
            columns.append(Column(ISSUES, meta=ISSUES))
        name = f"{schema.xml_form_id}-{r.name}"
        if totals[r.name] > 1:
            counts[r.name] = counts.get(r.name, 0) + 1
            name += f"~{counts[r.name]}"
        tables.append(Table(r, sanitize_filename(name), columns))
    return tables


def _field_columns(
    fields: list[Field], table_path: str, opts: ExportOptions, select_values: dict[str, list[str]] | None
) -> list[Column]:
    columns = []
    for f in fields:
        base = _basename(f, table_path, opts)
        if f.type == "geopoint":
            columns += [Column(f"{base}-{part}", f, part=i) for i, part in enumerate(GEO_PARTS)]
        else:
            columns.append(Column(base, f))
            if f.select_multiple and select_values is not None:
                columns += [Column(f"{base}/{v}", f, choice=v) for v in select_values.get(f.rel, [])]
    if opts.label_headers:
        seen: dict[str, int] = {}
        unique = []
        for c in columns:
            seen[c.header] = seen.get(c.header, 0) + 1
            unique.append(c if seen[c.header] == 1 else Column(f"{c.header} ({seen[c.header]})", **_rest(c)))
        columns = unique
    return columns


def _rest(c: Column) -> dict[str, Any]:
    return {"field": c.field, "part": c.part, "choice": c.choice, "meta": c.meta}


def review_state_text(state: str) -> str:
    """Central leaves ReviewState empty for a submission nobody reviewed yet."""
    return "" if state == ReviewState.RECEIVED else state


def meta_value(meta: str, row: OutRow) -> str:
    return meta_values([meta], row)[0]


def meta_values(metas: list[str], row: OutRow) -> list[str]:
    """Metadata cells of a row, in the order asked."""
    out = []
    record = row.record
    for meta in metas:
        if meta == "KEY":
            out.append(row.key)
        elif meta == "PARENT_KEY":
            out.append(row.parent_key or "")
        elif meta == ISSUES:
            out.append(LABEL_SEPARATOR.join(row.issues))
        elif meta == "SubmissionDate":
            out.append(submission_date(record.created_at))
        elif meta == "SubmitterID":
            out.append("" if record.submitter_id is None else str(record.submitter_id))
        elif meta == "SubmitterName":
            out.append(record.submitter_name or "")
        elif meta == "AttachmentsPresent":
            out.append(str(record.attachments_present))
        elif meta == "AttachmentsExpected":
            out.append(str(record.attachments_expected))
        elif meta == "Status":
            out.append(
                ("missing encrypted form data" if record.encrypted_data_missing else "not decrypted")
                if record.encrypted
                else ""
            )
        elif meta == "ReviewState":
            out.append(review_state_text(record.review_state))
        elif meta == "DeviceID":
            out.append(record.device_id or "")
        elif meta == "Edits":
            out.append(str(record.edits))
        elif meta == "FormVersion":
            out.append(record.form_version)
        else:
            raise KeyError(meta)
    return out


def cell_text(column: Column, row: OutRow) -> str | int:
    """The CSV text of one cell (Central's rules: geopoints split on whitespace; split choices 1/0)."""
    if column.meta is not None:
        return meta_value(column.meta, row)
    f = column.field
    assert f is not None
    value = row.values.get(f.rel)
    if column.part is not None:
        parts = value.split() if value else []
        return parts[column.part] if column.part < len(parts) else ""
    if column.choice is not None:
        return 1 if column.choice in row.choices.get(f.rel, ()) else 0
    return value if value is not None else ""


@dataclass
class Dataset:
    """The rows of one export, streamed submission by submission."""

    session: Session
    form: Form
    schema: FormSchema
    opts: ExportOptions
    # Attachments this requester may receive, as (version id, file name); None = all of them (raw).
    allowed_attachments: set[tuple[int, str]] | None = None
    # Opens encrypted submissions when the export was given a key's passphrase (else they stay
    # "not decrypted").
    decryptor: Decryptor | None = None

    def __post_init__(self) -> None:
        self._fields_by_table: dict[str | None, list[Field]] = {None: self.schema.table_fields(None)}
        for r in self.schema.repeats:
            self._fields_by_table[r.rel] = self.schema.table_fields(r.rel)
        self._treatments = {f.rel: self.opts.access.treatment(f) for f in self.schema.fields}
        # Per table, what the row loop needs to know of each field, worked out once.
        self._specs = {
            table: [
                (
                    f,
                    f.rel,
                    self._treatments[f.rel] is Treatment.RAW,
                    f.type in TYPED_KINDS or compile_constraint(f.constraint) is not None,
                    f.select_multiple,
                    f.type == "geopoint",
                )
                for f in fields
            ]
            for table, fields in self._fields_by_table.items()
        }
        if not self.opts.access.raw:
            self.allowed_attachments = set()

    def treatment(self, f: Field) -> Treatment:
        return self._treatments[f.rel]

    def records(self) -> Iterator[SubmissionRecord]:
        return iter_submissions(self.session, self.form, self.opts.filters)

    def submissions(self) -> Iterator[list[OutRow]]:
        """Per submission: its root row first, then its repeat rows in document order."""
        for record in self.records():
            yield self.process(record)

    def process(self, record: SubmissionRecord) -> list[OutRow]:
        if not self.opts.access.raw:
            # Device ids and app-user names identify people too (forms tag ``deviceid`` personal).
            key = self.opts.access.key
            record = replace(
                record,
                device_id=pseudonym(key, record.device_id) if record.device_id else None,
                submitter_name=pseudonym(key, record.submitter_name) if record.submitter_name else None,
            )
        found: list[str] = []
        if record.encrypted:
            opened = self.decryptor.open(record.version_id) if self.decryptor is not None else None
            if opened is None:
                return [OutRow(None, record.instance_id, None, {}, [], record)]
            if isinstance(opened, Failed):
                return [OutRow(None, record.instance_id, None, {}, [opened.issue], record)]
            # In memory only, on its way into the export (server.datasets.decrypt).
            record = replace(record, xml=opened.xml, encrypted=False)
            found = opened.issues
        try:
            flat = list(read(record.xml, self.schema.by_rel, record.instance_id))
        except UnreadableXml as exc:
            row = OutRow(None, record.instance_id, None, {}, [*found, f"unreadable XML: {exc}"], record)
            return [row]
        rows = [self._process_row(row, record) for row in flat]
        if found:
            rows[0].issues[:0] = found
        return rows

    def _process_row(self, row: TableRow, record: SubmissionRecord) -> OutRow:
        """clean → redact → label one row. This loop runs for every value of every export: it is kept
        flat (no per-value helper calls on the common path) on purpose."""
        raw_values = row.values
        clean = self.opts.clean
        labels = self.opts.labels
        access = self.opts.access
        allowed = self.allowed_attachments
        issues: list[str] = []
        out: dict[str, str] = {}
        choices: dict[str, list[str]] = {}
        messy = NEEDS_NORMALISING.search
        for f, rel, raw, checked, multi, geo in self._specs.get(row.table, ()):
            value = raw_values.get(rel)
            if clean:
                if value is not None and messy(value):
                    value = normalise(f, value)
                if not value:
                    if f.required and (issue := required_issue(f, record.form_version)):
                        issues.append(issue.text(raw))
                    continue
                if checked and (issue := check_value(f, value)):
                    issues.append(issue.text(raw))
            elif value is None:
                continue
            if not raw:
                value = redact_value(access, f, value)
                if value is None:
                    continue
            elif f.binary and allowed is not None:
                allowed.add((record.version_id, value))
            if multi:
                choices[rel] = value.split()
            if labels and raw and f.choices:
                value = self._label(f, value)
            out[rel] = value
            if geo:
                # Central splits on whitespace; the parts get keys of their own for the CSV columns.
                parts = value.split()
                for i in range(4):
                    out[f"{rel}#{i}"] = parts[i] if i < len(parts) else ""
        return OutRow(row.table, row.key, row.parent_key, out, issues, record, choices)

    def _label(self, f: Field, value: str) -> str:
        if f.select_multiple:
            return LABEL_SEPARATOR.join(f.choice_label(v, self.opts.lang) or v for v in value.split())
        return f.choice_label(value, self.opts.lang) or value

    def select_values(self) -> dict[str, list[str]]:
        """Central's splitSelectMultiples columns: every choice seen in the data, sorted."""
        seen: dict[str, set[str]] = {f.rel: set() for f in self.schema.fields if f.select_multiple}
        saved = self.allowed_attachments
        for rows in self.submissions():
            for row in rows:
                for rel, values in row.choices.items():
                    seen[rel].update(values)
        self.allowed_attachments = saved if saved is None else set()
        return {rel: sorted(values) for rel, values in seen.items()}


def typed_value(dataset: Dataset, f: Field, value: str) -> Any:
    """A display value typed for JSON/XLSX: numbers, ISO dates, Geopoint, choice lists; text otherwise."""
    treatment = dataset.treatment(f)
    if treatment in (Treatment.PSEUDONYMISE, Treatment.DROP):
        return value
    if dataset.opts.labels and f.choices:
        return value.split(LABEL_SEPARATOR) if f.select_multiple else value
    result, _problem = typed(f, value)
    return result


def basename(f: Field, table: Table, opts: ExportOptions) -> str:
    """The column name of a field in its table (geopoints unsplit)."""
    return _basename(f, table.path or "", opts)
