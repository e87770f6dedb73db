"""Entities of entity lists and their versions

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "entity",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("entity_list_id", sa.Integer(), nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("conflict", sa.String(length=10), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["user_account.id"], name=op.f("fk_entity_created_by_id_user_account")
        ),
        sa.ForeignKeyConstraint(
            ["entity_list_id"], ["entity_list.id"], name=op.f("fk_entity_entity_list_id_entity_list")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_entity")),
        sa.UniqueConstraint("entity_list_id", "uuid", name="uq_entity_uuid"),
    )
    op.create_index(op.f("ix_entity_entity_list_id"), "entity", ["entity_list_id"], unique=False)
    op.create_table(
        "entity_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("entity_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("base_version", sa.Integer(), nullable=True),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("data_received", sa.JSON(), nullable=False),
        sa.Column("conflicting_properties", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("user_agent", sa.String(length=255), nullable=True),
        sa.Column("source", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["user_account.id"], name=op.f("fk_entity_version_created_by_id_user_account")
        ),
        sa.ForeignKeyConstraint(
            ["entity_id"], ["entity.id"], name=op.f("fk_entity_version_entity_id_entity")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_entity_version")),
        sa.UniqueConstraint("entity_id", "version", name="uq_entity_version"),
    )
    op.create_index(op.f("ix_entity_version_entity_id"), "entity_version", ["entity_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_entity_version_entity_id"), table_name="entity_version")
    op.drop_table("entity_version")
    op.drop_index(op.f("ix_entity_entity_list_id"), table_name="entity")
    op.drop_table("entity")
