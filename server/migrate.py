"""Database migrations (Alembic), run by ``sarhad db upgrade`` and by the test fixtures."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from server.db import make_engine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head", engine: Engine | None = None) -> None:
    cfg = alembic_config(url)
    engine = engine or make_engine(url)
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


def downgrade(url: str, revision: str) -> None:
    cfg = alembic_config(url)
    with make_engine(url).begin() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, revision)
