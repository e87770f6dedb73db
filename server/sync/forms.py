"""What a hub pulls from central: the published forms of its projects, with every published version
and its media, so that the hub serves its tablets the same forms (same bytes, same md5 hashes)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.models import Blob, Form, FormMedia, FormVersion, Project


def published_forms(session: Session, project: Project) -> list[dict[str, Any]]:
    forms = session.scalars(
        select(Form).where(Form.project_id == project.id, Form.deleted_at.is_(None)).order_by(Form.id)
    )
    out = []
    for form in forms:
        versions = list(
            session.scalars(
                select(FormVersion)
                .where(FormVersion.form_id == form.id, FormVersion.published_at.is_not(None))
                .order_by(FormVersion.published_at, FormVersion.id)
            )
        )
        if not versions:
            continue
        sizes = {
            sha: size
            for sha, size in session.execute(
                select(Blob.sha256, Blob.size)
                .join(FormMedia, FormMedia.blob_sha256 == Blob.sha256)
                .where(FormMedia.form_version_id.in_([v.id for v in versions]))
            )
        }
        out.append(
            {
                "xmlFormId": form.xml_form_id,
                "state": form.state,
                "currentVersion": form.current_version.version if form.current_version else None,
                "versions": [
                    {
                        "version": v.version,
                        "title": v.title,
                        "sha256": v.sha256,
                        "md5": v.md5,
                        "xml": v.xml,
                        "media": [
                            {
                                "name": m.name,
                                "sha256": m.blob_sha256,
                                "size": sizes.get(m.blob_sha256 or ""),
                                "contentType": m.content_type,
                            }
                            for m in v.media
                        ],
                    }
                    for v in versions
                ],
            }
        )
    return out


def is_form_media(session: Session, project: Project, sha256: str) -> bool:
    """Whether the blob is media of a published form version of the project (hubs may fetch only
    those: never a submission's attachment)."""
    found = session.scalar(
        select(FormMedia.id)
        .join(FormVersion, FormVersion.id == FormMedia.form_version_id)
        .join(Form, Form.id == FormVersion.form_id)
        .where(
            Form.project_id == project.id,
            FormVersion.published_at.is_not(None),
            FormMedia.blob_sha256 == sha256,
        )
        .limit(1)
    )
    return found is not None
