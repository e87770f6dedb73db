"""The central store: typed SQLAlchemy models.

Identity rules live here as constraints, so that the database itself refuses what must never happen:
one submission per (form, instanceID), one version per (form, instanceID of that version), one blob row
per sha256. Large bytes (XLSForms, media, attachments) live in the blob store; rows name them by sha256.
"""

from __future__ import annotations

import datetime as dt
import enum
import secrets
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# The largest value of an id column (INTEGER on PostgreSQL): a number beyond it in a request names nothing.
MAX_ID = 2**31 - 1


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use an aware UTC datetime")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dt.datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class Role(enum.StrEnum):
    ADMIN = "admin"
    COORDINATOR = "coordinator"
    ANALYST = "analyst"


class FormState(enum.StrEnum):
    OPEN = "open"
    CLOSING = "closing"  # still accepts submissions, hidden from form lists
    CLOSED = "closed"  # refuses submissions


class ReviewState(enum.StrEnum):
    RECEIVED = "received"
    HAS_ISSUES = "hasIssues"
    EDITED = "edited"
    APPROVED = "approved"
    REJECTED = "rejected"


class Source(enum.StrEnum):
    """Where a submission version came from; all of them pass through the same ingest()."""

    DEVICE = "device"
    API = "api"
    HUB = "hub"
    FOLDER = "folder"
    BUNDLE = "bundle"


class Blob(Base):
    """One stored file in the content-addressed blob store."""

    __tablename__ = "blob"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    md5: Mapped[str] = mapped_column(String(32))
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Project(Base):
    __tablename__ = "project"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    # Key of the keyed pseudonyms (HMAC) that replace personal data in analysts' exports: the same
    # person gets the same pseudonym in every export; without the key it cannot be reversed.
    pseudonym_key: Mapped[str] = mapped_column(String(64), default=lambda: secrets.token_hex(32))
    # Whether coordinators (not only admins) may export personal data unredacted.
    coordinators_see_personal: Mapped[bool] = mapped_column(Boolean, default=False)
    # Collect deviceIDs whose submissions are tests, left out of datasets.
    test_device_ids: Mapped[list[Any]] = mapped_column(default=list)
    # Managed encryption (as ODK Central): the project's key; once set, every form is published with its
    # public half and it is never unset (see server/project_keys.py).
    key_id: Mapped[int | None]

    forms: Mapped[list[Form]] = relationship(back_populates="project")


class ProjectKey(Base):
    """An RSA key pair of managed encryption. The private key is kept only encrypted under a passphrase
    the server never stores (``private`` holds the KDF, its parameters, salt, nonce and ciphertext)."""

    __tablename__ = "project_key"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id"), index=True)
    public: Mapped[str] = mapped_column(Text)  # base64 DER SubjectPublicKeyInfo, as forms carry it
    private: Mapped[dict[str, Any]] = mapped_column()
    managed: Mapped[bool] = mapped_column(Boolean, default=True)
    hint: Mapped[str | None] = mapped_column(Text)
    version_suffix: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))


class User(Base):
    """A web user: administrator, coordinator or analyst."""

    __tablename__ = "user_account"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(200))
    # A site administrator may do everything in every project; others hold per-project roles.
    is_site_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[dt.datetime | None]
    # The console's language for this user (en, tg or ru); empty until chosen (then the browser's).
    language: Mapped[str | None] = mapped_column(String(10))
    # The submission table's columns this user chose, by form ("project/xmlFormId" → field paths).
    console_columns: Mapped[dict[str, Any] | None]

    roles: Mapped[list[ProjectRole]] = relationship(back_populates="user")


class ProjectRole(Base):
    __tablename__ = "project_role"
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(20))

    user: Mapped[User] = relationship(back_populates="roles")
    __table_args__ = (CheckConstraint("role in ('admin','coordinator','analyst')", name="role"),)


class WebSession(Base):
    """A bearer token of a web user (POST /v1/sessions). Only its sha256 is stored."""

    __tablename__ = "web_session"
    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]

    user: Mapped[User] = relationship()


