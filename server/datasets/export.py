"""One export, whatever asks for it (``sarhad export`` or HTTP): check, audit, then stream the bytes.

The audit row (``form.submission.export``: who, which form, format, filters, options, access) is written
in its own committed transaction *before* the first byte leaves, so that an export that is interrupted
is still on record. The data is then read in a read-only session opened by the stream itself (the
request's session is gone by the time a streamed body is sent).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from sqlalchemy.orm import Session

from server import audit, errors
from server.datasets.csv_zip import stream_csv_zip, stream_root_csv
from server.datasets.decrypt import Decryptor
from server.datasets.geojson import has_geopoints, stream_geojson
from server.datasets.jsonl import stream_jsonl
from server.datasets.schema import FormSchema, blob_media_reader, load_schema
from server.datasets.tables import Dataset, ExportOptions, Table, build_tables, sanitize_filename
from server.datasets.xlsx import stream_file, write_xlsx
from server.db import Database
from server.models import AppUser, Form, User

AUDIT_ACTION = "form.submission.export"
DECRYPT_ACTION = "submission.decrypt"  # no such action in Central: its exports log only the export


@dataclass(frozen=True)
class Format:
    name: str
    content_type: str
    suffix: str


FORMATS = {
    "csv.zip": Format("csv.zip", "application/zip", ".csv.zip"),
    "xlsx": Format("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", ".xlsx"),
    "jsonl": Format("jsonl", "application/x-ndjson; charset=utf-8", ".jsonl"),
    "geojson": Format("geojson", "application/geo+json; charset=utf-8", ".geojson"),
    # ODK Central's root-table-only CSV (GET .../submissions.csv).
    "csv": Format("csv", "text/csv; charset=utf-8", ".csv"),
}
LANGUAGE_CODES = ("en", "tg", "ru")


def find_format(name: str) -> Format:
    if name not in FORMATS:
        raise errors.bad_request(
            f"Unknown export format {name!r}: use csv.zip, xlsx, jsonl or geojson.", field="format"
        )
    return FORMATS[name]


def check_language(lang: str | None) -> str | None:
    if lang is None or lang == "":
        return None
    code = lang.strip().lower()
    if code not in LANGUAGE_CODES:
        raise errors.bad_request(f"Unknown language {lang!r}: use en, tg or ru.", field="lang")
    return code


def schema_for(session: Session, database: Database, form: Form, opts: ExportOptions) -> FormSchema:
    if form.current_version is None:
        raise errors.not_found(f"The form {form.xml_form_id!r} has no published version.")
    return load_schema(session, form, merged=opts.merged, media=blob_media_reader(session, database.blobs))


def check_export(session: Session, database: Database, form: Form, fmt: Format, opts: ExportOptions) -> None:
    """Refuse what cannot be exported, before anything is audited or streamed."""
    schema = schema_for(session, database, form, opts)
    if fmt.name == "geojson" and not has_geopoints(build_tables(schema, opts)):
        raise errors.bad_request(f"The form {form.xml_form_id!r} has no geopoint question to map.")


def record_export(
    session: Session,
    form: Form,
    fmt: Format,
    opts: ExportOptions,
    actor: User | AppUser | None,
    via: str,
    key_ids: list[int] | None = None,
) -> None:
    """The export in the audit log; with ``key_ids`` it decrypts, and a ``submission.decrypt`` row says
    so on its own (who opened which form's encrypted data with which keys)."""
    if key_ids:
        audit.record(
            session,
            DECRYPT_ACTION,
            actor=actor,
            project_id=form.project_id,
            target_type="form",
            target_id=form.xml_form_id,
            keyIds=key_ids,
            format=fmt.name,
            via=via,
        )
    audit.record(
        session,
        AUDIT_ACTION,
        actor=actor,
        project_id=form.project_id,
        target_type="form",
        target_id=form.xml_form_id,
        format=fmt.name,
        filters=opts.filters.describe(),
        options=opts.describe(),
        access=opts.access.describe(),
        via=via,
        decrypted=bool(key_ids),
    )


def download_name(form: Form, fmt: Format, *, media: bool = False) -> str:
    # Central names the full zip (with media) {formId}.zip and the one without {formId}.csv.zip.
    suffix = ".zip" if fmt.name == "csv.zip" and media else fmt.suffix
    return sanitize_filename(form.xml_form_id) + suffix


def stream_export(
    database: Database,
    form_id: int,
    fmt: Format,
    opts: ExportOptions,
    keys: Mapping[str, RSAPrivateKey] | None = None,
) -> Iterator[bytes]:
    """The export's bytes; opens (and closes) its own read session. ``keys`` (private keys by their
    public half, unlocked by :func:`server.project_keys.unlock_keys`) open encrypted submissions."""
    with database.read() as session:
        form = session.get(Form, form_id)
        assert form is not None
        schema = schema_for(session, database, form, opts)
        decryptor = Decryptor(session, database.blobs, keys) if keys else None
        dataset = Dataset(session, form, schema, opts, decryptor=decryptor)
        select_values = dataset.select_values() if opts.split_select_multiples else None
        tables: list[Table] = build_tables(schema, opts, select_values)
        if fmt.name == "csv.zip":
            opener = database.blobs.open if opts.attachments else None
            yield from stream_csv_zip(dataset, tables, open_blob=opener, extras=opts.clean)
        elif fmt.name == "csv":
            yield from stream_root_csv(dataset, tables[0])
        elif fmt.name == "jsonl":
            yield from stream_jsonl(dataset, tables)
        elif fmt.name == "geojson":
            yield from stream_geojson(dataset, tables)
        elif fmt.name == "xlsx":
            with tempfile.TemporaryDirectory(prefix="sarhad-xlsx-") as folder:
                path = Path(folder) / "export.xlsx"
                write_xlsx(path, dataset, tables)
                yield from stream_file(path)
        else:  # pragma: no cover - find_format refuses others
            raise errors.bad_request(f"Unknown export format {fmt.name!r}.")
