"""Managed encryption: project keys (private halves kept only encrypted) and a project's key id

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "project_key",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("public", sa.Text(), nullable=False),
        sa.Column("private", sa.JSON(), nullable=False),
        sa.Column("managed", sa.Boolean(), nullable=False),
        sa.Column("hint", sa.Text(), nullable=True),
        sa.Column("version_suffix", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["user_account.id"], name=op.f("fk_project_key_created_by_id_user_account")
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["project.id"], name=op.f("fk_project_key_project_id_project")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_project_key")),
    )
    op.create_index(op.f("ix_project_key_project_id"), "project_key", ["project_id"], unique=False)
    # A plain ADD COLUMN: a batch copy of ``project`` would fail on SQLite once other rows refer to it.
    op.add_column("project", sa.Column("key_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("project", "key_id")
    op.drop_index(op.f("ix_project_key_project_id"), table_name="project_key")
    op.drop_table("project_key")
