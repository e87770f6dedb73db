"""Failed sign-ins and wrong device credentials, counted for sign-in limits shared by every worker

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "signin_failure",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=20), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signin_failure")),
    )
    op.create_index(op.f("ix_signin_failure_failed_at"), "signin_failure", ["failed_at"], unique=False)
    op.create_index(
        "ix_signin_failure_subject", "signin_failure", ["scope", "subject", "failed_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_signin_failure_subject", table_name="signin_failure")
    op.drop_index(op.f("ix_signin_failure_failed_at"), table_name="signin_failure")
    op.drop_table("signin_failure")
