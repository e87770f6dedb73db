"""Collect against the production stack: gunicorn (2 workers x 4 threads) in a child process.

Concurrent devices, identical resends racing each other across workers, and a 100 MB photo whose upload
must not cost the worker 100 MB of memory. SQLite by default, PostgreSQL with SARHAD_TEST_DATABASE_URL.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import random
import tempfile
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import requests
from sqlalchemy import func, select

from server.models import Submission, SubmissionAttachment, SubmissionVersion
from tests.collect_emulator import USER_AGENT, CollectEmulator, Instance, fill, read_form
from tests.conftest import ROOT, ServerProcess
from tests.openrosa_setup import (
    attachments_of,
    form_pk,
    key_url,
    make_device,
    make_project,
    publish_xform,
    publish_xlsform,
    small_instance,
    small_xform,
)

FORMS_DIR = ROOT / "forms"


def _setup(server: ServerProcess, mission_form: bool = False) -> tuple[int, str]:
    app = server.env.app()
    project_id = make_project(app.extensions["sarhad.db"])
    publish_xform(app, project_id, small_xform())
    if mission_form:  # converting an XLSForm takes seconds (pyxform, ODK Validate): only where it is used
        publish_xlsform(app, project_id, FORMS_DIR / "safety_concerns.xlsx")
    _, token = make_device(app, project_id)
    return project_id, token


def _run_threads(n: int, target: Callable[[int], None]) -> None:
    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)


def test_eight_devices_at_once(server_process: Callable[..., ServerProcess]) -> None:
    server = server_process()
    project_id, token = _setup(server, mission_form=True)
    url = key_url(server.url, token, project_id)
    blank = CollectEmulator(url).download_forms()
    models = {fid: read_form(f.xml, f.media) for fid, f in blank.items()}
    sent: list[list[Instance]] = [[] for _ in range(8)]
    failures: list[str] = []

    def device(i: int) -> None:
        collect = CollectEmulator(url)
        rng = random.Random(i)
        for n in range(6):
            model = models["safety_concerns" if n % 2 else "small"]
            instance = fill(model, rng=rng)
            answer = collect.submit(instance)
            if not answer.sent:
                failures.append(f"device {i}: {answer}")
            sent[i].append(instance)

    _run_threads(8, device)
    assert not failures, failures
    database = server.env.app().extensions["sarhad.db"]
    for instances in sent:
        for instance in instances:
            pk = form_pk(database, project_id, instance.form_id)
            with database.read() as session:
                version = session.scalar(
                    select(SubmissionVersion).where(SubmissionVersion.instance_id == instance.instance_id)
                )
                assert version is not None and version.sha256 == instance.sha256
                assert version.user_agent == USER_AGENT
            expected = {n: hashlib.sha256(d).hexdigest() for n, d in instance.files.items()}
            assert attachments_of(database, pk, instance.instance_id) == expected
            for sha in expected.values():
                assert database.blobs.exists(sha)


def test_replies_carry_one_date_header(server_process: Callable[..., ServerProcess]) -> None:
    """OpenRosa asks for a Date on every reply; gunicorn adds it, and a second one would be malformed."""
    server = server_process()
    project_id, token = _setup(server)
    path = urlsplit(key_url(server.url, token, project_id)).path
    conn = http.client.HTTPConnection(urlsplit(server.url).netloc, timeout=30)
    try:
        for method, what in (("HEAD", "/submission"), ("GET", "/formList")):
            conn.request(method, path + what, headers={"X-OpenRosa-Version": "1.0"})
            reply = conn.getresponse()
            reply.read()
            assert reply.status in (200, 204)
            dates = [value for name, value in reply.getheaders() if name.lower() == "date"]
            assert len(dates) == 1 and dates[0].endswith(" GMT"), (method, what, dates)
    finally:
        conn.close()


def test_identical_resends_racing_across_workers(server_process: Callable[..., ServerProcess]) -> None:
    server = server_process()
    project_id, token = _setup(server)
    url = key_url(server.url, token, project_id)
    iid = f"uuid:{uuid.uuid4()}"
    instance = Instance(
        "small",
        iid,
        small_instance(iid, notes=("n1.jpg",)),
        {"photo.jpg": b"p" * 5000, "n1.jpg": b"n" * 3000},
    )
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def resend(_i: int) -> None:
        collect = CollectEmulator(url)
        barrier.wait()
        statuses.append(collect.post_batches(instance, 10_000_000).status)

    _run_threads(8, resend)
    assert statuses == [201] * 8
    database = server.env.app().extensions["sarhad.db"]
    with database.read() as session:
        assert (
            session.scalar(select(func.count()).select_from(Submission).where(Submission.instance_id == iid))
            == 1
        )
        assert (
            session.scalar(
                select(func.count())
                .select_from(SubmissionVersion)
                .where(SubmissionVersion.instance_id == iid)
            )
            == 1
        )
    pk = form_pk(database, project_id, "small")
    assert attachments_of(database, pk, iid) == {
        "photo.jpg": hashlib.sha256(b"p" * 5000).hexdigest(),
        "n1.jpg": hashlib.sha256(b"n" * 3000).hexdigest(),
    }


def _worker_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children]


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def test_a_100_mb_photo_streams_through_without_100_mb_of_memory(
    server_process: Callable[..., ServerProcess],
) -> None:
    server = server_process()
    project_id, token = _setup(server)
    url = key_url(server.url, token, project_id)
    assert server.proc is not None
    workers = _worker_pids(server.proc.pid)
    assert workers
    # Warm both workers up so that imports and first requests are not counted.
    collect = CollectEmulator(url)
    for _ in range(4):
        collect.form_list()
    before = {pid: _status_kb(pid, "VmHWM") for pid in workers}

    iid = f"uuid:{uuid.uuid4()}"
    xml = small_instance(iid)
    boundary = uuid.uuid4().hex
    size = 100 * 1024 * 1024
    digest = hashlib.sha256()
    with tempfile.NamedTemporaryFile(dir=server.env.data_dir, suffix=".body") as body:
        disposition = "Content-Disposition: form-data; name="
        body.write(
            f'--{boundary}\r\n{disposition}"xml_submission_file"; filename="s.xml"\r\n'
            f"Content-Type: text/xml\r\n\r\n".encode()
            + xml
            + f'\r\n--{boundary}\r\n{disposition}"photo.jpg"; filename="photo.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n".encode()
        )
        chunk = os.urandom(1024 * 1024)
        for i in range(size // len(chunk)):
            piece = bytes([i % 256]) + chunk[1:]
            digest.update(piece)
            body.write(piece)
        body.write(f"\r\n--{boundary}--\r\n".encode())
        body.flush()
        body.seek(0)
        response = requests.post(
            collect.url(f"{url}/submission"),
            data=body,
            headers={**collect.headers(), "Content-Type": f"multipart/form-data; boundary={boundary}"},
            timeout=300,
        )
    assert response.status_code == 201, response.text
    after = {pid: _status_kb(pid, "VmHWM") for pid in workers}
    growth_mb = max(after[p] - before[p] for p in workers) / 1024
    print(f"\npeak RSS growth of the worker for a 100 MB upload: {growth_mb:.1f} MB")
    assert growth_mb < 25, f"a 100 MB upload raised a worker's peak memory by {growth_mb:.0f} MB"
    database = server.env.app().extensions["sarhad.db"]
    pk = form_pk(database, project_id, "small")
    assert attachments_of(database, pk, iid) == {"photo.jpg": digest.hexdigest()}
    with database.read() as session:
        blob = session.scalar(
            select(SubmissionAttachment.blob_sha256).where(SubmissionAttachment.name == "photo.jpg")
        )
    assert database.blobs.verify(blob or "")
