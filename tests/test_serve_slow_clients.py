"""``sarhad serve`` with a room of tablets on bad Wi-Fi: 32 connections trickle their requests a few
bytes a second (16 still in their headers, 16 in their bodies) while a tablet sends normal submissions,
which are answered; a submission whose body stalls is dropped after the idle timeout, and nothing of it
is stored. (Latency figures: bench/serve_slow_clients.py.)"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from tests.collect_emulator import CollectEmulator, Instance
from tests.conftest import AppEnv, RunCli
from tests.openrosa_setup import new_uuid, small_instance
from tests.serve_process import sarhad_serve
from tests.slow_clients import SlowClients, closed_by_server, stall
from tests.test_sync_support import Store

IDLE_TIMEOUT = 3
GENEROUS = 10.0  # seconds: far above the 2 s the bench shows, far below "never answered"


def test_serve_answers_beside_slow_clients_and_drops_a_stalled_body(
    make_env: Callable[[], AppEnv], run_cli: RunCli, tmp_path: Path
) -> None:
    env = make_env()
    settings = {"SARHAD_SERVE_CHANNEL_TIMEOUT_SECONDS": str(IDLE_TIMEOUT)}
    with sarhad_serve(env, run_cli, tmp_path, **settings) as served:
        collect = CollectEmulator(f"{served.url}/v1/key/{served.key}/projects/{served.project}")
        collect.download_forms()
        sent = []
        with SlowClients(served.port, served.submission_path, headers=16, bodies=16) as slow:
            time.sleep(1)  # every slow client is connected and trickling
            for _ in range(8):
                iid = new_uuid()
                started = time.monotonic()
                result = collect.submit(Instance("small", iid, small_instance(iid, photo=None)))
                assert result.sent, result
                assert time.monotonic() - started < GENEROUS
                sent.append(iid)
            # Trickling is slow, not idle: those clients are still connected, not cut to make room.
            assert slow.closed_by_server == 0 and slow.sent > 0

        stalled = new_uuid()
        sock = stall(served.port, served.submission_path, small_instance(stalled, photo=None))
        try:
            assert closed_by_server(sock, within=IDLE_TIMEOUT * 3 + 5), "the stalled body was kept open"
        finally:
            sock.close()
        after = new_uuid()
        assert collect.submit(Instance("small", after, small_instance(after, photo=None))).sent

    held = {h[2] for h in Store(env).holdings()}
    assert held == {*sent, after}  # the stalled submission is not there, not even in part
