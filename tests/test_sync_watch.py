"""``sarhad-sync watch``: syncs whenever central answers, keeps at it, backs off while it does not, and
stops cleanly on Ctrl-C (SIGINT) or SIGTERM; a second watch of the same hub refuses to run."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import AppEnv, free_port, serve_in_thread
from tests.test_sync_support import (
    Store,
    form_xml,
    instance_xml,
    new_id,
    run_sync,
    sqlite_env,
    start_sync,
    sync_env,
)


def _wait_for(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def test_watch_syncs_repeatedly_and_stops_cleanly(make_env: Callable[[], AppEnv], tmp_path: Path) -> None:
    central = Store(make_env())
    project = central.project("Rushon")
    central.publish(project, form_xml())
    token = central.hub_token("Rushon-1", project)
    hub = Store(sqlite_env(tmp_path / "hub"))
    hub_project = hub.project("Rushon")
    hub.publish(hub_project, form_xml())
    hub.submit(hub_project, instance_xml(new_id(), "Bartang"))
    live, stop = serve_in_thread(central.app)
    try:
        env = sync_env(live.url, token, hub.env.data_dir, SARHAD_SYNC_INTERVAL_MINUTES="0.02")
        watcher = start_sync(env, "watch")
        try:
            assert _wait_for(lambda: len(central.holdings()) == 1, 60), "the first sync did not happen"
            # One run at a time across processes: a second watch of the same hub says so and stops.
            second = run_sync(env, "watch", timeout=60, in_process=False)
            assert second.returncode == 7, second.stdout + second.stderr
            assert "another sarhad-sync watch already runs" in second.stderr
            later = new_id()
            hub.submit(hub_project, instance_xml(later, "Savnob"))
            assert _wait_for(lambda: later in {h[2] for h in central.holdings()}, 60), "no second sync"
            central.publish(project, form_xml(version="2"))  # and forms come back to the hub
            assert _wait_for(lambda: len([h for h in hub.holdings()]) == 2 and _hub_has_version(hub, "2"), 60)
        finally:
            watcher.send_signal(signal.SIGINT)
            out, _err = watcher.communicate(timeout=60)
        assert watcher.returncode == 0, out
        assert "central is reachable: syncing" in out and "stopped; the next run continues" in out
    finally:
        stop()


def _hub_has_version(hub: Store, version: str) -> bool:
    from sqlalchemy import select

    from server.models import FormVersion

    with hub.database.read() as session:
        return version in set(session.scalars(select(FormVersion.version)))


def test_watch_backs_off_while_central_is_away(tmp_path: Path) -> None:
    hub = Store(sqlite_env(tmp_path / "hub"))
    env = sync_env(
        f"http://127.0.0.1:{free_port()}", "hub_x", hub.env.data_dir,
        SARHAD_SYNC_INTERVAL_MINUTES="0.02", SARHAD_SYNC_BACKOFF_SECONDS="0.1",
    )  # fmt: skip
    watcher = start_sync(env, "watch")
    time.sleep(6)
    watcher.send_signal(signal.SIGTERM)
    out, _err = watcher.communicate(timeout=30)
    assert watcher.returncode == 0, out
    waits = [line for line in out.splitlines() if "is not reachable; next attempt in about" in line]
    assert 1 <= len(waits) < 5, out  # checks every ~1 s, but backs off: 1.5-3 s, then 3-6 s...
    assert "is reachable: syncing" not in out and "stopped" in out
