"""The codebook that goes with every export, and the list of conflicts kept beside the data.

Codebook: one line per column of every table — the variable, its table, the question text and choice
labels in en/tg/ru, its type, group path, the form versions that have it, whether it is personal or
sensitive data, and how it was treated for this export (as collected, pseudonymised, coarsened, removed).

Conflicts: payloads that reused an instanceID with other content (or stale edits) are never merged into
the data; they are listed here so that an analyst knows a submission has a disputed version. Only
their identifiers and circumstances are listed, not their answers (a coordinator resolves them).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.datasets.redact import Access, Treatment
from server.datasets.schema import LANGUAGES, Field
from server.datasets.tables import ISSUES, Column, Table
from server.models import Conflict, Form

CODEBOOK_HEADER = [
    "variable",
    "table",
    *(f"question_{lang}" for lang in LANGUAGES),
    "type",
    "group_path",
    *(f"choices_{lang}" for lang in LANGUAGES),
    "form_versions",
    "personal_data",
    "treatment",
    "required",
    "constraint",
]

META_DESCRIPTIONS = {
    "SubmissionDate": "When the server first received the submission (UTC, ISO 8601).",
    "KEY": "The submission's instanceID (root table) or the repeat instance's key (uuid:x/group/repeat[n]).",
    "PARENT_KEY": "KEY of the row this repeat instance belongs to.",
    "SubmitterID": "Id of the app user (device) or web user who sent the current version.",
    "SubmitterName": "Name of that app user or web user (a pseudonym unless your role sees personal data).",
    "AttachmentsPresent": "Files of the current version the server has received.",
    "AttachmentsExpected": "Files the current version names.",
    "Status": "'not decrypted' for an encrypted submission exported without its key ('missing encrypted "
    "form data' while its encrypted data file has not arrived); empty otherwise.",
    "ReviewState": "hasIssues, edited, approved or rejected; empty when not reviewed yet.",
    "DeviceID": "Device id of the current version (pseudonymised unless your role sees personal data).",
    "Edits": "How many times the submission was edited after it was first sent.",
    "FormVersion": "The form version of the current version of the submission.",
    ISSUES: (
        "Problems found by the cleaning pipeline (required but empty, constraint broken, value not of "
        "its type), one per question, separated by '; '. Values are never changed."
    ),
}

TREATMENT_TEXT = {
    Treatment.RAW: "as collected",
    Treatment.PSEUDONYMISE: "replaced by a keyed pseudonym (p_ + 16 hex digits; same person, same pseudonym)",
    Treatment.COARSEN: "rounded to 0.1 degree (about 11 km); altitude and accuracy removed",
    Treatment.DROP: "removed (personal data your role may not see)",
}

CONFLICT_HEADER = [
    "instanceID",
    "deprecatedID",
    "reason",
    "receivedAt",
    "source",
    "sourceDetail",
    "deviceID",
    "resolvedAt",
    "resolution",
]


def _choices(f: Field, lang: str) -> str:
    return "; ".join(f"{c.value}={c.labels.get(lang, '')}" for c in f.choices)


def _field_line(column: Column, table: Table, access: Access) -> list[str]:
    f = column.field
    assert f is not None
    treatment = access.treatment(f)
    sensitivity = f.sensitivity or ""
    treated = TREATMENT_TEXT[treatment]
    if sensitivity == "sensitive":
        treated += "; sensitive: publish only aggregated (sarhad report)"
    kind = f.type
    if column.part is not None:
        kind = "geopoint part"
    elif column.choice is not None:
        kind = f"select_multiple choice {column.choice!r} (1 chosen, 0 not)"
    elif f.type == "select":
        kind = "select_multiple"
    elif f.type == "select1":
        kind = "select_one"
    return [
        column.header,
        table.name,
        *(f.labels.get(lang, "") for lang in LANGUAGES),
        kind,
        f.group_path,
        *(_choices(f, lang) for lang in LANGUAGES),
        " ".join(v or "(no version)" for v in f.versions),
        sensitivity,
        treated,
        "yes" if f.required else "",
        f.constraint or "",
    ]


def codebook_lines(tables: list[Table], access: Access) -> Iterator[list[str]]:
    """The codebook's lines (without the header) for these tables and this requester."""
    blank_langs = ["" for _ in LANGUAGES]
    for table in tables:
        for column in table.columns:
            if column.field is not None:
                yield _field_line(column, table, access)
            else:
                meta = column.meta or ""
                yield [
                    column.header,
                    table.name,
                    META_DESCRIPTIONS.get(meta, ""),
                    *blank_langs[1:],
                    "metadata",
                    "",
                    *blank_langs,
                    "",
                    "",
                    "as recorded by the server",
                    "",
                    "",
                ]


def conflict_lines(session: Session, form: Form) -> Iterator[list[Any]]:
    """Conflicts of this form, oldest first (streamed)."""
    query = (
        select(
            Conflict.instance_id,
            Conflict.deprecated_id,
            Conflict.reason,
            Conflict.received_at,
            Conflict.source,
            Conflict.source_detail,
            Conflict.device_id,
            Conflict.resolved_at,
            Conflict.resolution,
        )
        .where(Conflict.form_id == form.id)
        .order_by(Conflict.id)
    )
    for row in session.execute(query.execution_options(yield_per=500)):
        yield [
            row[0],
            row[1] or "",
            row[2],
            row[3].isoformat() if row[3] else "",
            row[4] or "",
            row[5] or "",
            row[6] or "",
            row[7].isoformat() if row[7] else "",
            row[8] or "",
        ]
