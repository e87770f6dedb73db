"""A batch of submission versions from a hub, each through the one ``ingest()``.

Every item is checked before it is ingested (its XML matches its sha256; every attachment it names is
already a blob here, uploaded beforehand by hash), ingested in a savepoint of its own (a refused item
does not undo the others), and then confirmed against the store, which writes its receipt.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from server import audit
from server.db import Writer
from server.errors import Problem
from server.models import Hub, Project, Source
from server.sync import holdings


class AttachmentLine(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=255))
    sha256 = fields.String(required=True, validate=validate.Regexp(r"^[0-9a-f]{64}$"))


class ItemLine(Schema):
    """One line of an inventory or batch body."""

    formId = fields.String(required=True, validate=validate.Length(min=1, max=255))
    instanceId = fields.String(required=True, validate=validate.Length(min=1, max=255))
    sha256 = fields.String(required=True, validate=validate.Regexp(r"^[0-9a-f]{64}$"))
    attachments = fields.List(fields.Nested(AttachmentLine), load_default=list)
    # Batches only: the XML itself and where the hub got it from.
    xml = fields.String(load_default=None)
    deviceId = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=255))
    userAgent = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=500))
    # When the hub received it: kept as the submission's received time (exports' SubmissionDate).
    receivedAt = fields.AwareDateTime(load_default=None, allow_none=True)


_ITEM = ItemLine()


class BadLine(Exception):
    def __init__(self, number: int, messages: Any) -> None:
        super().__init__(f"line {number}")
        self.number = number
        self.messages = messages


def load_lines(lines: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    loaded = []
    for number, line in enumerate(lines, start=1):
        try:
            loaded.append(_ITEM.load(line))
        except ValidationError as exc:
            raise BadLine(number, exc.messages) from None
    return loaded


def as_item(line: dict[str, Any]) -> holdings.Item:
    return holdings.Item(
        line["formId"],
        line["instanceId"],
        line["sha256"],
        {a["name"]: a["sha256"] for a in line["attachments"]},
    )


@dataclass
class ItemResult:
    line: dict[str, Any]
    status: str  # held | refused | needsBlobs
    held_as: str | None = None
    outcome: str | None = None
    message: str | None = None
    missing: list[str] | None = None

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "formId": self.line["formId"],
            "instanceId": self.line["instanceId"],
            "sha256": self.line["sha256"],
            "status": self.status,
        }
        for key, value in (("heldAs", self.held_as), ("outcome", self.outcome), ("message", self.message)):
            if value is not None:
                body[key] = value
        if self.missing:
            body["missingBlobs"] = self.missing
        return body


def ingest_batch(
    writer: Writer, hub: Hub, project: Project, lines: list[dict[str, Any]], source: Source = Source.HUB
) -> list[ItemResult]:
    from server.ingest import ingest

    session = writer.session
    holdings.lock_hub(session, hub)
    items = [as_item(line) for line in lines]
    already = holdings.confirm(session, hub, project.id, items)
    absent = set(holdings.missing_blobs(session, [s for i in items for s in i.attachments.values()]))
    results: list[ItemResult] = []
    to_confirm: list[holdings.Item] = []
    for line, item in zip(lines, items, strict=True):
        if item.key in already:
            results.append(ItemResult(line, "held", already[item.key], "duplicate"))
            continue
        xml = line["xml"]
        if xml is None:
            results.append(ItemResult(line, "refused", message="The item carries no XML."))
            continue
        xml_bytes = xml.encode("utf-8")
        if hashlib.sha256(xml_bytes).hexdigest() != item.sha256:
            results.append(
                ItemResult(line, "refused", message="The XML does not match its sha256 (damaged on the way).")
            )
            continue
        missing = sorted(s for s in item.attachments.values() if s in absent)
        if missing:
            results.append(
                ItemResult(line, "needsBlobs", message="Upload the attachments first.", missing=missing)
            )
            continue
        savepoint = session.begin_nested()
        streams = []
        try:
            for name, sha in sorted(item.attachments.items()):
                streams.append((name, writer.staging.store.open(sha)))
            result = ingest(
                writer,
                project=project,
                xml_bytes=xml_bytes,
                attachments=streams,
                incomplete=False,
                source=source,
                source_detail=hub.name,
                device_id=line["deviceId"],
                user_agent=line["userAgent"],
                received_at=line["receivedAt"],
            )
            savepoint.commit()
        except Problem as problem:
            savepoint.rollback()
            results.append(ItemResult(line, "refused", outcome=problem.code, message=problem.message))
            continue
        finally:
            for _name, stream in streams:
                stream.close()
        outcome = getattr(result, "outcome", None)
        results.append(
            ItemResult(
                line, "pending", outcome=str(getattr(outcome, "value", outcome)), message=result.message
            )
        )
        to_confirm.append(item)
    confirmed = holdings.confirm(session, hub, project.id, to_confirm)
    for entry in results:
        if entry.status == "pending":
            held_as = confirmed.get(as_item(entry.line).key)
            entry.status = "held" if held_as else "refused"
            entry.held_as = held_as
    counts: dict[str, int] = {}
    for entry in results:
        counts[entry.status] = counts.get(entry.status, 0) + 1
    audit.record(
        session,
        "sync.batch",
        project_id=project.id,
        target_type="hub",
        target_id=hub.id,
        hub=hub.name,
        items=len(results),
        **counts,
        conflicts=sum(1 for r in results if r.held_as == "conflict"),
    )
    return results
