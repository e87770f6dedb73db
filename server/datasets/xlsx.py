"""XLSX export: one sheet per table (root, then each repeat), then ``codebook`` and ``conflicts``.

Written by xlsxwriter in ``constant_memory`` mode: each row goes to disk as it is written, so memory stays
flat; the finished file is then streamed. Values are typed (numbers, dates as Excel dates, 1/0 for split
choices); text is always written as text, never as a formula (a value starting with ``=`` stays text).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import xlsxwriter

from server.datasets.codebook import CODEBOOK_HEADER, CONFLICT_HEADER, codebook_lines, conflict_lines
from server.datasets.redact import Treatment
from server.datasets.tables import GEO_PARTS, Dataset, OutRow, Table

_SHEET_UNSAFE = re.compile(r"[\[\]:*?/\\]")
_INT = re.compile(r"^[+-]?\d+$")
_META_NUMBERS = {"AttachmentsPresent", "AttachmentsExpected", "Edits", "SubmitterID"}


def _sheet_names(tables: list[Table]) -> list[str]:
    names: list[str] = []
    for i, table in enumerate(tables):
        base = table.repeat.name if table.repeat is not None else table.name
        base = _SHEET_UNSAFE.sub("_", base)[:31] or f"table{i}"
        name, n = base, 1
        while name.lower() in {x.lower() for x in [*names, "codebook", "conflicts"]}:
            n += 1
            name = f"{base[: 31 - len(str(n)) - 1]}~{n}"
        names.append(name)
    return names


class _Writer:
    def __init__(self, workbook: Any) -> None:
        self.date = workbook.add_format({"num_format": "yyyy-mm-dd"})
        self.datetime = workbook.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
        self.header = workbook.add_format({"bold": True})

    def cell(self, sheet: Any, r: int, c: int, value: Any) -> None:
        if value is None or value == "":
            return
        if isinstance(value, bool):
            sheet.write_boolean(r, c, value)
        elif isinstance(value, int | float | Decimal):
            sheet.write_number(r, c, float(value))
        elif isinstance(value, dt.datetime):
            sheet.write_datetime(r, c, value.astimezone(dt.UTC).replace(tzinfo=None), self.datetime)
        elif isinstance(value, dt.date):
            sheet.write_datetime(r, c, dt.datetime(value.year, value.month, value.day), self.date)
        elif isinstance(value, list):
            sheet.write_string(r, c, " ".join(str(v) for v in value))
        else:
            sheet.write_string(r, c, str(value))


def _column_kinds(dataset: Dataset, table: Table) -> list[str]:
    """How each column's text becomes a typed cell, decided once per table."""
    kinds = []
    for column in table.columns:
        f = column.field
        if column.meta is not None:
            kind = (
                "when"
                if column.meta == "SubmissionDate"
                else "count"
                if column.meta in _META_NUMBERS
                else "text"
            )
        elif column.choice is not None:
            kind = "number"
        elif f is None or dataset.treatment(f) in (Treatment.PSEUDONYMISE, Treatment.DROP):
            kind = "text"
        elif column.part is not None:
            kind = "number"
        elif dataset.opts.labels and f.choices:
            kind = "text"
        else:
            kind = {"int": "int", "decimal": "number", "date": "date"}.get(f.type, "text")
        kinds.append(kind)
    return kinds


def _write_typed(
    writer: _Writer, sheet: Any, r: int, kinds: list[str], cells: list[Any], row: OutRow
) -> None:
    for c, (kind, value) in enumerate(zip(kinds, cells, strict=True)):
        if value == "" or value is None:
            continue
        if kind == "text":
            sheet.write_string(r, c, value)
        elif kind == "when":
            sheet.write_datetime(
                r, c, row.record.created_at.astimezone(dt.UTC).replace(tzinfo=None), writer.datetime
            )
        elif kind == "count" or kind == "int":
            if isinstance(value, int) or _INT.match(value):
                sheet.write_number(r, c, int(value))
            else:
                sheet.write_string(r, c, value)
        elif kind == "number":
            number = _finite(value)
            if number is None:
                sheet.write_string(r, c, str(value))
            else:
                sheet.write_number(r, c, number)
        elif kind == "date":
            day = _day(value)
            if day is None:
                sheet.write_string(r, c, value)
            else:
                sheet.write_datetime(r, c, day, writer.date)


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _day(value: str) -> dt.datetime | None:
    try:
        day = dt.date.fromisoformat(value[:10])
    except ValueError:
        return None
    return dt.datetime(day.year, day.month, day.day)


def write_xlsx(path: Path, dataset: Dataset, tables: list[Table]) -> None:
    """Write the workbook to ``path`` (a temporary file the caller streams and removes)."""
    workbook = xlsxwriter.Workbook(
        str(path),
        {
            "constant_memory": True,
            "strings_to_formulas": False,
            "strings_to_urls": False,
            "strings_to_numbers": False,
            "tmpdir": str(path.parent),
        },
    )
    writer = _Writer(workbook)
    names = _sheet_names(tables)
    sheets = [workbook.add_worksheet(name) for name in names]
    codebook = workbook.add_worksheet("codebook")
    conflicts = workbook.add_worksheet("conflicts")
    next_row = []
    for sheet, table in zip(sheets, tables, strict=True):
        for c, column in enumerate(table.columns):
            sheet.write_string(0, c, column.header, writer.header)
        next_row.append(1)
    index = {t.path: i for i, t in enumerate(tables)}
    kinds = [_column_kinds(dataset, t) for t in tables]
    for rows in dataset.submissions():
        for row in rows:
            i = index.get(row.table)
            if i is None:
                continue
            r = next_row[i]
            _write_typed(writer, sheets[i], r, kinds[i], tables[i].render(row), row)
            next_row[i] = r + 1
    for c, header in enumerate(CODEBOOK_HEADER):
        codebook.write_string(0, c, header, writer.header)
    for r, line in enumerate(codebook_lines(tables, dataset.opts.access), start=1):
        for c, value in enumerate(line):
            writer.cell(codebook, r, c, value)
    for c, header in enumerate(CONFLICT_HEADER):
        conflicts.write_string(0, c, header, writer.header)
    for r, line in enumerate(conflict_lines(dataset.session, dataset.form), start=1):
        for c, value in enumerate(line):
            writer.cell(conflicts, r, c, value)
    workbook.close()


def stream_file(path: Path, chunk: int = 256 * 1024) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            yield block


__all__ = ["GEO_PARTS", "stream_file", "write_xlsx"]
