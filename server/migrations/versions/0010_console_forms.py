"""The console's submission filters (region, district, device, review state) each served by an index;
the submission columns each web user chose

Revision ID: 0010
Revises: 0007
Create Date: 2026-12-05

A filtered page of 100,000 submissions must read in index order and stop after 50 rows, as an unfiltered
one does; so the filtered values sit on the submission row (ingest fills them) with an index
(form_id, value, created_at, id) each. Existing submissions are filled here: the device from the first
version, region and district from the current version's answers (server.ingest.places).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FILTER_INDEXES = {
    "ix_submission_form_region": ["form_id", "region", "created_at", "id"],
    "ix_submission_form_district": ["form_id", "district", "created_at", "id"],
    "ix_submission_form_review": ["form_id", "review_state", "created_at", "id"],
    "ix_submission_form_device": ["form_id", "app_user_id", "created_at", "id"],
}
BATCH = 1000


def upgrade() -> None:
    with op.batch_alter_table("user_account") as batch:
        batch.add_column(sa.Column("console_columns", sa.JSON(), nullable=True))
    with op.batch_alter_table("submission") as batch:
        batch.add_column(sa.Column("region", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("district", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("app_user_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_submission_app_user_id_app_user"), "app_user", ["app_user_id"], ["id"]
        )
        for name, columns in FILTER_INDEXES.items():
            batch.create_index(name, columns, unique=False)
    _fill_existing()


def _fill_existing() -> None:
    from server.ingest.parse import parse_submission
    from server.ingest.places import places

    conn = op.get_bind()
    conn.execute(
        sa.text(
            "UPDATE submission SET app_user_id = (SELECT v.app_user_id FROM submission_version v "
            "WHERE v.submission_id = submission.id ORDER BY v.id LIMIT 1)"
        )
    )
    last = 0
    while True:
        rows = conn.execute(
            sa.text(
                "SELECT s.id, v.xml FROM submission s "
                "JOIN submission_version v ON v.id = s.current_version_id "
                "WHERE s.id > :last ORDER BY s.id LIMIT :n"
            ),
            {"last": last, "n": BATCH},
        ).all()
        if not rows:
            return
        updates = []
        for sub_id, xml in rows:
            data = xml.encode("utf-8")
            try:
                found = places(parse_submission(data, len(data) + 1).leaves)
            except Exception:  # stored once as received; one that no longer parses keeps no place
                continue
            if found["region"] or found["district"]:
                updates.append({"id": sub_id, **found})
        if updates:
            conn.execute(
                sa.text("UPDATE submission SET region = :region, district = :district WHERE id = :id"),
                updates,
            )
        last = rows[-1][0]


def downgrade() -> None:
    with op.batch_alter_table("submission") as batch:
        for name in FILTER_INDEXES:
            batch.drop_index(name)
        batch.drop_constraint(op.f("fk_submission_app_user_id_app_user"), type_="foreignkey")
        batch.drop_column("app_user_id")
        batch.drop_column("district")
        batch.drop_column("region")
    with op.batch_alter_table("user_account") as batch:
        batch.drop_column("console_columns")
