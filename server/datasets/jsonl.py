"""JSON Lines export: one line per submission, repeats nested inside it.

Each line: ``__id`` (the submission's instanceID), ``__system`` (Central's metadata: submissionDate,
submitterId, submitterName, attachmentsPresent, attachmentsExpected, status, reviewState, deviceId,
edits, formVersion), ``_issues`` (the cleaning pipeline's flags), then every answered question by its
column name (group path joined with ``-``), typed: numbers, ISO dates, ``{"latitude", "longitude",
"altitude", "accuracy"}`` for a geopoint, a list for a select_multiple. A repeat is a list of objects
under its name, each with its own ``__key`` and nested repeats.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from server.datasets.clean import Geopoint
from server.datasets.tables import Dataset, OutRow, Table, basename, meta_value, typed_value

SYSTEM = {
    "submissionDate": "SubmissionDate",
    "submitterId": "SubmitterID",
    "submitterName": "SubmitterName",
    "attachmentsPresent": "AttachmentsPresent",
    "attachmentsExpected": "AttachmentsExpected",
    "status": "Status",
    "reviewState": "ReviewState",
    "deviceId": "DeviceID",
    "edits": "Edits",
    "formVersion": "FormVersion",
}
_NUMBERS = {"submitterId", "attachmentsPresent", "attachmentsExpected", "edits"}


def json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() and "." not in str(value) else float(value)
    if isinstance(value, Geopoint):
        return value.as_dict()
    raise TypeError(f"cannot encode {type(value).__name__}")


def row_object(dataset: Dataset, table: Table, row: OutRow) -> dict[str, Any]:
    """The answers of one row as a JSON object (metadata excluded)."""
    out: dict[str, Any] = {}
    for column in table.columns:
        f = column.field
        if f is None or column.choice is not None or (column.part or 0) > 0:
            continue
        value = row.values.get(f.rel)
        if value is not None:
            out[basename(f, table, dataset.opts)] = typed_value(dataset, f, value)
    return out


def _system(row: OutRow) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, meta in SYSTEM.items():
        text = meta_value(meta, row)
        if key in _NUMBERS:
            out[key] = int(text) if text.isdigit() else None
        else:
            out[key] = text or None
    return out


def stream_jsonl(dataset: Dataset, tables: list[Table]) -> Iterator[bytes]:
    by_path = {t.path: t for t in tables}
    root = tables[0]
    buffer: list[str] = []
    for rows in dataset.submissions():
        head = rows[0]
        doc: dict[str, Any] = {"__id": head.key, "__system": _system(head)}
        if dataset.opts.clean:
            doc["_issues"] = head.issues
        doc.update(row_object(dataset, root, head))
        objects = {head.key: doc}
        for row in rows[1:]:
            table = by_path.get(row.table)
            if table is None or table.repeat is None:
                continue
            obj: dict[str, Any] = {"__key": row.key}
            if dataset.opts.clean:
                obj["_issues"] = row.issues
            obj.update(row_object(dataset, table, row))
            parent = objects.get(row.parent_key or "", doc)
            parent.setdefault(table.repeat.name, []).append(obj)
            objects[row.key] = obj
        buffer.append(json.dumps(doc, ensure_ascii=False, default=json_default))
        if len(buffer) >= 200:
            yield ("\n".join(buffer) + "\n").encode("utf-8")
            buffer.clear()
    if buffer:
        yield ("\n".join(buffer) + "\n").encode("utf-8")