class AppUser(Base):
    """A device or facilitator. Signs in by a token in the URL or, on a hub's LAN, by Digest."""

    __tablename__ = "app_user"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id"), index=True)
    display_name: Mapped[str] = mapped_column(String(200))
    token_sha256: Mapped[str | None] = mapped_column(String(64), unique=True)
    # Digest needs only HA1 = MD5(username:realm:password); the password itself is never stored.
    digest_ha1: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    revoked_at: Mapped[dt.datetime | None]
    # A test device or trainee: its submissions are left out of datasets.
    is_test: Mapped[bool] = mapped_column(Boolean, default=False)

    project: Mapped[Project] = relationship()
    __table_args__ = (UniqueConstraint("project_id", "display_name", name="uq_app_user_name"),)


class DigestNonceUse(Base):
    """A (nonce, nonce count) a device signed a request with. Digest's ``qop=auth`` does not sign the body,
    so a header overheard on a hub's plain-HTTP network could otherwise be replayed with another body while
    its nonce is fresh. Rows outlive the nonce they name by a few minutes, then are purged."""

    __tablename__ = "digest_nonce_use"
    nonce: Mapped[str] = mapped_column(String(100), primary_key=True)
    nc: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    used_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)


class SigninFailure(Base):
    """One failed sign-in (wrong password) or wrong device/hub credential, by account or by address.
    Counted over a few minutes by :mod:`server.signin_limits`, in the database so that every worker and
    host of one central shares the count; rows older than the window are purged."""

    __tablename__ = "signin_failure"
    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(20))  # account, address or device-address
    subject: Mapped[str] = mapped_column(String(255))  # the e-mail (lower case) or the client address
    failed_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    __table_args__ = (Index("ix_signin_failure_subject", "scope", "subject", "failed_at"),)


class FormAssignment(Base):
    """Narrows what an app user sees: with no assignment it sees every open form of its project."""

    __tablename__ = "form_assignment"
    app_user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"), primary_key=True)
    form_id: Mapped[int] = mapped_column(ForeignKey("form.id"), primary_key=True)


class Form(Base):
    __tablename__ = "form"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id"))
    xml_form_id: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(10), default=FormState.OPEN)
    current_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("form_version.id", use_alter=True, name="fk_form_current_version")
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime | None]
    deleted_at: Mapped[dt.datetime | None]

    project: Mapped[Project] = relationship(back_populates="forms")
    current_version: Mapped[FormVersion | None] = relationship(
        foreign_keys=[current_version_id], post_update=True
    )
    versions: Mapped[list[FormVersion]] = relationship(
        back_populates="form", foreign_keys="FormVersion.form_id"
    )
    __table_args__ = (
        UniqueConstraint("project_id", "xml_form_id", name="uq_form_xml_form_id"),
        CheckConstraint("state in ('open','closing','closed')", name="state"),
    )


class FormVersion(Base):
    """One version of a form: its XLSForm source, the XForm served to devices and its hash."""

    __tablename__ = "form_version"
    id: Mapped[int] = mapped_column(primary_key=True)
    form_id: Mapped[int] = mapped_column(ForeignKey("form.id"), index=True)
    version: Mapped[str] = mapped_column(String(255), default="")
    title: Mapped[str] = mapped_column(String(500))
    xml: Mapped[str] = mapped_column(Text)
    # md5 of the exact UTF-8 bytes served at the download URL: Collect compares this, not version.
    md5: Mapped[str] = mapped_column(String(32))
    sha256: Mapped[str] = mapped_column(String(64))
    xlsform_sha256: Mapped[str | None] = mapped_column(ForeignKey("blob.sha256"))
    xlsform_filename: Mapped[str | None] = mapped_column(String(255))
    # ODK encryption: the form's RSA public key when submissions are encrypted on the device.
    public_key: Mapped[str | None] = mapped_column(Text)
    # Parsed field list (path, type, sensitivity, repeat...) used by ingest and exports.
    fields: Mapped[list[Any]] = mapped_column(default=list)
    published_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))

    form: Mapped[Form] = relationship(back_populates="versions", foreign_keys=[form_id])
    media: Mapped[list[FormMedia]] = relationship(back_populates="form_version", order_by="FormMedia.name")
    __table_args__ = (Index("ix_form_version_form_version", "form_id", "version"),)


