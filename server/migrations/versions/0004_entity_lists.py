"""Entity lists (Central's datasets) and their properties

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "entity_list",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("approval_required", sa.Boolean(), nullable=False),
        sa.Column("owner_only", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["user_account.id"], name=op.f("fk_entity_list_created_by_id_user_account")
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["project.id"], name=op.f("fk_entity_list_project_id_project")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_entity_list")),
        sa.UniqueConstraint("project_id", "name", name="uq_entity_list_name"),
    )
    op.create_table(
        "entity_property",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("entity_list_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["entity_list_id"], ["entity_list.id"], name=op.f("fk_entity_property_entity_list_id_entity_list")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_entity_property")),
        sa.UniqueConstraint("entity_list_id", "name", name="uq_entity_property_name"),
    )
    op.create_index(
        op.f("ix_entity_property_entity_list_id"), "entity_property", ["entity_list_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_entity_property_entity_list_id"), table_name="entity_property")
    op.drop_table("entity_property")
    op.drop_table("entity_list")
