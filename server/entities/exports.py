"""Entity lists for analysts and donors: the list as a table (CSV or XLSX), and a donor report that
counts entities by their properties (concerns by status and district, plans by progress) with small
counts hidden exactly as in form reports (:mod:`server.datasets.suppression`).

Personal data: a list never holds an answer tagged ``personal`` (publishing refuses a form that would
put one there, :mod:`server.entities.forms`), so the table is the same for every role; who made an
entity is left out (the API's versions name them for those who may see them).
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import xlsxwriter
from sqlalchemy import select
from sqlalchemy.orm import Session

from server import audit, errors
from server.api.schemas import iso
from server.datasets import Filters
from server.datasets.report import TOTAL, Report, ReportRequest
from server.datasets.suppression import suppress_column, suppress_grid
from server.models import Entity, EntityList, User

MISSING = "(missing)"


def table(session: Session, entity_list: EntityList) -> tuple[list[str], list[list[str]]]:
    """The list's live entities, oldest first: uuid, label, properties, then version and conflict."""
    names = [p.name for p in entity_list.properties]
    header = ["name", "label", *names, "__version", "__conflict", "__createdAt", "__updatedAt"]
    rows = []
    for e in session.scalars(
        select(Entity)
        .where(Entity.entity_list_id == entity_list.id, Entity.deleted_at.is_(None))
        .order_by(Entity.created_at, Entity.id)
    ):
        rows.append(
            [
                e.uuid,
                e.label,
                *((e.data or {}).get(n, "") for n in names),
                str(e.version),
                e.conflict or "",
                iso(e.created_at) or "",
                iso(e.updated_at) or "",
            ]
        )
    return header, rows


def render_table(header: list[str], rows: list[list[str]], fmt: str) -> bytes:
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        return out.getvalue().encode("utf-8")
    with tempfile.TemporaryDirectory(prefix="sarhad-entities-") as folder:
        path = Path(folder) / "entities.xlsx"
        book = xlsxwriter.Workbook(str(path))
        sheet = book.add_worksheet("Entities")
        bold = book.add_format({"bold": True})
        for c, name in enumerate(header):
            sheet.write_string(0, c, name, bold)
        for r, line in enumerate(rows, start=1):
            for c, value in enumerate(line):
                sheet.write_string(r, c, value)  # values stay text, never a formula
        sheet.freeze_panes(1, 0)
        book.close()
        return path.read_bytes()


@dataclass
class EntityReport(Report):
    """A form report's table and suppression, with notes that speak of entities."""

    def notes(self) -> list[str]:
        k = self.request.min_cell
        notes = [
            f"Sarhad donor report of the entity list {self.form_id}.",
            "Counts of entities (deleted ones left out); each entity is counted once, as it is now.",
            f"Rows: {' × '.join(self.row_headers)}."
            + (f" Columns: {self.col_header}." if self.col_header else ""),
            f"[c] = confidential: hidden because the count is between 1 and {k - 1} or because it could "
            "otherwise be worked out from the totals and the other counts. Zeros are shown.",
            f"Counts hidden: {len(self.hidden)}.",
            f"Generated: {self.generated_at.isoformat(timespec='seconds').replace('+00:00', 'Z')}.",
        ]
        return notes


def report(
    session: Session, entity_list: EntityList, rows: tuple[str, ...], cols: str | None, min_cell: int
) -> EntityReport:
    names = {p.name for p in entity_list.properties}
    for name in (*rows, *([cols] if cols else [])):
        if name not in names:
            raise errors.bad_request(
                f"The entity list {entity_list.name!r} has no property {name!r}.", field="rows"
            )
    counts: Counter[tuple[tuple[str, ...], str]] = Counter()
    for data in session.scalars(
        select(Entity.data).where(Entity.entity_list_id == entity_list.id, Entity.deleted_at.is_(None))
    ):
        key = tuple((data or {}).get(r) or MISSING for r in rows)
        counts[(key, ((data or {}).get(cols) or MISSING) if cols else "")] += 1
    row_keys = sorted({k for k, _ in counts})
    if cols:
        col_keys = sorted({c for _, c in counts})
        grid = [[*(counts[(rk, ck)] for ck in col_keys)] for rk in row_keys]
        grid = [[*line, sum(line)] for line in grid]
        grid.append([sum(line[c] for line in grid) for c in range(len(col_keys) + 1)])
        hidden = suppress_grid(grid, min_cell)
    else:
        col_keys = []
        column = [counts[(rk, "")] for rk in row_keys]
        cells, hide_total = suppress_column(column, sum(column), min_cell)
        grid = [[n] for n in column] + [[sum(column)]]
        hidden = {(r, 0) for r in cells} | ({(len(column), 0)} if hide_total else set())
    request = ReportRequest(rows=rows, cols=cols, lang=None, filters=Filters(), min_cell=min_cell)
    return EntityReport(
        form_id=entity_list.name,
        versions=[],
        request=request,
        row_headers=list(rows),
        row_labels=[list(k) for k in row_keys],
        col_header=cols,
        col_labels=list(col_keys),
        grid=grid,
        hidden=hidden,
    )


def record(
    session: Session, entity_list: EntityList, action: str, actor: User | None, **details: object
) -> None:
    audit.record(
        session,
        action,
        actor=actor,
        project_id=entity_list.project_id,
        target_type="dataset",
        target_id=entity_list.name,
        **details,
    )


__all__ = ["TOTAL", "EntityReport", "record", "render_table", "report", "table"]
