"""Digest nonce counts already used, so that an overheard request cannot be replayed

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "digest_nonce_use",
        sa.Column("nonce", sa.String(length=100), nullable=False),
        sa.Column("nc", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("nonce", "nc", name=op.f("pk_digest_nonce_use")),
    )
    op.create_index(op.f("ix_digest_nonce_use_used_at"), "digest_nonce_use", ["used_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_digest_nonce_use_used_at"), table_name="digest_nonce_use")
    op.drop_table("digest_nonce_use")
