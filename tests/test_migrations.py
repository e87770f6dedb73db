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
