"""Central's /v1/sync endpoints over real HTTP: hub tokens and rights, resumable uploads, inventory,
bad bodies, and the signed statement. (End-to-end pushes are in test_sync_push.py.)"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest
import requests
from sqlalchemy import select

from server.config import settings
from server.models import AuditEvent, Blob, Hub, SyncUpload
from server.projects import create_project
from server.sync import keys, wire
from server.sync.hubs import create_hub
from tests.conftest import AppEnv, LiveServer, RunCli

GZ = {"Content-Type": wire.JSON_LINES_GZIP, "Content-Encoding": "gzip"}


@pytest.fixture
def hub(live_server: LiveServer) -> tuple[dict[str, str], int, int]:
    """A fresh project and a hub allowed to push to it: (auth headers, project id, other project id)."""
    name = f"p-{uuid.uuid4().hex[:8]}"
    with live_server.database.write() as w:
        project = create_project(w.session, name)
        other = create_project(w.session, name + "-other")
        _hub, token = create_hub(w.session, f"hub-{name}", [project])
    return {"Authorization": f"Bearer {token}"}, project.id, other.id


def test_hub_cli_create_list_revoke(make_env: Callable[[], AppEnv], run_cli: RunCli) -> None:
    env = make_env()
    run_cli(env, "project", "create", "Khorog")
    created = run_cli(env, "hub", "create", "Khorog-2", "--project", "Khorog").stdout
    token = next(line.split(": ", 1)[1] for line in created.splitlines() if line.startswith("token: "))
    assert token.startswith("hub_") and len(token) > 40
    with env.app().extensions["sarhad.db"].read() as session:
        stored = session.scalar(select(Hub).where(Hub.name == "Khorog-2"))
        assert stored is not None and stored.token_sha256 == hashlib.sha256(token.encode()).hexdigest()
        assert [p.name for p in stored.projects] == ["Khorog"]
    again = run_cli(env, "hub", "create", "Khorog-2", "--project", "Khorog", check=False)
    assert again.returncode == 1 and "already exists" in again.stderr
    nowhere = run_cli(env, "hub", "create", "X", "--project", "Nowhere", check=False)
    assert nowhere.returncode == 1 and "no project" in nowhere.stderr
    assert "Khorog-2\tactive\tKhorog\t0 confirmed\tnever" in run_cli(env, "hub", "list").stdout
    assert "revoked hub Khorog-2" in run_cli(env, "hub", "revoke", "Khorog-2").stdout
    assert "already revoked" in run_cli(env, "hub", "revoke", "Khorog-2").stdout
    assert "\trevoked\t" in run_cli(env, "hub", "list").stdout
    with env.app().extensions["sarhad.db"].read() as session:
        actions = list(session.scalars(select(AuditEvent.action).where(AuditEvent.action.like("hub.%"))))
    assert actions == ["hub.create", "hub.revoke"]


def test_hub_token_rights(live_server: LiveServer, hub: tuple[dict[str, str], int, int]) -> None:
    headers, project_id, other_id = hub
    url = live_server.url + "/v1/sync"
    assert requests.get(url + "/hub", timeout=10).status_code == 401
    bad = requests.get(url + "/hub", headers={"Authorization": "Bearer nope"}, timeout=10)
    assert bad.status_code == 401 and bad.json()["code"] == "401.2"
    info = requests.get(url + "/hub", headers=headers, timeout=10).json()
    assert [p["id"] for p in info["projects"]] == [project_id]
    empty = wire.encode_lines([])
    assert (
        requests.post(
            f"{url}/projects/{other_id}/inventory", data=empty, headers={**headers, **GZ}, timeout=10
        ).status_code
        == 403
    )
    # A hub token is no web session: it opens nothing outside /v1/sync.
    assert requests.get(live_server.url + "/v1/projects", headers=headers, timeout=10).status_code == 401
    with live_server.database.write() as w:
        found = w.session.scalar(
            select(Hub).where(Hub.id == Hub.id, Hub.name.like("hub-%")).order_by(Hub.id.desc())
        )
        assert found is not None
        found.revoked_at = found.created_at
    revoked = requests.get(url + "/hub", headers=headers, timeout=10)
    assert revoked.status_code == 401 and "revoked" in revoked.json()["message"]


def test_chunked_upload_resumes_and_verifies(
    live_server: LiveServer, hub: tuple[dict[str, str], int, int]
) -> None:
    headers, _, _ = hub
    url = live_server.url + "/v1/sync/uploads"
    data = os.urandom(300_000)
    sha = hashlib.sha256(data).hexdigest()
    start = requests.post(url, json={"sha256": sha, "size": len(data)}, headers=headers, timeout=10).json()
    assert start == {"sha256": sha, "size": len(data), "offset": 0, "complete": False}
    first = requests.put(
        f"{url}/{sha}", params={"offset": 0}, data=data[:100_000], headers=headers, timeout=10
    )
    assert first.json()["offset"] == 100_000
    # The same chunk again (its answer was lost): refused with the offset to go on from.
    again = requests.put(
        f"{url}/{sha}", params={"offset": 0}, data=data[:100_000], headers=headers, timeout=10
    )
    assert again.status_code == 409 and again.json()["details"]["offset"] == 100_000
    # Starting again reports where it stands; nothing is lost.
    assert (
        requests.post(url, json={"sha256": sha, "size": len(data)}, headers=headers, timeout=10).json()[
            "offset"
        ]
        == 100_000
    )
    assert requests.get(f"{url}/{sha}", headers=headers, timeout=10).json()["offset"] == 100_000
    too_far = requests.put(
        f"{url}/{sha}", params={"offset": 100_000}, data=data[100_000:] + b"x", headers=headers, timeout=10
    )
    assert too_far.status_code == 400
    done = requests.put(
        f"{url}/{sha}", params={"offset": 100_000}, data=data[100_000:], headers=headers, timeout=10
    )
    assert done.json() == {"sha256": sha, "size": len(data), "offset": len(data), "complete": True}
    assert live_server.database.blobs.read_bytes(sha) == data
    with live_server.database.read() as session:
        assert session.get(Blob, sha) is not None
        assert session.scalars(select(SyncUpload).where(SyncUpload.sha256 == sha)).first() is None
    # Central never takes a blob it has: a new upload of it is complete at once.
    assert requests.post(url, json={"sha256": sha, "size": len(data)}, headers=headers, timeout=10).json()[
        "complete"
    ]

    # A small file opens and completes its upload in one request.
    small = os.urandom(1000)
    small_sha = hashlib.sha256(small).hexdigest()
    one = requests.put(
        f"{url}/{small_sha}", params={"offset": 0, "size": 1000}, data=small, headers=headers, timeout=10
    )
    assert one.json() == {"sha256": small_sha, "size": 1000, "offset": 1000, "complete": True}
    assert live_server.database.blobs.read_bytes(small_sha) == small
    bad_size = requests.put(
        f"{url}/{small_sha}", params={"offset": 0, "size": "x"}, data=b"", headers=headers, timeout=10
    )
    assert bad_size.status_code == 400

    # Bytes that do not match their name are discarded with a clear error.
    liar = hashlib.sha256(b"something else").hexdigest()
    requests.post(url, json={"sha256": liar, "size": 5}, headers=headers, timeout=10)
    wrong = requests.put(f"{url}/{liar}", params={"offset": 0}, data=b"hello", headers=headers, timeout=10)
    assert wrong.status_code == 422 and "do not match" in wrong.json()["message"]
    assert requests.get(f"{url}/{liar}", headers=headers, timeout=10).status_code == 404
    assert not list((settings(live_server.app).data_dir / "sync-uploads").glob(f"*{liar}*"))


def test_a_cut_chunk_keeps_what_arrived(
    live_server: LiveServer, hub: tuple[dict[str, str], int, int]
) -> None:
    """A link that drops in the middle of a chunk: central keeps the bytes that came, the next attempt
    goes on from there, and the finished blob is the right one."""
    headers, _, _ = hub
    url = live_server.url + "/v1/sync/uploads"
    data = os.urandom(200_000)
    sha = hashlib.sha256(data).hexdigest()
    host, port = urlsplit(live_server.url).hostname, urlsplit(live_server.url).port
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(
            f"PUT /v1/sync/uploads/{sha}?offset=0&size={len(data)} HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: {headers['Authorization']}\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {len(data)}\r\n\r\n".encode()
            + data[:70_000]
        )
    kept = 0
    for _ in range(100):  # the server notices the cut when its read comes back short
        reply = requests.get(f"{url}/{sha}", headers=headers, timeout=10)
        if reply.status_code == 200 and (kept := reply.json()["offset"]):
            break
        time.sleep(0.05)
    assert kept == 70_000
    # The hub's retry of the whole chunk is refused with the offset; it sends the rest from there.
    again = requests.put(f"{url}/{sha}", params={"offset": 0, "size": len(data)}, data=data, headers=headers,
                         timeout=10)  # fmt: skip
    assert again.status_code == 409 and again.json()["details"]["offset"] == 70_000
    rest = requests.put(f"{url}/{sha}", params={"offset": 70_000}, data=data[70_000:], headers=headers,
                        timeout=10)  # fmt: skip
    assert rest.json()["complete"] is True
    assert live_server.database.blobs.read_bytes(sha) == data


def test_bad_bodies_are_clear_400s(live_server: LiveServer, hub: tuple[dict[str, str], int, int]) -> None:
    headers, project_id, _ = hub
    base = f"{live_server.url}/v1/sync/projects/{project_id}"
    for body in (
        b"not gzip",
        gzip.compress(b"[1,2]\n"),
        gzip.compress(b'{"formId": 3}\n'),
        gzip.compress(b"{nope\n"),
    ):
        for path in ("/inventory", "/submissions"):
            answer = requests.post(base + path, data=body, headers={**headers, **GZ}, timeout=10)
            assert answer.status_code == 400, (path, body, answer.text)
    uploads = f"{live_server.url}/v1/sync/uploads"
    assert (
        requests.post(uploads, json={"sha256": "x", "size": 1}, headers=headers, timeout=10).status_code
        == 400
    )
    for size in (-1, 10**20):  # below zero, beyond what the database's byte counts hold
        started = requests.post(uploads, json={"sha256": "a" * 64, "size": size}, headers=headers, timeout=10)
        assert started.status_code == 400, started.text
        params = {"offset": 0, "size": size}
        chunk = requests.put(f"{uploads}/{'a' * 64}", params=params, data=b"1", headers=headers, timeout=10)
        assert chunk.status_code == 400, chunk.text
    assert (
        requests.put(
            f"{uploads}/{'a' * 64}", params={"offset": "x"}, data=b"1", headers=headers, timeout=10
        ).status_code
        == 400
    )
    assert (
        requests.put(
            f"{uploads}/{'b' * 64}", params={"offset": 0}, data=b"1", headers=headers, timeout=10
        ).status_code
        == 404
    )
    assert requests.get(f"{uploads}/../../etc", headers=headers, timeout=10).status_code in (400, 404)


def test_large_json_answers_are_gzipped_for_clients_that_accept_it(
    live_server: LiveServer, hub: tuple[dict[str, str], int, int]
) -> None:
    headers, project_id, _ = hub
    lines = [{"formId": "f", "instanceId": f"uuid:{i}", "sha256": f"{i:064x}"} for i in range(3000)]
    url = f"{live_server.url}/v1/sync/projects/{project_id}/inventory"
    answers = {}
    for accept in ("gzip, deflate", "identity"):
        reply = requests.post(
            url,
            data=wire.encode_lines(lines),
            headers={**headers, **GZ, "Accept-Encoding": accept},
            timeout=10,
            stream=True,
        )
        raw = reply.raw.read(decode_content=False)
        answers[accept] = (reply.headers.get("Content-Encoding"), raw)
    encoding, packed = answers["gzip, deflate"]
    plain_encoding, plain = answers["identity"]
    assert encoding == "gzip" and plain_encoding is None
    assert gzip.decompress(packed) == plain and len(packed) < 0.6 * len(plain)
    assert json.loads(plain)["missing"] == list(range(3000))
    small = requests.get(live_server.url + "/v1/sync/hub", headers=headers, timeout=10)
    assert small.status_code == 200 and "Content-Encoding" not in small.headers  # not worth it


def test_inventory_and_signed_statement(
    live_server: LiveServer, hub: tuple[dict[str, str], int, int]
) -> None:
    headers, project_id, _ = hub
    photo = hashlib.sha256(b"photo").hexdigest()
    lines = [
        {
            "formId": "f",
            "instanceId": "uuid:1",
            "sha256": "1" * 64,
            "attachments": [{"name": "a.jpg", "sha256": photo}],
        },
        {"formId": "f", "instanceId": "uuid:2", "sha256": "2" * 64},
    ]
    answer = requests.post(
        f"{live_server.url}/v1/sync/projects/{project_id}/inventory",
        data=wire.encode_lines(lines),
        headers={**headers, **GZ},
        timeout=10,
    ).json()
    assert answer == {"held": 0, "missing": [0, 1], "conflicts": [], "missingBlobs": [photo]}
    signed = requests.get(live_server.url + "/v1/sync/statement", headers=headers, timeout=10).json()
    body = signed["statement"]
    assert body["total"] == 0 and body["digest"] == wire.holdings_digest([])
    public = requests.get(live_server.url + "/v1/sync/public-key", timeout=10).json()["signing"]["publicKey"]
    assert public == signed["publicKey"]
    assert keys.verify_signature(public, signed["signature"], wire.canonical_json(body))
    forged = {**body, "total": 1}
    assert not keys.verify_signature(public, signed["signature"], wire.canonical_json(forged))
