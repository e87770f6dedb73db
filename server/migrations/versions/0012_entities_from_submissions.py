"""Entities from submissions: the submission version each entity version came from and its offline
branch, updates held until the version they build on arrives, and form media served from entity lists

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("entity_version") as batch:
        batch.add_column(sa.Column("submission_version_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("branch_id", sa.String(length=36), nullable=True))
        batch.add_column(sa.Column("trunk_version", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("branch_base_version", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_entity_version_submission_version_id_submission_version",
            "submission_version",
            ["submission_version_id"],
            ["id"],
        )
        batch.create_index("ix_entity_version_submission_version_id", ["submission_version_id"])
    op.create_table(
        "entity_backlog",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("entity_list_id", sa.Integer(), nullable=False),
        sa.Column("entity_uuid", sa.String(length=36), nullable=False),
        sa.Column("submission_version_id", sa.Integer(), nullable=False),
        sa.Column("entity_index", sa.Integer(), nullable=False),
        sa.Column("branch_id", sa.String(length=36), nullable=True),
        sa.Column("base_version", sa.Integer(), nullable=False),
        sa.Column("held_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["entity_list_id"], ["entity_list.id"], name=op.f("fk_entity_backlog_entity_list_id_entity_list")
        ),
        sa.ForeignKeyConstraint(
            ["submission_version_id"],
            ["submission_version.id"],
            name=op.f("fk_entity_backlog_submission_version_id_submission_version"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_entity_backlog")),
        sa.UniqueConstraint("submission_version_id", "entity_index", name="uq_entity_backlog_entry"),
    )
    op.create_index("ix_entity_backlog_entity", "entity_backlog", ["entity_list_id", "entity_uuid"])
    with op.batch_alter_table("form_media") as batch:
        batch.add_column(sa.Column("entity_list_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_form_media_entity_list_id_entity_list", "entity_list", ["entity_list_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("form_media") as batch:
        batch.drop_constraint("fk_form_media_entity_list_id_entity_list", type_="foreignkey")
        batch.drop_column("entity_list_id")
    op.drop_index("ix_entity_backlog_entity", table_name="entity_backlog")
    op.drop_table("entity_backlog")
    with op.batch_alter_table("entity_version") as batch:
        batch.drop_index("ix_entity_version_submission_version_id")
        batch.drop_constraint(
            "fk_entity_version_submission_version_id_submission_version", type_="foreignkey"
        )
        batch.drop_column("branch_base_version")
        batch.drop_column("trunk_version")
        batch.drop_column("branch_id")
        batch.drop_column("submission_version_id")