class FormMedia(Base):
    """A media file a form version needs (CSV lookups, images). ``blob_sha256`` empty = not uploaded."""

    __tablename__ = "form_media"
    id: Mapped[int] = mapped_column(primary_key=True)
    form_version_id: Mapped[int] = mapped_column(ForeignKey("form_version.id"))
    name: Mapped[str] = mapped_column(String(255))
    blob_sha256: Mapped[str | None] = mapped_column(ForeignKey("blob.sha256"))
    content_type: Mapped[str | None] = mapped_column(String(100))
    # ``<list>.csv`` of an entity list of the project: served from the list as it is now (Central
    # links such attachments to the dataset), never from a blob.
    entity_list_id: Mapped[int | None] = mapped_column(ForeignKey("entity_list.id"))

    form_version: Mapped[FormVersion] = relationship(back_populates="media")
    blob: Mapped[Blob | None] = relationship()
    __table_args__ = (UniqueConstraint("form_version_id", "name", name="uq_form_media_name"),)


class Submission(Base):
    """One logical submission, identified by (form, the instanceID it was first sent with)."""

    __tablename__ = "submission"
    id: Mapped[int] = mapped_column(primary_key=True)
    form_id: Mapped[int] = mapped_column(ForeignKey("form.id"))
    instance_id: Mapped[str] = mapped_column(String(255))
    current_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("submission_version.id", use_alter=True, name="fk_submission_current_version")
    )
    review_state: Mapped[str] = mapped_column(String(20), default=ReviewState.RECEIVED)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime | None]
    deleted_at: Mapped[dt.datetime | None]
    # Copied by ingest for the console's filters (server.ingest.places): the answers named region and
    # district of the current version, and the device (app user) that sent the first version (a plain
    # copy of that version's app_user_id, which holds the foreign key: migration 0010 says why).
    region: Mapped[str | None] = mapped_column(String(100))
    district: Mapped[str | None] = mapped_column(String(100))
    app_user_id: Mapped[int | None]

    form: Mapped[Form] = relationship()
    current_version: Mapped[SubmissionVersion | None] = relationship(
        foreign_keys=[current_version_id], post_update=True
    )
    versions: Mapped[list[SubmissionVersion]] = relationship(
        back_populates="submission",
        foreign_keys="SubmissionVersion.submission_id",
        order_by="SubmissionVersion.id",
    )
    __table_args__ = (
        UniqueConstraint("form_id", "instance_id", name="uq_submission_instance"),
        # Newest first with the id as tie-break: the console's keyset pages read it in order and stop.
        Index("ix_submission_form_created_id", "form_id", "created_at", "id"),
        # One per filter of the console, so that a filtered page is also read in order and stops.
        Index("ix_submission_form_region", "form_id", "region", "created_at", "id"),
        Index("ix_submission_form_district", "form_id", "district", "created_at", "id"),
        Index("ix_submission_form_review", "form_id", "review_state", "created_at", "id"),
        Index("ix_submission_form_device", "form_id", "app_user_id", "created_at", "id"),
    )


class SubmissionVersion(Base):
    """One version (the original or an edit) of a submission: the exact XML bytes received."""

    __tablename__ = "submission_version"
    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submission.id"), index=True)
    form_id: Mapped[int] = mapped_column(ForeignKey("form.id"))
    form_version_id: Mapped[int] = mapped_column(ForeignKey("form_version.id"))
    instance_id: Mapped[str] = mapped_column(String(255))
    deprecated_id: Mapped[str | None] = mapped_column(String(255))
    instance_name: Mapped[str | None] = mapped_column(String(500))
    xml: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    encrypted: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[str] = mapped_column(String(10), default=Source.DEVICE)
    source_detail: Mapped[str | None] = mapped_column(String(255))
    device_id: Mapped[str | None] = mapped_column(String(255))
    user_agent: Mapped[str | None] = mapped_column(String(500))
    app_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    submission: Mapped[Submission] = relationship(back_populates="versions", foreign_keys=[submission_id])
    form_version: Mapped[FormVersion] = relationship()
    attachments: Mapped[list[SubmissionAttachment]] = relationship(
        back_populates="version", order_by="SubmissionAttachment.name"
    )
    __table_args__ = (UniqueConstraint("form_id", "instance_id", name="uq_submission_version_instance"),)


