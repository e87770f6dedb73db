"""What central holds of a hub's submissions, the receipts that record it, and the signed statement.

Central *holds* a hub's submission version when it has a submission version or a kept conflict of the
same form with the same instanceID and the same XML sha256, carrying every attachment the hub has
with the same sha256. Holding is checked against the store itself (never against what a client says),
and each confirmation is written as a ``SyncReceipt`` of that hub: the receipts are what central signs.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from server.models import (
    Blob,
    Conflict,
    ConflictAttachment,
    Form,
    Hub,
    Project,
    SubmissionAttachment,
    SubmissionVersion,
    SyncReceipt,
    utcnow,
)
from server.sync import keys, wire

_IN_CHUNK = 500


@dataclass(frozen=True)
class Item:
    """A submission version as a hub describes it."""

    xml_form_id: str
    instance_id: str
    sha256: str
    attachments: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.xml_form_id, self.instance_id, self.sha256)


@dataclass
class _Stored:
    held_as: str
    attachments: dict[str, str | None]


def lock_hub(session: Session, hub: Hub) -> None:
    """Serialise one hub's sync writes (a retried request may overlap the original on PostgreSQL;
    SQLite's BEGIN IMMEDIATE already serialises every writer)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": 0x5A5D_0000 + hub.id})


def _chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


def _stored(session: Session, project_id: int, items: Sequence[Item]) -> dict[tuple[str, str, str], _Stored]:
    """Central's versions and conflicts with the items' instanceIDs, keyed like ``Item.key``."""
    found: dict[tuple[str, str, str], _Stored] = {}
    ids = sorted({i.instance_id for i in items})
    for part in _chunks(ids):
        versions = session.execute(
            select(
                SubmissionVersion.id,
                Form.xml_form_id,
                SubmissionVersion.instance_id,
                SubmissionVersion.sha256,
            )
            .join(Form, Form.id == SubmissionVersion.form_id)
            .where(Form.project_id == project_id, SubmissionVersion.instance_id.in_(part))
        ).all()
        attachments: dict[int, dict[str, str | None]] = defaultdict(dict)
        if versions:
            for version_id, name, blob in session.execute(
                select(
                    SubmissionAttachment.version_id,
                    SubmissionAttachment.name,
                    SubmissionAttachment.blob_sha256,
                ).where(SubmissionAttachment.version_id.in_([v.id for v in versions]))
            ):
                attachments[version_id][name] = blob
        for v in versions:
            found[(v.xml_form_id, v.instance_id, v.sha256)] = _Stored("version", attachments[v.id])
        conflicts = session.execute(
            select(Conflict.id, Form.xml_form_id, Conflict.instance_id, Conflict.sha256)
            .join(Form, Form.id == Conflict.form_id)
            .where(Form.project_id == project_id, Conflict.instance_id.in_(part))
        ).all()
        kept: dict[int, dict[str, str | None]] = defaultdict(dict)
        if conflicts:
            for conflict_id, name, blob in session.execute(
                select(
                    ConflictAttachment.conflict_id, ConflictAttachment.name, ConflictAttachment.blob_sha256
                ).where(ConflictAttachment.conflict_id.in_([c.id for c in conflicts]))
            ):
                kept[conflict_id][name] = blob
        for c in conflicts:
            found.setdefault((c.xml_form_id, c.instance_id, c.sha256), _Stored("conflict", kept[c.id]))
    return found


def _holds(stored: _Stored | None, item: Item) -> bool:
    if stored is None:
        return False
    return all(stored.attachments.get(name) == sha for name, sha in item.attachments.items())


def confirm(
    session: Session, hub: Hub, project_id: int, items: Sequence[Item]
) -> dict[tuple[str, str, str], str]:
    """For each item central holds, write (or refresh) its receipt; answer ``key → held_as``."""
    stored = _stored(session, project_id, items)
    held = {i.key: stored[i.key].held_as for i in items if _holds(stored.get(i.key), i)}
    if not held:
        return held
    existing = {
        (r.xml_form_id, r.instance_id, r.sha256): r
        for part in _chunks(sorted({i.instance_id for i in items if i.key in held}))
        for r in session.scalars(
            select(SyncReceipt).where(
                SyncReceipt.hub_id == hub.id,
                SyncReceipt.project_id == project_id,
                SyncReceipt.instance_id.in_(part),
            )
        )
    }
    now = utcnow()
    for item in items:
        if item.key not in held:
            continue
        receipt = existing.get(item.key)
        if receipt is None:
            receipt = SyncReceipt(
                hub_id=hub.id,
                project_id=project_id,
                xml_form_id=item.xml_form_id,
                instance_id=item.instance_id,
                sha256=item.sha256,
            )
            session.add(receipt)
            existing[item.key] = receipt
        receipt.attachments = dict(item.attachments)
        receipt.held_as = held[item.key]
        receipt.confirmed_at = now
    session.flush()
    return held


def missing_blobs(session: Session, shas: Iterable[str]) -> list[str]:
    wanted = sorted(set(shas))
    have: set[str] = set()
    for part in _chunks(wanted):
        have.update(session.scalars(select(Blob.sha256).where(Blob.sha256.in_(part))))
    return [s for s in wanted if s not in have]


def statement(session: Session, hub: Hub, data_dir: Path) -> dict[str, Any]:
    """The completeness statement of a hub, signed with central's Ed25519 key."""
    per_form: dict[tuple[int, str], dict[str, int]] = defaultdict(lambda: {"versions": 0, "conflicts": 0})
    lines = []
    attachment_count = 0
    for r in session.scalars(select(SyncReceipt).where(SyncReceipt.hub_id == hub.id)):
        lines.append(wire.holding_line(r.project_id, r.xml_form_id, r.instance_id, r.sha256, r.attachments))
        per_form[(r.project_id, r.xml_form_id)]["versions" if r.held_as == "version" else "conflicts"] += 1
        attachment_count += len(r.attachments)
    names: dict[int, str] = {pid: name for pid, name in session.execute(select(Project.id, Project.name))}
    body = {
        "hub": hub.name,
        "issuedAt": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "total": len(lines),
        "versions": sum(f["versions"] for f in per_form.values()),
        "conflicts": sum(f["conflicts"] for f in per_form.values()),
        "attachments": attachment_count,
        "digest": wire.holdings_digest(lines),
        "forms": [
            {"projectId": p, "projectName": names.get(p), "xmlFormId": f, **counts}
            for (p, f), counts in sorted(per_form.items())
        ],
    }
    key = keys.signing_key(data_dir)
    import base64

    signature = base64.b64encode(key.sign(wire.canonical_json(body))).decode("ascii")
    return {
        "statement": body,
        "algorithm": "Ed25519",
        "signature": signature,
        "publicKey": keys.raw_public_b64(key),
    }
