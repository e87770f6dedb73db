"""Broken submissions over raw sockets: whatever arrives, never a 500 and never a half-stored submission.

A seeded generator takes well-formed Collect submissions (XML and a photo) and breaks them the ways bad
links, buggy clients and hostile senders do: flipped bytes, inserted markup, entities and boundaries, cut
connections, wrong or missing Content-Type and Content-Length, truncated or foreign XML. Afterwards the
store holds exactly the submissions that were acknowledged with 201, every file it holds is whole (the
intact ones with the very photo sent), and no staging folder is left behind.
"""

from __future__ import annotations

import hashlib
import random
import re
import socket
from collections import Counter
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from server.models import Blob, SubmissionAttachment, SubmissionVersion
from tests.collect_emulator import multipart_body
from tests.conftest import LiveServer
from tests.openrosa_setup import (
    assert_no_staging_left,
    make_device,
    make_project,
    new_uuid,
    publish_xform,
    small_instance,
    small_xform,
)

MUTATIONS = ("intact", "flip", "insert", "cut", "content_type", "xml", "length")
HOSTILE_XML = (
    b"<?xml version='1.0'?><!DOCTYPE d [<!ENTITY e SYSTEM 'file:///etc/passwd'>]>"
    b"<data id='small' version='1'>&e;</data>",
    b"<!DOCTYPE d [<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;&a;&a;&a;&a;&a;'>]><data>&b;</data>",
    b"<a>" * 5000,
    b"",
)


@dataclass
class Request:
    mutation: str
    content_type: str
    body: bytes
    declared_length: int
    cut_at: int | None  # the sender hangs up after this many body bytes
    photo_sha256: str


def _broken(rng: random.Random) -> Request:
    """One Collect submission, broken in one way chosen at random (or left intact)."""
    instance_id = new_uuid()
    xml = small_instance(instance_id)
    photo = b"\xff\xd8" + rng.randbytes(rng.randint(0, 4000))
    body, content_type = multipart_body(xml, [("photo.jpg", photo)])
    boundary = content_type.split("boundary=", 1)[1].encode()
    mutation = rng.choice(MUTATIONS)
    length: int | None = None
    cut_at: int | None = None
    if mutation == "flip":
        flipped = bytearray(body)
        for _ in range(rng.randint(1, 8)):
            flipped[rng.randrange(len(flipped))] = rng.randrange(256)
        body = bytes(flipped)
    elif mutation == "insert":
        at = rng.randrange(len(body))
        piece = rng.choice([b"<", b"&", b"\x00", "ё".encode(), b"\r\n--" + boundary, b"<!ENTITY x 'y'>"])
        body = body[:at] + piece + body[at:]
    elif mutation == "cut":
        cut_at = rng.randrange(len(body))
    elif mutation == "content_type":
        content_type = rng.choice(
            [
                "multipart/form-data",
                "multipart/form-data; boundary=",
                f'multipart/form-data; boundary="{boundary.decode()}"',
                f"multipart/mixed; boundary={boundary.decode()}",
                "text/xml",
                "",
            ]
        )
    elif mutation == "xml":
        replacement = rng.choice(
            [
                xml[: rng.randrange(len(xml))],
                xml.replace(b'version="1"', b'version="9"'),
                xml.replace(b'id="small"', b'id="nowhere"'),
                *HOSTILE_XML,
            ]
        )
        body = body.replace(xml, replacement)
    elif mutation == "length":
        length = rng.choice([0, len(body) - 1, len(body) + 10, 10**12])
        if length > len(body):
            cut_at = len(body)  # promises more than it sends, then hangs up
    declared = len(body) if length is None else length
    return Request(mutation, content_type, body, declared, cut_at, hashlib.sha256(photo).hexdigest())


def _exchange(live: LiveServer, path: str, sent: Request) -> int | None:
    host, port = live.url.removeprefix("http://").split(":")
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nX-OpenRosa-Version: 1.0\r\n"
        f"Content-Type: {sent.content_type}\r\nContent-Length: {sent.declared_length}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    body = sent.body if sent.cut_at is None else sent.body[: sent.cut_at]
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head + body)
        if sent.cut_at is not None:
            sock.shutdown(socket.SHUT_WR)  # the link drops mid-upload
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", answer)
    return int(match.group(1)) if match else None


def _instance_id(body: bytes) -> str | None:
    """The instanceID the sent XML carries, read as an XML parser reads it (line ends become LF, the
    ends trimmed), when it still carries one."""
    found = re.search(rb"<instanceID>([^<]*)</instanceID>", body)
    if found is None or b"\x00" in found.group(1):  # no XML may hold a NUL: refused as a whole
        return None
    return found.group(1).decode(errors="replace").replace("\r\n", "\n").replace("\r", "\n").strip()


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_broken_submissions_never_500_and_never_half_stored(live_server: LiveServer, seed: int) -> None:
    project_id = make_project(live_server.database)
    publish_xform(live_server.app, project_id, small_xform())
    _, token = make_device(live_server.app, project_id)
    path = f"/v1/key/{token}/projects/{project_id}/submission?deviceID=collect:fuzzfuzzfuzzfuzz"
    rng = random.Random(seed)
    sent: list[tuple[Request, int | None, str | None]] = []  # request, status (None: no answer), instanceID
    for _ in range(150):
        request = _broken(rng)
        status = _exchange(live_server, path, request)
        sent.append((request, status, _instance_id(request.body)))

    statuses = Counter((request.mutation, status) for request, status, _ in sent)
    assert not [key for key in statuses if key[1] is not None and key[1] >= 500], statuses
    assert ("intact", 201) in statuses, statuses
    assert {status for (mutation, status) in statuses if mutation == "cut"} <= {400, None}, statuses

    acknowledged = {instance_id: request for request, status, instance_id in sent if status == 201}
    assert None not in acknowledged
    with live_server.database.read() as session:
        versions = session.execute(
            select(SubmissionVersion.instance_id, SubmissionVersion.id).where(
                SubmissionVersion.instance_id.in_([i for _, _, i in sent if i])
            )
        ).all()
        stored = {instance_id for instance_id, _ in versions}
        files = session.execute(
            select(SubmissionVersion.instance_id, SubmissionAttachment.name, SubmissionAttachment.blob_sha256)
            .join(SubmissionAttachment, SubmissionAttachment.version_id == SubmissionVersion.id)
            .where(SubmissionVersion.id.in_([pk for _, pk in versions]))
        ).all()
        shas = [sha256 for _, _, sha256 in files]
        blobs = set(session.scalars(select(Blob.sha256).where(Blob.sha256.in_(shas))))
    assert stored == set(acknowledged), "stored and acknowledged differ"
    # Every file that arrived is whole: its row, its blob row and its bytes (a flipped byte may have
    # landed in a photo or its name: what is kept is what arrived).
    for instance_id, name, sha256 in files:
        if sha256 is not None:
            assert sha256 in blobs and live_server.database.blobs.exists(sha256), (instance_id, name)
    intact = {i: r.photo_sha256 for i, r in acknowledged.items() if r.mutation == "intact"}
    assert intact and all((i, "photo.jpg", sha) in files for i, sha in intact.items())
    assert_no_staging_left(live_server.database)