class SubmissionAttachment(Base):
    """A file a submission version names. ``blob_sha256`` empty = expected but not yet received."""

    __tablename__ = "submission_attachment"
    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("submission_version.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    blob_sha256: Mapped[str | None] = mapped_column(ForeignKey("blob.sha256"))
    received_at: Mapped[dt.datetime | None]

    version: Mapped[SubmissionVersion] = relationship(back_populates="attachments")
    __table_args__ = (UniqueConstraint("version_id", "name", name="uq_submission_attachment"),)


class Conflict(Base):
    """A payload that could not be applied (same instanceID, other XML; stale edit). Kept, never dropped."""

    __tablename__ = "conflict"
    id: Mapped[int] = mapped_column(primary_key=True)
    form_id: Mapped[int] = mapped_column(ForeignKey("form.id"), index=True)
    instance_id: Mapped[str] = mapped_column(String(255), index=True)
    deprecated_id: Mapped[str | None] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(String(40))
    xml: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(10), default=Source.DEVICE)
    source_detail: Mapped[str | None] = mapped_column(String(255))
    device_id: Mapped[str | None] = mapped_column(String(255))
    user_agent: Mapped[str | None] = mapped_column(String(500))
    app_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[dt.datetime | None]
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    resolution: Mapped[str | None] = mapped_column(Text)

    attachments: Mapped[list[ConflictAttachment]] = relationship(order_by="ConflictAttachment.name")
    __table_args__ = (
        # The same conflicting payload resent is kept once.
        UniqueConstraint("form_id", "instance_id", "sha256", name="uq_conflict_payload"),
    )


class ConflictAttachment(Base):
    __tablename__ = "conflict_attachment"
    id: Mapped[int] = mapped_column(primary_key=True)
    conflict_id: Mapped[int] = mapped_column(ForeignKey("conflict.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    blob_sha256: Mapped[str] = mapped_column(ForeignKey("blob.sha256"))
    __table_args__ = (UniqueConstraint("conflict_id", "name", name="uq_conflict_attachment"),)


class Comment(Base):
    __tablename__ = "comment"
    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submission.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AuditEvent(Base):
    """Who did what to which object, for every change and every export of personal data."""

    __tablename__ = "audit_event"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    action: Mapped[str] = mapped_column(String(60), index=True)
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    actor_app_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    project_id: Mapped[int | None] = mapped_column(ForeignKey("project.id"))
    target_type: Mapped[str | None] = mapped_column(String(40))
    target_id: Mapped[str | None] = mapped_column(String(255))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


# ---------------------------------------------------------------------------------------------------------
# Entity lists (ODK Central's "datasets"): named lists of records with the same properties, which forms
# read as CSV attachments and (next) create and update: the lists, their properties, entities and versions.
# ---------------------------------------------------------------------------------------------------------


class EntityList(Base):
    """An entity list of a project (Central's dataset), named as forms name it in ``save_to``."""

    __tablename__ = "entity_list"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id"))
    name: Mapped[str] = mapped_column(String(255))
    # Entities are created from submissions only once these are approved (Central's approvalRequired).
    approval_required: Mapped[bool] = mapped_column(Boolean, default=False)
    owner_only: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))

    properties: Mapped[list[EntityProperty]] = relationship(
        back_populates="entity_list", order_by="EntityProperty.id"
    )
    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_entity_list_name"),)


