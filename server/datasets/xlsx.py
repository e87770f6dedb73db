"""XLSX export: one sheet per table (root, then each repeat), then ``codebook`` and ``conflicts``.

Written by xlsxwriter in ``constant_memory`` mode: each row goes to disk as it is written, so memory stays
flat; the finished file is then streamed. Values are typed (numbers, dates as Excel dates, 1/0 for split
choices); text is always written as text, never as a formula (a value starting with ``=`` stays text).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import xlsxwriter

from server.datasets.clean import Geopoint
from server.datasets.codebook import CODEBOOK_HEADER, CONFLICT_HEADER, codebook_lines, conflict_lines
from server.datasets.tables import (
    GEO_PARTS,
    Column,
    Dataset,
    OutRow,
    Table,
    cell_text,
    typed_value,
)

_SHEET_UNSAFE = re.compile(r"[\[\]:*?/\\]")
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


def _typed_cell(dataset: Dataset, column: Column, row: OutRow) -> Any:
    if column.meta is not None:
        if column.meta == "SubmissionDate":
            return row.record.created_at
        text = cell_text(column, row)
        return int(text) if column.meta in _META_NUMBERS and str(text).isdigit() else text
    f = column.field
    assert f is not None
    if column.choice is not None:
        return cell_text(column, row)
    value = row.values.get(f.rel)
    if value is None:
        return None
    typed = typed_value(dataset, f, value)
    if column.part is not None:
        if isinstance(typed, Geopoint):
            return [typed.latitude, typed.longitude, typed.altitude, typed.accuracy][column.part]
        return cell_text(column, row)
    if f.type == "date" and isinstance(typed, str) and len(typed) == 10:
        try:
            return dt.date.fromisoformat(typed)
        except ValueError:
            return typed
    return typed


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
    for rows in dataset.submissions():
        for row in rows:
            i = index.get(row.table)
            if i is None:
                continue
            table, sheet, r = tables[i], sheets[i], next_row[i]
            for c, column in enumerate(table.columns):
                writer.cell(sheet, r, c, _typed_cell(dataset, column, row))
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
