"""Sync over a bad link: two real servers (a hub on SQLite, central on the suite's database), a proxy
between them that cuts connections, truncates answers and adds delay, and the sync client SIGKILLed at
random moments and restarted. Afterwards central holds exactly what the hub holds — nothing lost,
nothing twice — and the bytes re-sent because of the cuts stay within one chunk per cut."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import func, select

from server.models import Blob, SubmissionVersion, SyncReceipt, SyncUpload
from tests.conftest import AppEnv, ServerProcess
from tests.fault_proxy import FaultProxy, Faults
from tests.test_sync_support import (
    Store,
    form_xml,
    instance_xml,
    new_id,
    photo,
    run_sync,
    sqlite_env,
    start_sync,
    sync_env,
)

CHUNK = 64 * 1024
# Per cut, besides the chunk in flight: the restart's small requests (who am I, inventory of what is
# still unconfirmed, where does this upload stand) and HTTP headers.
OVERHEAD_PER_CUT = 16 * 1024


def _fill_hub(hub: Store, project: int) -> None:
    """40 submissions: 4 with a ~300 KB photo, an edit, a conflict kept at the hub, small ones."""
    for n in range(40):
        instance = new_id()
        if n % 10 == 0:
            name = f"p{n}.jpg"
            hub.submit(project, instance_xml(instance, f"village {n}", name), {name: photo(n, 300_000 + n)})
        elif n % 10 == 5:
            name = f"s{n}.jpg"
            hub.submit(project, instance_xml(instance, f"village {n}", name), {name: photo(n, 3_000)})
        else:
            hub.submit(project, instance_xml(instance, f"village {n}"), device=f"collect:tablet{n % 3:04d}")
        if n == 7:
            hub.submit(project, instance_xml(new_id(), "village 7, corrected", deprecated=instance))
        if n == 8:
            assert hub.submit(project, instance_xml(instance, "village 8 typed twice")) == "conflict"


def _central(
    make_env: Callable[[], AppEnv], server_process: Callable[..., ServerProcess]
) -> tuple[Store, int, str, ServerProcess]:
    store = Store(make_env())
    project = store.project("Khorog")
    store.publish(project, form_xml())
    token = store.hub_token("Khorog-2", project)
    return store, project, token, server_process(store.env)


def test_push_survives_cuts_and_kills(
    make_env: Callable[[], AppEnv], server_process: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    seed = int(os.environ.get("SARHAD_TEST_SEED", random.randrange(1_000_000)))
    rng = random.Random(seed)
    hub = Store(sqlite_env(tmp_path / "hub"))
    hub_project = hub.project("Khorog")
    hub.publish(hub_project, form_xml())
    _fill_hub(hub, hub_project)
    hub_server = server_process(hub.env, workers=1)  # the hub keeps serving its tablets while it syncs
    central, _project, token, central_server = _central(make_env, server_process)

    faults = Faults(cut_rate=0.5, cut_within=300_000, truncate_rate=0.25, truncate_within=2_000, delay=0.001)
    tuning = {
        "SARHAD_SYNC_CHUNK_BYTES": str(CHUNK),
        "SARHAD_SYNC_RETRIES": "60",
        "SARHAD_SYNC_BACKOFF_SECONDS": "0.02",
        "SARHAD_SYNC_BACKOFF_MAX_SECONDS": "0.2",
        "SARHAD_SYNC_READ_TIMEOUT": "20",
    }
    kills, finished = 0, None
    with FaultProxy(central_server.port, faults, seed=seed) as proxy:
        env = sync_env(proxy.url, token, hub.env.data_dir, **tuning)
        for _ in range(5):
            # Kill at a random point of the transfer: after a random number of bytes went upstream.
            target = proxy.counters.upstream + rng.randint(2_000, 400_000)
            client = start_sync(env, "push", "--quiet")
            while client.poll() is None and proxy.counters.upstream < target:
                time.sleep(0.005)
            if client.poll() is None:
                client.send_signal(signal.SIGKILL)
                kills += 1
            else:  # it finished first: then it succeeded or found central unreachable
                assert client.returncode in (0, 3), f"seed {seed}: {client.stderr.read()}"  # type: ignore[union-attr]
            client.wait(timeout=10)
            client.stdout.close()  # type: ignore[union-attr]
            client.stderr.close()  # type: ignore[union-attr]
        for _ in range(10):
            finished = run_sync(env, "push", "--json", timeout=180, in_process=False)
            if finished.returncode == 0:
                break
            assert finished.returncode == 3, (
                f"seed {seed}: {finished.stderr}"
            )  # only "unreachable" may repeat
        assert finished is not None and finished.returncode == 0, (
            f"seed {seed}: {finished and finished.stderr}"
        )
        upstream, cuts = proxy.counters.upstream, proxy.counters.cuts + proxy.counters.truncations
    assert hub_server.proc is not None and hub_server.proc.poll() is None

    report = json.loads(finished.stdout)
    assert report["complete"] and report["statement"]["statement"]["total"] == len(hub.holdings())
    hub_has, central_has = hub.holdings(), central.holdings()
    assert {h[1:] for h in central_has} == {h[1:] for h in hub_has}, f"seed {seed}"
    with central.database.read() as session, hub.database.read() as hub_session:
        versions = session.scalar(select(func.count()).select_from(SubmissionVersion))
        assert versions == hub_session.scalar(select(func.count()).select_from(SubmissionVersion))
        assert session.scalar(select(func.count()).select_from(Blob)) == hub_session.scalar(
            select(func.count()).select_from(Blob)
        )
        assert session.scalar(select(func.count()).select_from(SyncReceipt)) == len(hub_has)
        assert session.scalar(select(func.count()).select_from(SyncUpload)) == 0
    assert not [p for p in (central.env.data_dir / "sync-uploads").iterdir()]

    # The same push over a clean link to a fresh central: what the cuts cost is the difference.
    clean_central, _p, clean_token, clean_server = _central(make_env, server_process)
    with FaultProxy(clean_server.port) as clean_proxy:
        ledger = tmp_path / "clean-ledger.db"
        clean_env = sync_env(
            clean_proxy.url, clean_token, hub.env.data_dir, SARHAD_SYNC_LEDGER=str(ledger), **tuning
        )
        assert run_sync(clean_env, "push", "--quiet", in_process=False).returncode == 0
        clean = clean_proxy.counters.upstream
    events = cuts + kills
    resent = upstream - clean
    assert events > 0, f"seed {seed}: no fault was injected"
    assert resent <= events * (CHUNK + OVERHEAD_PER_CUT), (
        f"seed {seed}: {resent} bytes re-sent for {events} cuts ({cuts} by the proxy, {kills} kills)"
    )
    print(f"seed {seed}: {cuts} proxy faults, {kills} kills, {resent} bytes re-sent, clean run {clean} bytes")
    assert {h[1:] for h in clean_central.holdings()} == {h[1:] for h in hub_has}
