"""A sync chunk cut by the link, through gunicorn (what central runs): whether the link closes cleanly,
is reset (RST, what mobile networks and proxies do) or just goes silent, central keeps the bytes that
arrived and the hub continues from there instead of sending the chunk again."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import time
from collections.abc import Callable

import pytest
import requests

from tests.conftest import AppEnv, ServerProcess
from tests.fault_proxy import FaultProxy, Faults
from tests.test_sync_support import Store, form_xml

SIZE = 200_000


@pytest.mark.parametrize("reset", [False, True], ids=["clean-close", "reset"])
def test_a_chunk_cut_by_the_link_keeps_what_arrived(
    make_env: Callable[[], AppEnv], server_process: Callable[..., ServerProcess], reset: bool
) -> None:
    central = Store(make_env())
    project = central.project("Khorog")
    central.publish(project, form_xml())
    headers = {"Authorization": f"Bearer {central.hub_token('Khorog-2', project)}"}
    server = server_process(central.env, workers=1)
    data = os.urandom(SIZE)
    sha = hashlib.sha256(data).hexdigest()
    uploads = f"{server.url}/v1/sync/uploads/{sha}"

    # Every connection through the proxy is cut after 100-130 KB went upstream (headers included).
    faults = Faults(cut_rate=1.0, cut_after=100_000, cut_within=130_000, reset=reset)
    with FaultProxy(server.port, faults, seed=7) as proxy:
        with pytest.raises(requests.ConnectionError):
            requests.put(
                f"{proxy.url}/v1/sync/uploads/{sha}",
                params={"offset": 0, "size": SIZE},
                data=data,
                headers=headers,
                timeout=30,
            )
        assert proxy.counters.cuts == 1

    kept = _kept(uploads, headers)
    assert 50_000 < kept <= 130_000, kept
    _finish(central, uploads, headers, data, kept)


def test_a_chunk_whose_link_goes_silent_keeps_what_arrived(
    make_env: Callable[[], AppEnv],
    server_process: Callable[..., ServerProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A link that dies without a reset sends nothing more: after the idle limit, central ends the chunk
    and keeps what arrived, instead of waiting for ever with a thread held."""
    central = Store(make_env())
    project = central.project("Khorog")
    central.publish(project, form_xml())
    headers = {"Authorization": f"Bearer {central.hub_token('Khorog-2', project)}"}
    monkeypatch.setenv("SARHAD_SYNC_CHUNK_IDLE_SECONDS", "2")
    server = server_process(central.env, workers=1)
    data = os.urandom(SIZE)
    sha = hashlib.sha256(data).hexdigest()
    uploads = f"{server.url}/v1/sync/uploads/{sha}"

    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as link:
        link.sendall(
            f"PUT /v1/sync/uploads/{sha}?offset=0&size={SIZE} HTTP/1.1\r\nHost: central\r\n"
            f"Authorization: {headers['Authorization']}\r\nContent-Length: {SIZE}\r\n\r\n".encode()
            + data[:120_000]
        )
        started = time.monotonic()
        answer = http.client.HTTPResponse(link)  # the link stays open, silent, until central gives up
        answer.begin()
        waited = time.monotonic() - started
        body = answer.read()
    assert answer.status == 400, body
    assert json.loads(body)["details"]["offset"] == 120_000, body
    assert 1.5 < waited < 15, waited
    assert _kept(uploads, headers) == 120_000
    _finish(central, uploads, headers, data, 120_000)


def _kept(uploads: str, headers: dict[str, str]) -> int:
    """The bytes central says it kept of the upload (0 if it has none yet after 5 s)."""
    for _ in range(100):  # the server notices the cut when its read fails or comes back short
        reply = requests.get(uploads, headers=headers, timeout=10)
        if reply.status_code == 200 and (kept := reply.json()["offset"]):
            return int(kept)
        time.sleep(0.05)
    return 0


def _finish(central: Store, uploads: str, headers: dict[str, str], data: bytes, kept: int) -> None:
    rest = requests.put(uploads, params={"offset": kept}, data=data[kept:], headers=headers, timeout=30)
    assert rest.status_code == 200 and rest.json()["complete"] is True, rest.text
    assert central.database.blobs.read_bytes(hashlib.sha256(data).hexdigest()) == data
