"""field hubs and sync: hub credentials, resumable uploads, receipts

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hub",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("signing_key", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["user_account.id"], name=op.f("fk_hub_created_by_id_user_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hub")),
        sa.UniqueConstraint("name", name=op.f("uq_hub_name")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_hub_token_sha256")),
    )
    op.create_table(
        "hub_project",
        sa.Column("hub_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["hub_id"], ["hub.id"], name=op.f("fk_hub_project_hub_id_hub")),
        sa.ForeignKeyConstraint(
            ["project_id"], ["project.id"], name=op.f("fk_hub_project_project_id_project")
        ),
        sa.PrimaryKeyConstraint("hub_id", "project_id", name=op.f("pk_hub_project")),
    )
    op.create_table(
        "sync_receipt",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("hub_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("xml_form_id", sa.String(length=255), nullable=False),
        sa.Column("instance_id", sa.String(length=255), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("attachments", sa.JSON(), nullable=False),
        sa.Column("held_as", sa.String(length=10), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["hub_id"], ["hub.id"], name=op.f("fk_sync_receipt_hub_id_hub")),
        sa.ForeignKeyConstraint(
            ["project_id"], ["project.id"], name=op.f("fk_sync_receipt_project_id_project")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_receipt")),
        sa.UniqueConstraint(
            "hub_id", "project_id", "xml_form_id", "instance_id", "sha256", name="uq_sync_receipt"
        ),
    )
    op.create_table(
        "sync_upload",
        sa.Column("hub_id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("received", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["hub_id"], ["hub.id"], name=op.f("fk_sync_upload_hub_id_hub")),
        sa.PrimaryKeyConstraint("hub_id", "sha256", name=op.f("pk_sync_upload")),
    )


def downgrade() -> None:
    op.drop_table("sync_upload")
    op.drop_table("sync_receipt")
    op.drop_table("hub_project")
    op.drop_table("hub")
