"""Reading a hub's store, read-only, through the server's own models and blob store.

A hub is an ordinary Sarhad server (usually SQLite in its data dir). Its submission versions and its
kept conflicts are what it holds; attachments are the blobs its rows name. Nothing here writes.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import Row, Select, select
from sqlalchemy.orm import Session

from server.blobs import BlobStore
from server.db import make_engine
from server.models import (
    Blob,
    Conflict,
    ConflictAttachment,
    Form,
    Project,
    SubmissionAttachment,
    SubmissionVersion,
)

_IN_CHUNK = 500


@dataclass(frozen=True)
class HubItem:
    """A submission version (or a kept conflict) the hub holds."""

    kind: str  # "version" | "conflict"
    row_id: int
    project_name: str
    xml_form_id: str
    instance_id: str
    sha256: str
    attachments: dict[str, str] = field(default_factory=dict)  # name → sha256 of files the hub has
    deprecated_id: str | None = None
    device_id: str | None = None
    user_agent: str | None = None
    received_at: str | None = None  # ISO 8601, when the hub received it (central keeps it)

    @property
    def ident(self) -> tuple[str, str, str, str]:
        return (self.project_name, self.xml_form_id, self.instance_id, self.sha256)


class HubStore:
    def __init__(self, data_dir: Path, database_url: str = "") -> None:
        if not (data_dir / "blobs").is_dir() and not database_url:
            raise FileNotFoundError(f"{data_dir} does not look like a Sarhad data folder (no blobs/ in it)")
        url = database_url or f"sqlite:///{(data_dir / 'sarhad.db').resolve()}"
        self.engine = make_engine(url)
        self.blobs = BlobStore(data_dir / "blobs")

    def close(self) -> None:
        self.engine.dispose()

    def _session(self) -> Session:
        return Session(self.engine)

    def items(self) -> list[HubItem]:
        """Every version (in the order the hub accepted them), then every kept conflict."""
        with self._session() as session:
            versions = _held(session, SubmissionVersion)
            files = _files(
                session,
                select(
                    SubmissionAttachment.version_id,
                    SubmissionAttachment.name,
                    SubmissionAttachment.blob_sha256,
                ).where(SubmissionAttachment.blob_sha256.is_not(None)),
            )
            conflicts = _held(session, Conflict)
            kept = _files(
                session,
                select(
                    ConflictAttachment.conflict_id, ConflictAttachment.name, ConflictAttachment.blob_sha256
                ),
            )
        found = [HubItem("version", r[0], *r[1:5], files[r[0]], *r[5:8], _iso(r[8])) for r in versions]
        found += [HubItem("conflict", r[0], *r[1:5], kept[r[0]], *r[5:8], _iso(r[8])) for r in conflicts]
        return found

    def xmls(self, items: Sequence[HubItem]) -> dict[tuple[str, int], str]:
        """The XML of each item, keyed by (kind, row id)."""
        out: dict[tuple[str, int], str] = {}
        with self._session() as session:
            for kind, model in (("version", SubmissionVersion), ("conflict", Conflict)):
                ids = [i.row_id for i in items if i.kind == kind]
                for start in range(0, len(ids), _IN_CHUNK):
                    part = ids[start : start + _IN_CHUNK]
                    for row_id, xml in session.execute(select(model.id, model.xml).where(model.id.in_(part))):
                        out[(kind, row_id)] = xml
        return out

    def blob_sizes(self, shas: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        with self._session() as session:
            for start in range(0, len(shas), _IN_CHUNK):
                part = list(shas[start : start + _IN_CHUNK])
                rows = session.execute(select(Blob.sha256, Blob.size).where(Blob.sha256.in_(part)))
                out.update({sha: size for sha, size in rows})
        return out

    def open_blob(self, sha256: str) -> BinaryIO:
        return self.blobs.path(sha256).open("rb")

    def read_range(self, sha256: str, offset: int, length: int) -> bytes:
        with self.open_blob(sha256) as fh:
            fh.seek(offset)
            return fh.read(length)

    def project_names(self) -> list[str]:
        with self._session() as session:
            return list(
                session.scalars(select(Project.name).where(Project.archived.is_(False)).order_by(Project.id))
            )


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def iter_chunks(values: Sequence[HubItem], size: int) -> Iterator[Sequence[HubItem]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _held(session: Session, model: type[SubmissionVersion] | type[Conflict]) -> Sequence[Row[Any]]:
    """The rows of versions or of kept conflicts (same columns), oldest first, with their form."""
    return session.execute(
        select(
            model.id,
            Project.name,
            Form.xml_form_id,
            model.instance_id,
            model.sha256,
            model.deprecated_id,
            model.device_id,
            model.user_agent,
            model.received_at,
        )
        .join(Form, Form.id == model.form_id)
        .join(Project, Project.id == Form.project_id)
        .order_by(model.id)
    ).all()


def _files(session: Session, stmt: Select[tuple[int, str, str]]) -> dict[int, dict[str, str]]:
    """(owner id, file name, sha256) rows → owner id → name → sha256."""
    out: dict[int, dict[str, str]] = defaultdict(dict)
    for owner, name, sha in session.execute(stmt):
        out[owner][name] = sha
    return out
