"""SQLite's write-ahead log stays bounded. Requests used to wait for their turn in the group commit inside
their read transaction, so with a few devices sending some reader always held an older snapshot, no
checkpoint ever completed, and ``sarhad.db-wal`` grew without end (47 MB after 3,000 submissions at 8
clients; hundreds of MB after weeks). Now: the same load through ``sarhad serve`` keeps it to a few MB
with the safeguard turned off; and when a real long reader blocks checkpoints, the safeguard truncates
the log once the reader is gone."""

from __future__ import annotations

import http.client
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import AppEnv, RunCli
from tests.openrosa_setup import new_uuid, small_instance, small_xform
from tests.serve_process import sarhad_serve
from tests.slow_clients import multipart_submission
from tests.test_sync_support import Store

CLIENTS, EACH = 8, 300
MB = 1024 * 1024


def _sqlite_only(env: AppEnv) -> None:
    if not env.target.url.startswith("sqlite"):
        pytest.skip("the write-ahead log checked here is SQLite's; PostgreSQL recycles its own WAL")


def test_wal_stays_bounded_under_concurrent_submissions(
    make_env: Callable[[], AppEnv], run_cli: RunCli, tmp_path: Path
) -> None:
    env = make_env()
    _sqlite_only(env)
    wal = env.data_dir / "sarhad.db-wal"
    largest, done = [0], threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            if wal.exists():
                largest[0] = max(largest[0], wal.stat().st_size)

    # The safeguard off: what is checked is that checkpoints complete on their own.
    with sarhad_serve(env, run_cli, tmp_path, SARHAD_SQLITE_WAL_LIMIT_MB="100000") as served:
        failures: list[str] = []

        def device() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=60)
            for _ in range(EACH):
                body, ctype = multipart_submission(small_instance(new_uuid(), photo=None))
                conn.request(
                    "POST",
                    served.submission_path,
                    body,
                    {"Content-Type": ctype, "X-OpenRosa-Version": "1.0"},
                )
                reply = conn.getresponse()
                reply.read()
                if reply.status != 201:
                    failures.append(str(reply.status))

        sampler = threading.Thread(target=sample)
        sampler.start()
        devices = [threading.Thread(target=device) for _ in range(CLIENTS)]
        for t in devices:
            t.start()
        for t in devices:
            t.join()
        done.set()
        sampler.join()
    assert failures == []
    assert len(Store(env).holdings()) == CLIENTS * EACH
    # Without the fix this load left ~47 MB; SQLite's own checkpoint runs every 1000 pages (~4 MB).
    assert largest[0] < 12 * MB, f"the write-ahead log reached {largest[0] / MB:.1f} MB"


def test_a_long_reader_holds_the_log_then_the_safeguard_truncates_it(make_env: Callable[[], AppEnv]) -> None:
    env = make_env()
    _sqlite_only(env)
    store = Store(env, {"sqlite_wal_limit_mb": 1})
    project = store.project("Readers")
    store.publish(project, small_xform())
    database = store.database

    def fill_until(check: Callable[[], bool], most: int = 2000) -> bool:
        for _ in range(most):
            iid = new_uuid()
            store.submit(project, small_instance(iid, photo=None), {"photo.jpg": os.urandom(16)})
            if check():
                return True
        return False

    # An export that reads for minutes: its snapshot keeps the log from starting over.
    reader = sqlite3.connect(env.data_dir / "sarhad.db")
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM submission").fetchone()
    try:
        assert fill_until(lambda: database.wal_size() > 2 * MB)
        assert not database.checkpoint()  # the reader is in the way: it gives up, nothing lost
    finally:
        reader.rollback()
        reader.close()
    # The reader is gone: a write that finds the log past the limit truncates it.
    assert fill_until(lambda: database.wal_size() < MB)
    assert len(store.holdings()) > 0
