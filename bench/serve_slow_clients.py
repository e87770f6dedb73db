"""Benchmark: ``sarhad serve`` (waitress) answering normal Collect submissions while 32 slow clients
trickle their requests (16 in their headers, 16 in their bodies, a few bytes a second), against the
same submissions with no slow clients, in the same run on the same store.

    .venv/bin/python bench/serve_slow_clients.py [--count 50] [--headers 16] [--bodies 16] [--rate 4]

Target: every normal submission (HEAD + POST, as Collect sends it) answered within 2 s under the slow
clients. It also shows that a body that stalls is dropped once ``SARHAD_SERVE_CHANNEL_TIMEOUT_SECONDS``
(set to 5 here) passes without a byte.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ingest import Client, Serve, instance_xml, multipart, new_store, prepare  # noqa: E402

from tests.slow_clients import SlowClients, closed_by_server, stall  # noqa: E402

IDLE_TIMEOUT = 5


def submit_many(client: Client, count: int) -> list[float]:
    """``count`` submissions one after the other: the seconds each took (HEAD + POST)."""
    took = []
    for _ in range(count):
        started = time.perf_counter()
        client.submit(*multipart(instance_xml(f"uuid:{uuid.uuid4()}")))
        took.append(time.perf_counter() - started)
    return took


def summary(took: list[float]) -> str:
    data = sorted(took)
    pick = lambda p: data[min(len(data) - 1, int(p / 100 * len(data)))] * 1000  # noqa: E731
    within = sum(1 for t in data if t <= 2.0)
    return (
        f"p50 {pick(50):6.1f} ms, p95 {pick(95):6.1f} ms, max {data[-1] * 1000:6.1f} ms; "
        f"{within}/{len(data)} answered within 2 s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=50, help="normal submissions per measurement")
    parser.add_argument("--headers", type=int, default=16, help="slow clients still in their headers")
    parser.add_argument("--bodies", type=int, default=16, help="slow clients in their bodies")
    parser.add_argument("--rate", type=float, default=4.0, help="bytes a second each slow client sends")
    parser.add_argument("--threads", type=int, default=8, help="SARHAD_SERVE_THREADS")
    args = parser.parse_args()

    store = new_store("sqlite")
    os.environ["SARHAD_SERVE_CHANNEL_TIMEOUT_SECONDS"] = str(IDLE_TIMEOUT)
    try:
        project_id, token, _, _ = prepare(store)
        server = Serve(store, args.threads)
        try:
            path = f"/v1/key/{token}/projects/{project_id}/submission"
            client = Client(server.port, token, project_id)
            submit_many(client, 10)  # warm-up
            alone = submit_many(client, args.count)
            pause = 1 / args.rate
            trickle = SlowClients(server.port, path, args.headers, args.bodies, step=1, interval=pause)
            with trickle as slow:
                time.sleep(2)
                fresh = Client(server.port, token, project_id)  # a tablet that connects now
                beside = submit_many(fresh, args.count)
                still_open = len(slow.sockets) - slow.closed_by_server
            sock = stall(server.port, path, instance_xml(f"uuid:{uuid.uuid4()}"))
            started = time.perf_counter()
            dropped = closed_by_server(sock, within=IDLE_TIMEOUT * 3 + 5)
            waited = time.perf_counter() - started
            sock.close()
        finally:
            server.stop()
    finally:
        store.drop()
    print(f"sarhad serve (waitress, {args.threads} threads), SQLite; normal submissions (HEAD + POST):")
    print(f"  without slow clients:             {summary(alone)}")
    print(
        f"  beside {args.headers} + {args.bodies} slow clients at {args.rate:g} B/s: {summary(beside)} "
        f"({still_open} slow clients still connected at the end)"
    )
    outcome = f"dropped after {waited:.1f} s" if dropped else "NOT dropped"
    print(f"  a body stalled for good: {outcome} (idle timeout {IDLE_TIMEOUT} s)")


if __name__ == "__main__":
    main()
