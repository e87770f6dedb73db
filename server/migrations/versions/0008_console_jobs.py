"""Console background jobs ("Sync now", large downloads) and their progress

Revision ID: 0008_console_jobs
Revises: 0007 (0007_entities)
Create Date: 2026-12-05

A job runs in a thread of the web worker that started it; its state lives in this table so that the
progress page opens from any worker. Result files sit in DATA_DIR/jobs/{id}/ and are deleted with the row.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"  # the file 0007_entities.py
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "console_job",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("user_account.id"), nullable=False),
        sa.Column("project_id", sa.Integer(), sa.ForeignKey("project.id"), nullable=True),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("done", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("result_name", sa.String(length=255), nullable=True),
        sa.Column("result_type", sa.String(length=120), nullable=True),
        sa.Column("result_size", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_console_job_user_id", "console_job", ["user_id"])
    op.create_index("ix_console_job_created_at", "console_job", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_console_job_created_at", table_name="console_job")
    op.drop_index("ix_console_job_user_id", table_name="console_job")
    op.drop_table("console_job")
