"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "blob",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("md5", sa.String(length=32), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_blob")),
    )
    op.create_table(
        "project",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("archived", sa.Boolean(), nullable=False),
        sa.Column("pseudonym_key", sa.String(length=64), nullable=False),
        sa.Column("coordinators_see_personal", sa.Boolean(), nullable=False),
        sa.Column("test_device_ids", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_project")),
        sa.UniqueConstraint("name", name=op.f("uq_project_name")),
    )
    op.create_table(
        "user_account",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=True),
        sa.Column("is_site_admin", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_account")),
        sa.UniqueConstraint("email", name=op.f("uq_user_account_email")),
    )
    op.create_table(
        "app_user",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=True),
        sa.Column("digest_ha1", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("is_test", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["user_account.id"],
            name=op.f("fk_app_user_created_by_id_user_account"),
        ),
        sa.ForeignKeyConstraint(["project_id"], ["project.id"], name=op.f("fk_app_user_project_id_project")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app_user")),
        sa.UniqueConstraint("project_id", "display_name", name="uq_app_user_name"),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_app_user_token_sha256")),
    )
    with op.batch_alter_table("app_user", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_app_user_project_id"), ["project_id"], unique=False)

    op.create_table(
        "form",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("xml_form_id", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("current_version_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("state in ('open','closing','closed')", name=op.f("ck_form_state")),
        sa.ForeignKeyConstraint(["project_id"], ["project.id"], name=op.f("fk_form_project_id_project")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_form")),
        sa.UniqueConstraint("project_id", "xml_form_id", name="uq_form_xml_form_id"),
    )
    op.create_table(
        "project_role",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.CheckConstraint("role in ('admin','coordinator','analyst')", name=op.f("ck_project_role_role")),
        sa.ForeignKeyConstraint(
            ["project_id"], ["project.id"], name=op.f("fk_project_role_project_id_project")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user_account.id"], name=op.f("fk_project_role_user_id_user_account")
        ),
        sa.PrimaryKeyConstraint("user_id", "project_id", name=op.f("pk_project_role")),
    )
    op.create_table(
        "web_session",
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user_account.id"], name=op.f("fk_web_session_user_id_user_account")
        ),
        sa.PrimaryKeyConstraint("token_sha256", name=op.f("pk_web_session")),
    )
    with op.batch_alter_table("web_session", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_web_session_user_id"), ["user_id"], unique=False)

    op.create_table(
        "audit_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(length=60), nullable=False),
        sa.Column("actor_user_id", sa.Integer(), nullable=True),
        sa.Column("actor_app_user_id", sa.Integer(), nullable=True),
        sa.Column("project_id", sa.Integer(), nullable=True),
        sa.Column("target_type", sa.String(length=40), nullable=True),
        sa.Column("target_id", sa.String(length=255), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_app_user_id"],
            ["app_user.id"],
            name=op.f("fk_audit_event_actor_app_user_id_app_user"),
        ),
        sa.ForeignKeyConstraint(
            ["actor_user_id"],
            ["user_account.id"],
            name=op.f("fk_audit_event_actor_user_id_user_account"),
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["project.id"], name=op.f("fk_audit_event_project_id_project")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_event")),
    )
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_event_action"), ["action"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_event_at"), ["at"], unique=False)

    op.create_table(
        "conflict",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("form_id", sa.Integer(), nullable=False),
        sa.Column("instance_id", sa.String(length=255), nullable=False),
        sa.Column("deprecated_id", sa.String(length=255), nullable=True),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("xml", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("source_detail", sa.String(length=255), nullable=True),
        sa.Column("device_id", sa.String(length=255), nullable=True),
        sa.Column("user_agent", sa.String(length=500), nullable=True),
        sa.Column("app_user_id", sa.Integer(), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by_id", sa.Integer(), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["app_user_id"], ["app_user.id"], name=op.f("fk_conflict_app_user_id_app_user")
        ),
        sa.ForeignKeyConstraint(["form_id"], ["form.id"], name=op.f("fk_conflict_form_id_form")),
        sa.ForeignKeyConstraint(
            ["resolved_by_id"],
            ["user_account.id"],
            name=op.f("fk_conflict_resolved_by_id_user_account"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user_account.id"], name=op.f("fk_conflict_user_id_user_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conflict")),
        sa.UniqueConstraint("form_id", "instance_id", "sha256", name="uq_conflict_payload"),
    )
    with op.batch_alter_table("conflict", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_conflict_form_id"), ["form_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_conflict_instance_id"), ["instance_id"], unique=False)

    op.create_table(
        "form_assignment",
        sa.Column("app_user_id", sa.Integer(), nullable=False),
        sa.Column("form_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["app_user_id"], ["app_user.id"], name=op.f("fk_form_assignment_app_user_id_app_user")
        ),
        sa.ForeignKeyConstraint(["form_id"], ["form.id"], name=op.f("fk_form_assignment_form_id_form")),
        sa.PrimaryKeyConstraint("app_user_id", "form_id", name=op.f("pk_form_assignment")),
    )
    op.create_table(
        "form_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("form_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=255), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("xml", sa.Text(), nullable=False),
        sa.Column("md5", sa.String(length=32), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("xlsform_sha256", sa.String(length=64), nullable=True),
        sa.Column("xlsform_filename", sa.String(length=255), nullable=True),
        sa.Column("public_key", sa.Text(), nullable=True),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["user_account.id"],
            name=op.f("fk_form_version_created_by_id_user_account"),
        ),
        sa.ForeignKeyConstraint(["form_id"], ["form.id"], name=op.f("fk_form_version_form_id_form")),
        sa.ForeignKeyConstraint(
            ["xlsform_sha256"], ["blob.sha256"], name=op.f("fk_form_version_xlsform_sha256_blob")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_form_version")),
    )
    with op.batch_alter_table("form_version", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_form_version_form_id"), ["form_id"], unique=False)
        batch_op.create_index("ix_form_version_form_version", ["form_id", "version"], unique=False)

    op.create_table(
        "submission",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("form_id", sa.Integer(), nullable=False),
        sa.Column("instance_id", sa.String(length=255), nullable=False),
        sa.Column("current_version_id", sa.Integer(), nullable=True),
        sa.Column("review_state", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["form_id"], ["form.id"], name=op.f("fk_submission_form_id_form")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_submission")),
        sa.UniqueConstraint("form_id", "instance_id", name="uq_submission_instance"),
    )
    with op.batch_alter_table("submission", schema=None) as batch_op:
        batch_op.create_index("ix_submission_form_created", ["form_id", "created_at"], unique=False)

    op.create_table(
        "comment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("submission_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["submission_id"], ["submission.id"], name=op.f("fk_comment_submission_id_submission")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user_account.id"], name=op.f("fk_comment_user_id_user_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_comment")),
    )
    with op.batch_alter_table("comment", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_comment_submission_id"), ["submission_id"], unique=False)

    op.create_table(
        "conflict_attachment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("conflict_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("blob_sha256", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["blob_sha256"], ["blob.sha256"], name=op.f("fk_conflict_attachment_blob_sha256_blob")
        ),
        sa.ForeignKeyConstraint(
            ["conflict_id"],
            ["conflict.id"],
            name=op.f("fk_conflict_attachment_conflict_id_conflict"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conflict_attachment")),
        sa.UniqueConstraint("conflict_id", "name", name="uq_conflict_attachment"),
    )
    with op.batch_alter_table("conflict_attachment", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_conflict_attachment_conflict_id"), ["conflict_id"], unique=False)

    op.create_table(
        "form_media",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("form_version_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("blob_sha256", sa.String(length=64), nullable=True),
        sa.Column("content_type", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(
            ["blob_sha256"], ["blob.sha256"], name=op.f("fk_form_media_blob_sha256_blob")
        ),
        sa.ForeignKeyConstraint(
            ["form_version_id"],
            ["form_version.id"],
            name=op.f("fk_form_media_form_version_id_form_version"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_form_media")),
        sa.UniqueConstraint("form_version_id", "name", name="uq_form_media_name"),
    )
    op.create_table(
        "submission_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("submission_id", sa.Integer(), nullable=False),
        sa.Column("form_id", sa.Integer(), nullable=False),
        sa.Column("form_version_id", sa.Integer(), nullable=False),
        sa.Column("instance_id", sa.String(length=255), nullable=False),
        sa.Column("deprecated_id", sa.String(length=255), nullable=True),
        sa.Column("instance_name", sa.String(length=500), nullable=True),
        sa.Column("xml", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("encrypted", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("source_detail", sa.String(length=255), nullable=True),
        sa.Column("device_id", sa.String(length=255), nullable=True),
        sa.Column("user_agent", sa.String(length=500), nullable=True),
        sa.Column("app_user_id", sa.Integer(), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["app_user_id"],
            ["app_user.id"],
            name=op.f("fk_submission_version_app_user_id_app_user"),
        ),
        sa.ForeignKeyConstraint(["form_id"], ["form.id"], name=op.f("fk_submission_version_form_id_form")),
        sa.ForeignKeyConstraint(
            ["form_version_id"],
            ["form_version.id"],
            name=op.f("fk_submission_version_form_version_id_form_version"),
        ),
        sa.ForeignKeyConstraint(
            ["submission_id"],
            ["submission.id"],
            name=op.f("fk_submission_version_submission_id_submission"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("fk_submission_version_user_id_user_account"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_submission_version")),
        sa.UniqueConstraint("form_id", "instance_id", name="uq_submission_version_instance"),
    )
    with op.batch_alter_table("submission_version", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_submission_version_submission_id"), ["submission_id"], unique=False
        )

    op.create_table(
        "submission_attachment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("blob_sha256", sa.String(length=64), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["blob_sha256"], ["blob.sha256"], name=op.f("fk_submission_attachment_blob_sha256_blob")
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["submission_version.id"],
            name=op.f("fk_submission_attachment_version_id_submission_version"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_submission_attachment")),
        sa.UniqueConstraint("version_id", "name", name="uq_submission_attachment"),
    )
    with op.batch_alter_table("submission_attachment", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_submission_attachment_version_id"), ["version_id"], unique=False)
    # form ↔ form_version and submission ↔ submission_version point at each other: the "current"
    # pointers are added once both tables exist.
    with op.batch_alter_table("form") as batch_op:
        batch_op.create_foreign_key("fk_form_current_version", "form_version", ["current_version_id"], ["id"])
    with op.batch_alter_table("submission") as batch_op:
        batch_op.create_foreign_key(
            "fk_submission_current_version", "submission_version", ["current_version_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("submission") as batch_op:
        batch_op.drop_constraint("fk_submission_current_version", type_="foreignkey")
    with op.batch_alter_table("form") as batch_op:
        batch_op.drop_constraint("fk_form_current_version", type_="foreignkey")
    with op.batch_alter_table("submission_attachment", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_submission_attachment_version_id"))

    op.drop_table("submission_attachment")
    with op.batch_alter_table("submission_version", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_submission_version_submission_id"))

    op.drop_table("submission_version")
    op.drop_table("form_media")
    with op.batch_alter_table("conflict_attachment", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_conflict_attachment_conflict_id"))

    op.drop_table("conflict_attachment")
    with op.batch_alter_table("comment", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_comment_submission_id"))

    op.drop_table("comment")
    with op.batch_alter_table("submission", schema=None) as batch_op:
        batch_op.drop_index("ix_submission_form_created")

    op.drop_table("submission")
    with op.batch_alter_table("form_version", schema=None) as batch_op:
        batch_op.drop_index("ix_form_version_form_version")
        batch_op.drop_index(batch_op.f("ix_form_version_form_id"))

    op.drop_table("form_version")
    op.drop_table("form_assignment")
    with op.batch_alter_table("conflict", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_conflict_instance_id"))
        batch_op.drop_index(batch_op.f("ix_conflict_form_id"))

    op.drop_table("conflict")
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_event_at"))
        batch_op.drop_index(batch_op.f("ix_audit_event_action"))

    op.drop_table("audit_event")
    with op.batch_alter_table("web_session", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_web_session_user_id"))

    op.drop_table("web_session")
    op.drop_table("project_role")
    op.drop_table("form")
    with op.batch_alter_table("app_user", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_app_user_project_id"))

    op.drop_table("app_user")
    op.drop_table("user_account")
    op.drop_table("project")
    op.drop_table("blob")
