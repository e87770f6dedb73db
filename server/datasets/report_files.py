"""A donor report as a file: CSV (the table, then its notes as ``#`` lines) or XLSX (a Report sheet and a
Notes sheet). A report holds counts only, so it is built in memory."""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import xlsxwriter
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from server import audit, errors
from server.datasets.decrypt import Decryptor
from server.datasets.export import DECRYPT_ACTION
from server.datasets.report import CONFIDENTIAL, Report, ReportRequest, build_report, record_report
from server.datasets.schema import blob_media_reader, load_schema
from server.db import Database
from server.models import Form, User

REPORT_FORMATS = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def check_report_format(name: str) -> str:
    if name not in REPORT_FORMATS:
        raise errors.bad_request(f"Unknown report format {name!r}: use csv or xlsx.", field="format")
    return name


def render_report(report: Report, fmt: str) -> bytes:
    return _csv(report) if fmt == "csv" else _xlsx(report)


def _csv(report: Report) -> bytes:
    # Notes after a blank line, each starting with "#" (they are worded without commas, so each stays one
    # cell): pandas reads the table with comment="#", and a spreadsheet shows them under the table.
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerows(report.lines())
    writer.writerow([])
    writer.writerows([f"# {note}"] for note in report.notes())
    return out.getvalue().encode("utf-8")


def _xlsx(report: Report) -> bytes:
    with tempfile.TemporaryDirectory(prefix="sarhad-report-") as folder:
        path = Path(folder) / "report.xlsx"
        book = xlsxwriter.Workbook(str(path))
        bold = book.add_format({"bold": True})
        hidden = book.add_format({"align": "right", "font_color": "#7f7f7f"})
        sheet = book.add_worksheet("Report")
        lines = list(report.lines())
        last = len(lines) - 1
        for r, line in enumerate(lines):
            for c, value in enumerate(line):
                style = hidden if value == CONFIDENTIAL else bold if r in (0, last) else None
                if isinstance(value, int):
                    sheet.write_number(r, c, value, style)
                else:
                    sheet.write_string(r, c, value, style)  # labels stay text, never a formula
        sheet.freeze_panes(1, len(report.row_headers))
        sheet.set_column(0, len(report.row_headers) - 1, 24)
        notes = book.add_worksheet("Notes")
        notes.set_column(0, 0, 120)
        for r, note in enumerate(report.notes()):
            notes.write_string(r, 0, note)
        book.close()
        return path.read_bytes()


def min_cell(configured: int, asked: int | None) -> int:
    """The k of a report: what was asked for, but never below the server's setting."""
    if asked is None:
        return configured
    if asked < configured:
        raise errors.bad_request(
            f"The smallest count shown cannot be lowered below {configured} (SARHAD_REPORT_MIN_CELL).",
            field="minCell",
        )
    return asked


def produce_report(
    database: Database,
    form_pk: int,
    request: ReportRequest,
    fmt: str,
    actor: User | None,
    via: str,
    keys: Mapping[str, RSAPrivateKey] | None = None,
    key_ids: Sequence[int] = (),
) -> tuple[Report, bytes]:
    """Count in a read session (a long count must not hold SQLite's write lock), then put the report
    in the audit log, then render it: a report that could not be recorded is not handed out."""
    with database.read() as session:
        form = session.get(Form, form_pk)
        assert form is not None
        if form.current_version is None:
            raise errors.not_found(f"The form {form.xml_form_id!r} has no published version.")
        schema = load_schema(session, form, media=blob_media_reader(session, database.blobs))
        decryptor = Decryptor(session, database.blobs, keys) if keys else None
        report = build_report(session, form, schema, request, decryptor)
    with database.write() as writer:
        form = writer.session.get(Form, form_pk)
        assert form is not None
        if key_ids:
            audit.record(
                writer.session,
                DECRYPT_ACTION,
                actor=actor,
                project_id=form.project_id,
                target_type="form",
                target_id=form.xml_form_id,
                keyIds=list(key_ids),
                format=f"report.{fmt}",
                via=via,
            )
        record_report(writer.session, form, request, fmt, actor, via)
    return report, render_report(report, fmt)
