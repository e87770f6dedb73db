"""Writing into the hub's store, for the commands that bring things *to* the hub (pull-forms,
pull-device, bundle receipts): the hub's own app and code paths, so that its rules apply unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask

from server import create_app
from server.config import Settings, load_settings, settings
from server.db import Database, Writer
from sync_client.config import SyncConfig


class HubWriter:
    def __init__(self, config: SyncConfig) -> None:
        assert config.hub_data_dir is not None
        overrides = {"data_dir": config.hub_data_dir, "log_level": "WARNING"}
        if config.hub_database_url:
            overrides["database_url"] = config.hub_database_url
        self.app: Flask = create_app(load_settings(overrides=overrides, environ={}))

    @property
    def settings(self) -> Settings:
        return settings(self.app)

    @property
    def database(self) -> Database:
        return self.app.extensions["sarhad.db"]  # type: ignore[no-any-return]

    @contextmanager
    def write(self) -> Iterator[Writer]:
        with self.app.app_context(), self.database.write() as writer:
            yield writer

    def close(self) -> None:
        self.database.engine.dispose()
