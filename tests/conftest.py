"""Shared fixtures: real databases, real HTTP servers, the real command line.

The database comes from ``SARHAD_TEST_DATABASE_URL``: unset means SQLite (a file per app); a
``postgresql+psycopg://...`` URL means PostgreSQL, where each app gets a schema of its own in that
database (dropped at the end), so that runs never see each other's rows.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests
from flask import Flask
from sqlalchemy import create_engine, text
from werkzeug.serving import BaseWSGIServer, make_server

from server import create_app, migrate
from server.config import load_settings
from server.db import Database

if TYPE_CHECKING:
    from tests.test_sync_support import Store

ROOT = Path(__file__).resolve().parent.parent
FORMS_DIR = ROOT / "forms"
CORPUS_DIR = ROOT.parent / "shared" / "corpus" / "xlsforms"
TEST_DB_ENV = "SARHAD_TEST_DATABASE_URL"


def _pg_base() -> str | None:
    url = os.environ.get(TEST_DB_ENV, "")
    return url if url.startswith("postgresql") else None


@dataclass
class DatabaseTarget:
    """Where one test app keeps its rows; ``drop()`` removes them (PostgreSQL schema)."""

    url: str
    schema: str | None = None

    def drop(self) -> None:
        if self.schema and (base := _pg_base()):
            engine = create_engine(base)
            with engine.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
            engine.dispose()


def new_database_target(data_dir: Path) -> DatabaseTarget:
    base = _pg_base()
    if base is None:
        return DatabaseTarget(f"sqlite:///{data_dir / 'sarhad.db'}")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = create_engine(base)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    sep = "&" if "?" in base else "?"
    return DatabaseTarget(f"{base}{sep}options=-csearch_path%3D{schema}", schema)


@pytest.fixture(scope="session")
def backend() -> str:
    """'postgresql' or 'sqlite': the database this run of the suite uses."""
    return "postgresql" if _pg_base() else "sqlite"


@dataclass
class AppEnv:
    """A migrated database, a data dir and the settings that point at them."""

    data_dir: Path
    target: DatabaseTarget

    @property
    def env(self) -> dict[str, str]:
        """Environment for a ``sarhad`` or gunicorn subprocess using this store."""
        return {
            **os.environ,
            "SARHAD_DATA_DIR": str(self.data_dir),
            "SARHAD_DATABASE_URL": self.target.url,
            "SARHAD_LOG_LEVEL": "WARNING",
        }

    def app(self, **overrides: Any) -> Flask:
        settings = load_settings(
            overrides={
                "data_dir": self.data_dir,
                "database_url": self.target.url,
                "log_level": "WARNING",
                **overrides,
            },
            environ={},
        )
        return create_app(settings)


@pytest.fixture
def make_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], AppEnv]]:
    """Factory of fresh, migrated stores (data dir + database)."""
    created: list[AppEnv] = []

    def factory() -> AppEnv:
        data_dir = tmp_path_factory.mktemp("sarhad-data")
        target = new_database_target(data_dir)
        migrate.upgrade(target.url)
        env = AppEnv(data_dir, target)
        created.append(env)
        return env

    yield factory
    for env in created:
        env.target.drop()


@pytest.fixture(scope="module")
def module_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppEnv]:
    data_dir = tmp_path_factory.mktemp("sarhad-data")
    target = new_database_target(data_dir)
    migrate.upgrade(target.url)
    yield AppEnv(data_dir, target)
    target.drop()


@pytest.fixture(scope="module")
def app(module_env: AppEnv) -> Flask:
    """An app on a store shared by one test module; tests isolate themselves by project."""
    return module_env.app()


@pytest.fixture(scope="module")
def database(app: Flask) -> Database:
    return app.extensions["sarhad.db"]  # type: ignore[no-any-return]


@dataclass
class LiveServer:
    url: str
    app: Flask
    _server: BaseWSGIServer

    @property
    def database(self) -> Database:
        return self.app.extensions["sarhad.db"]  # type: ignore[no-any-return]


def serve_in_thread(app: Flask) -> tuple[LiveServer, Callable[[], None]]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    live = LiveServer(f"http://127.0.0.1:{server.server_port}", app, server)

    def stop() -> None:
        server.shutdown()
        thread.join(timeout=10)

    return live, stop


@pytest.fixture(scope="module")
def live_server(app: Flask) -> Iterator[LiveServer]:
    """The module's app behind a real HTTP server on a free loopback port."""
    live, stop = serve_in_thread(app)
    yield live
    stop()


@pytest.fixture
def central(make_env: Callable[[], AppEnv]) -> Iterator[tuple[Store, LiveServer]]:
    """A central server for the sync tests, on a fresh store of this run's database: (store, server)."""
    from tests.test_sync_support import Store  # it imports this module

    store = Store(make_env())
    live, stop = serve_in_thread(store.app)
    yield store, live
    stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    """``sarhad`` served by gunicorn in a child process (killable, restartable)."""

    env: AppEnv
    port: int
    proc: subprocess.Popen[bytes] | None = None
    workers: int = 2

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "server.wsgi:app",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(self.workers),
                "--threads",
                "4",
                "--worker-class",
                "gthread",
                "--timeout",
                "120",
            ],
            env=self.env.env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                requests.get(f"{self.url}/v1/health", timeout=1)
                return
            except (requests.ConnectionError, requests.Timeout):  # a booting worker may be slow
                time.sleep(0.1)
        raise RuntimeError("server did not start in time")

    def kill(self) -> None:
        """SIGKILL the whole server (master and workers): a crash, not a shutdown."""
        assert self.proc is not None
        subprocess.run(["pkill", "-KILL", "-P", str(self.proc.pid)], check=False)
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def server_process(make_env: Callable[[], AppEnv]) -> Iterator[Callable[..., ServerProcess]]:
    """Factory: a gunicorn server process on a fresh store (or a given one)."""
    started: list[ServerProcess] = []

    def factory(env: AppEnv | None = None, workers: int = 2) -> ServerProcess:
        proc = ServerProcess(env or make_env(), free_port(), workers=workers)
        proc.start()
        started.append(proc)
        return proc

    yield factory
    for proc in started:
        proc.stop()


RunCli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run_cli() -> RunCli:
    """Run the real ``sarhad`` command: ``run_cli(env, "project", "create", "X", input=...)``."""

    def run(
        env: AppEnv, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "server.cli", *args],
            env=env.env,
            cwd=ROOT,
            input=input,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"sarhad {' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    return run


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The shared corpus of real XLSForms; absent in a user's fresh clone."""
    if not CORPUS_DIR.is_dir():
        pytest.skip(f"the XLSForm corpus is not at {CORPUS_DIR} (it sits beside the clone in CI)")
    return CORPUS_DIR
