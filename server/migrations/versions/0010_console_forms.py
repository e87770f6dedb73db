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
down_revision: str | None = "0009"
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
    # Plain ADD COLUMN, no batch copy of the table: on SQLite a copy drops and rebuilds submission, which
    # the versions' foreign keys refuse once it holds rows. So app_user_id is a plain copy of the first
    # version's app_user_id (that column holds the foreign key).
    op.add_column("user_account", sa.Column("console_columns", sa.JSON(), nullable=True))
    op.add_column("submission", sa.Column("region", sa.String(length=100), nullable=True))
    op.add_column("submission", sa.Column("district", sa.String(length=100), nullable=True))
    op.add_column("submission", sa.Column("app_user_id", sa.Integer(), nullable=True))
    for name, columns in FILTER_INDEXES.items():
        op.create_index(name, "submission", columns, unique=False)
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
    for name in FILTER_INDEXES:
        op.drop_index(name, table_name="submission")
    for column in ("app_user_id", "district", "region"):
        op.drop_column("submission", column)
    op.drop_column("user_account", "console_columns")