class EntityProperty(Base):
    """A property (column) of an entity list, in the order it was added."""

    __tablename__ = "entity_property"
    id: Mapped[int] = mapped_column(primary_key=True)
    entity_list_id: Mapped[int] = mapped_column(ForeignKey("entity_list.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    published_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    entity_list: Mapped[EntityList] = relationship(back_populates="properties")
    __table_args__ = (UniqueConstraint("entity_list_id", "name", name="uq_entity_property_name"),)


class Entity(Base):
    """One record of an entity list. Its current label and properties are copied from its newest
    version so that lists, CSVs and OData read one row per entity; the history is in ``versions``."""

    __tablename__ = "entity"
    id: Mapped[int] = mapped_column(primary_key=True)
    entity_list_id: Mapped[int] = mapped_column(ForeignKey("entity_list.id"), index=True)
    uuid: Mapped[str] = mapped_column(String(36))
    label: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    version: Mapped[int] = mapped_column(default=1)
    # Central's conflict flag: null, "soft" or "hard"; set when updates made apart (offline) cross.
    conflict: Mapped[str | None] = mapped_column(String(10))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    updated_at: Mapped[dt.datetime | None]
    # Deleted entities are kept (soft delete): they leave lists, CSVs and OData but not the history.
    deleted_at: Mapped[dt.datetime | None]

    creator: Mapped[User | None] = relationship()
    versions: Mapped[list[EntityVersion]] = relationship(
        back_populates="entity", order_by="EntityVersion.version"
    )
    # The current version alone, so that lists read one version per entity, not whole histories.
    current: Mapped[EntityVersion] = relationship(
        primaryjoin="and_(EntityVersion.entity_id == Entity.id, EntityVersion.version == Entity.version)",
        viewonly=True,
        uselist=False,
    )
    __table_args__ = (UniqueConstraint("entity_list_id", "uuid", name="uq_entity_uuid"),)


class EntityVersion(Base):
    """One version of an entity: what it was after one change, who made it, from where."""

    __tablename__ = "entity_version"
    id: Mapped[int] = mapped_column(primary_key=True)
    entity_id: Mapped[int] = mapped_column(ForeignKey("entity.id"), index=True)
    version: Mapped[int]
    # The version the change was made against (null for the first); differs from version - 1 only
    # when a change was forced or made apart from the others.
    base_version: Mapped[int | None]
    label: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # What the change itself carried (Central's dataReceived): only the properties it set.
    data_received: Mapped[dict[str, Any]] = mapped_column(default=dict)
    conflicting_properties: Mapped[list[Any] | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    user_agent: Mapped[str | None] = mapped_column(String(255))
    # Where the change came from: {"name", "size", "count", "userAgent"} for a bulk upload, {} for one
    # API call (later: the submission that made it).
    source: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The submission version that made this change (null for API calls).
    submission_version_id: Mapped[int | None] = mapped_column(ForeignKey("submission_version.id"), index=True)
    # Offline entities (spec 2024.1): the branch a device made apart, the server version it started
    # from (trunk), and the device's own base version within the branch.
    branch_id: Mapped[str | None] = mapped_column(String(36))
    trunk_version: Mapped[int | None]
    branch_base_version: Mapped[int | None]

    entity: Mapped[Entity] = relationship(back_populates="versions")
    creator: Mapped[User | None] = relationship()
    __table_args__ = (UniqueConstraint("entity_id", "version", name="uq_entity_version"),)


class EntityBacklog(Base):
    """An offline update from a submission that arrived before the version it builds on: held (never
    dropped) and applied as soon as that version is there (Central's entity_submission_backlog)."""

    __tablename__ = "entity_backlog"
    id: Mapped[int] = mapped_column(primary_key=True)
    entity_list_id: Mapped[int] = mapped_column(ForeignKey("entity_list.id"))
    entity_uuid: Mapped[str] = mapped_column(String(36))
    submission_version_id: Mapped[int] = mapped_column(ForeignKey("submission_version.id"))
    # Which entity of the submission (a form may declare several, and repeats one per row).
    entity_index: Mapped[int]
    branch_id: Mapped[str | None] = mapped_column(String(36))
    base_version: Mapped[int]
    held_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    __table_args__ = (
        UniqueConstraint("submission_version_id", "entity_index", name="uq_entity_backlog_entry"),
        Index("ix_entity_backlog_entity", "entity_list_id", "entity_uuid"),
    )


# ---------------------------------------------------------------------------------------------------------
# Field hubs and sync (issue 4): hub credentials issued by central, resumable blob uploads, and the
# receipts of what central confirmed to each hub (the base of its signed completeness statement).
# ---------------------------------------------------------------------------------------------------------


class Hub(Base):
    """A field hub allowed to push to central. Signs in with a token; only its sha256 is stored."""

    __tablename__ = "hub"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    revoked_at: Mapped[dt.datetime | None]
    last_seen_at: Mapped[dt.datetime | None]
    # The hub's Ed25519 public key (base64), pinned from its first USB bundle: later bundles must match.
    signing_key: Mapped[str | None] = mapped_column(String(64))

    projects: Mapped[list[Project]] = relationship(secondary="hub_project", order_by="Project.id")


class HubProject(Base):
    """The projects a hub may push to and pull forms from."""

    __tablename__ = "hub_project"
    hub_id: Mapped[int] = mapped_column(ForeignKey("hub.id"), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id"), primary_key=True)


class SyncUpload(Base):
    """A blob a hub is uploading in chunks; the bytes so far sit in DATA_DIR/sync-uploads."""

    __tablename__ = "sync_upload"
    hub_id: Mapped[int] = mapped_column(ForeignKey("hub.id"), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    # Bytes confirmed so far: the next chunk must start here.
    received: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SyncReceipt(Base):
    """One submission version (or kept conflict) that central confirmed holding for a hub."""

    __tablename__ = "sync_receipt"
    id: Mapped[int] = mapped_column(primary_key=True)
    hub_id: Mapped[int] = mapped_column(ForeignKey("hub.id"))
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id"))
    xml_form_id: Mapped[str] = mapped_column(String(255))
    instance_id: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    # Attachment name → sha256 of the files central holds with it.
    attachments: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # How central holds it: "version" (a submission version) or "conflict" (kept for review).
    held_as: Mapped[str] = mapped_column(String(10))
    confirmed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    __table_args__ = (
        UniqueConstraint(
            "hub_id", "project_id", "xml_form_id", "instance_id", "sha256", name="uq_sync_receipt"
        ),
    )


# Console background jobs (issue 11): "Sync now" and large downloads run in a thread of the worker that
# started them; their state is in the database so that any worker can show the progress page.
# ---------------------------------------------------------------------------------------------------------


class ConsoleJob(Base):
    """One background job of the console; its result file (if any) sits in DATA_DIR/jobs/{id}/."""

    __tablename__ = "console_job"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # random: it appears in URLs
    kind: Mapped[str] = mapped_column(String(20))  # export, report, sync
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), index=True)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("project.id"))
    title: Mapped[str] = mapped_column(String(500))
    state: Mapped[str] = mapped_column(String(10), default="queued")  # queued, running, done, failed
    done: Mapped[int] = mapped_column(BigInteger, default=0)
    total: Mapped[int | None] = mapped_column(BigInteger)
    message: Mapped[str | None] = mapped_column(Text)
    result_name: Mapped[str | None] = mapped_column(String(255))
    result_type: Mapped[str | None] = mapped_column(String(120))
    result_size: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]


__all__ = [
    "AppUser",
    "AuditEvent",
    "Base",
    "Blob",
    "Comment",
    "Conflict",
    "ConflictAttachment",
    "ConsoleJob",
    "DigestNonceUse",
    "Entity",
    "EntityBacklog",
    "EntityList",
    "EntityProperty",
    "EntityVersion",
    "Form",
    "FormAssignment",
    "FormMedia",
    "FormState",
    "FormVersion",
    "Hub",
    "HubProject",
    "Project",
    "ProjectKey",
    "ProjectRole",
    "ReviewState",
    "Role",
    "Source",
    "Submission",
    "SubmissionAttachment",
    "SubmissionVersion",
    "SyncReceipt",
    "SyncUpload",
    "User",
    "WebSession",
]
