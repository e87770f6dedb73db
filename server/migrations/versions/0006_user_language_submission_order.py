"""The console language each web user chose (en, tg, ru); submissions indexed by (form, received, id)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04

The console pages through a form's submissions newest first by (created_at, id). An index on
(form_id, created_at) alone made PostgreSQL sort every older row for each page; with the id in the index
a page is read in order and the scan stops after it. It replaces the narrower index (a prefix of it).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("user_account") as batch:
        batch.add_column(sa.Column("language", sa.String(length=10), nullable=True))
    with op.batch_alter_table("submission") as batch:
        batch.create_index("ix_submission_form_created_id", ["form_id", "created_at", "id"], unique=False)
        batch.drop_index("ix_submission_form_created")


def downgrade() -> None:
    with op.batch_alter_table("submission") as batch:
        batch.create_index("ix_submission_form_created", ["form_id", "created_at"], unique=False)
        batch.drop_index("ix_submission_form_created_id")
    with op.batch_alter_table("user_account") as batch:
        batch.drop_column("language")
