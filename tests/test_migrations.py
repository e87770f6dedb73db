"""Migrations build exactly the schema the models describe, on SQLite and PostgreSQL, both ways."""

from collections.abc import Callable

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from server import migrate
from server.models import Base
from tests.conftest import AppEnv


def test_upgrade_matches_models_and_downgrade_empties(make_env: Callable[[], AppEnv]) -> None:
    env = make_env()  # already upgraded to head
    engine = create_engine(env.target.url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models and migrations differ: {diff}"

    migrate.downgrade(env.target.url, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(env.target.url)
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_console_filter_columns_are_filled_for_existing_submissions(make_env: Callable[[], AppEnv]) -> None:
    """Migration 0010 copies region, district (current version's answers) and the first version's device
    onto submissions stored before it."""
    from sqlalchemy import text

    env = make_env()
    migrate.downgrade(env.target.url, "0007")
    engine = create_engine(env.target.url)
    xml = (
        '<data id="f" version="1"><place><region>gbao</region><district>khorog</district></place>'
        "<meta><instanceID>uuid:1</instanceID></meta></data>"
    )
    now = "2026-12-05 00:00:00"
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO project (id, name, created_at, archived, pseudonym_key, "
                "coordinators_see_personal, test_device_ids) VALUES (1, 'p', :t, false, 'k', false, '[]')"
            ),
            {"t": now},
        )
        conn.execute(
            text(
                "INSERT INTO app_user (id, project_id, display_name, created_at, is_test) "
                "VALUES (5, 1, 'Tablet', :t, false)"
            ),
            {"t": now},
        )
        conn.execute(
            text(
                "INSERT INTO form (id, project_id, xml_form_id, state, created_at) "
                "VALUES (1, 1, 'f', 'open', :t)"
            ),
            {"t": now},
        )
        conn.execute(
            text(
                "INSERT INTO form_version (id, form_id, version, title, xml, md5, sha256, fields, "
                "created_at) VALUES (1, 1, '1', 't', '<x/>', 'm', 's', '[]', :t)"
            ),
            {"t": now},
        )
        conn.execute(
            text(
                "INSERT INTO submission (id, form_id, instance_id, review_state, created_at) "
                "VALUES (1, 1, 'uuid:1', 'received', :t)"
            ),
            {"t": now},
        )
        conn.execute(
            text(
                "INSERT INTO submission_version (id, submission_id, form_id, form_version_id, "
                "instance_id, xml, sha256, encrypted, source, app_user_id, received_at) "
                "VALUES (1, 1, 1, 1, 'uuid:1', :x, 's', false, 'device', 5, :t)"
            ),
            {"x": xml, "t": now},
        )
        conn.execute(text("UPDATE submission SET current_version_id = 1"))
    migrate.upgrade(env.target.url)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT region, district, app_user_id FROM submission WHERE id = 1")).one()
    assert tuple(row) == ("gbao", "khorog", 5)
    migrate.downgrade(env.target.url, "0007")  # with rows in place (no copy of the table)
    migrate.upgrade(env.target.url)
    engine.dispose()
