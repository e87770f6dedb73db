"""The ``sarhad`` command: server, database and administration.

Each noun has its own module (projects, users, forms, app_users, maintenance); this one holds the
group, the shared context and the error handling, so that a Problem prints as one plain line.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from flask import Flask
from sqlalchemy.orm import Session

from server.config import Settings, load_settings, settings
from server.db import Database, Writer
from server.errors import Problem


@dataclass
class CliContext:
    config_file: str | None
    _app: Flask | None = field(default=None, init=False)

    @property
    def settings(self) -> Settings:
        return settings(self.app)

    @property
    def app(self) -> Flask:
        if self._app is None:
            from server import create_app

            self._app = create_app(load_settings(config_file=self.config_file))
        return self._app

    @property
    def database(self) -> Database:
        return self.app.extensions["sarhad.db"]  # type: ignore[no-any-return]

    @contextmanager
    def write(self) -> Iterator[Writer]:
        with self.app.app_context(), self.database.write() as writer:
            yield writer

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self.app.app_context(), self.database.read() as session:
            yield session


pass_ctx = click.make_pass_decorator(CliContext)


def write_file_atomically(output: Path, chunks: Iterable[bytes]) -> None:
    """Write ``output`` whole or not at all: into ``<output>.part``, synced to disk, then renamed, so
    that a file an analyst finds is never half written (a cut run leaves no ``.part`` behind either)."""
    partial = output.with_name(output.name + ".part")
    try:
        with partial.open("wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)


class SarhadGroup(click.Group):
    """Prints a Problem as ``error: <message>`` with exit code 1 instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Problem as problem:
            click.echo(f"error: {problem.message}", err=True)
            for key, value in problem.details.items():
                click.echo(f"  {key}: {value}", err=True)
            sys.exit(1)


@click.group(cls=SarhadGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False),
    envvar="SARHAD_CONFIG",
    help="TOML settings file (default: $SARHAD_CONFIG). Environment variables override it.",
)
@click.pass_context
def main(ctx: click.Context, config_file: str | None) -> None:
    """Sarhad: offline-first ODK-compatible data collection server."""
    ctx.obj = CliContext(config_file)


def _register() -> None:
    from server.cli import (
        app_users,
        audit,
        backups,
        entities,
        exports,
        forms,
        hubs,
        maintenance,
        projects,
        quickstart,
        reports,
        users,
    )

    for module in (
        maintenance,
        quickstart,
        projects,
        users,
        forms,
        app_users,
        hubs,
        exports,
        reports,
        audit,
        backups,
        entities,
    ):
        module.register(main)


_register()
