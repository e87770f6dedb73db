"""Consistency of rows and blobs: what ``sarhad doctor`` checks."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select

from server.blobs import RecoveryReport
from server.db import Database
from server.models import Blob, SubmissionAttachment


@dataclass
class DoctorReport:
    recovery: RecoveryReport
    blob_rows: int = 0
    stored_files: int = 0
    missing: list[str] = field(default_factory=list)  # a row, no file
    orphans: list[str] = field(default_factory=list)  # a file, no row
    corrupt: list[str] = field(default_factory=list)  # a file whose content no longer matches
    attachments_expected: int = 0
    attachments_present: int = 0

    @property
    def healthy(self) -> bool:
        return not (self.missing or self.orphans or self.corrupt)


def examine(database: Database, verify: bool = False) -> DoctorReport:
    """Finish interrupted transactions' files, then compare blob rows with stored files."""
    report = DoctorReport(recovery=database.recover_blobs())
    with database.read() as session:
        rows = set(session.scalars(select(Blob.sha256)))
        total = session.scalar(select(func.count()).select_from(SubmissionAttachment)) or 0
        present = (
            session.scalar(
                select(func.count())
                .select_from(SubmissionAttachment)
                .where(SubmissionAttachment.blob_sha256.is_not(None))
            )
            or 0
        )
    stored = set(database.blobs.iter_stored())
    report.blob_rows, report.stored_files = len(rows), len(stored)
    report.missing = sorted(rows - stored)
    report.orphans = sorted(stored - rows)
    if verify:
        report.corrupt = [sha for sha in sorted(rows & stored) if not database.blobs.verify(sha)]
    report.attachments_expected, report.attachments_present = total, present
    return report
