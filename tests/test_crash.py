"""A power cut in the middle of uploads: SIGKILL gunicorn (master and workers) while devices send.

Every submission the server acknowledged (201) must be there after a restart on the same store, byte for
byte with all its files; one that was not acknowledged is either whole or absent, never half-written; and
``sarhad doctor`` finds rows and files in agreement (it first finishes or undoes the transactions the
kill interrupted).
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import requests
from sqlalchemy import select

from server.models import SubmissionVersion
from tests.collect_emulator import CollectEmulator, Instance
from tests.conftest import RunCli, ServerProcess
from tests.openrosa_setup import (
    attachments_of,
    form_pk,
    key_url,
    make_device,
    make_project,
    publish_xform,
    small_instance,
    small_xform,
)

DEVICES = 6
MIN_ACKNOWLEDGED = 20


@dataclass
class Attempt:
    instance: Instance
    acknowledged: bool = False


def _instance(rng: random.Random) -> Instance:
    iid = f"uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}"
    files = {
        "photo.jpg": os.urandom(rng.randint(20_000, 300_000)),
        "n1.jpg": os.urandom(rng.randint(1_000, 60_000)),
    }
    return Instance("small", iid, small_instance(iid, notes=("n1.jpg",)), files)


def test_sigkill_during_uploads_loses_nothing_acknowledged(
    server_process: Callable[..., ServerProcess], run_cli: RunCli
) -> None:
    server = server_process()
    app = server.env.app()
    project_id = make_project(app.extensions["sarhad.db"])
    publish_xform(app, project_id, small_xform())
    _, token = make_device(app, project_id)
    url = key_url(server.url, token, project_id)

    attempts: list[Attempt] = []
    lock = threading.Lock()
    stop = threading.Event()

    def device(i: int) -> None:
        collect = CollectEmulator(url, timeout=(5, 30))
        rng = random.Random(i)
        while not stop.is_set():
            attempt = Attempt(_instance(rng))
            with lock:
                attempts.append(attempt)
            try:
                attempt.acknowledged = collect.post_batches(attempt.instance, 10_000_000).status == 201
            except requests.RequestException:
                return  # the server is gone

    threads = [threading.Thread(target=device, args=(i,)) for i in range(DEVICES)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with lock:
            if sum(a.acknowledged for a in attempts) >= MIN_ACKNOWLEDGED:
                break
        time.sleep(0.05)
    server.kill()  # mid-upload: several requests are in flight at this moment
    stop.set()
    for t in threads:
        t.join(timeout=60)

    acknowledged = [a.instance for a in attempts if a.acknowledged]
    unacknowledged = [a.instance for a in attempts if not a.acknowledged]
    assert len(acknowledged) >= MIN_ACKNOWLEDGED
    assert unacknowledged, "the kill should have caught uploads in flight"

    restarted = server_process(env=server.env)
    database = restarted.env.app().extensions["sarhad.db"]
    pk = form_pk(database, project_id, "small")

    def stored_whole(instance: Instance) -> bool | None:
        """True when stored with every file intact, None when absent, False when half-written."""
        with database.read() as session:
            version = session.scalar(
                select(SubmissionVersion).where(SubmissionVersion.instance_id == instance.instance_id)
            )
            xml = None if version is None else version.xml.encode()
        if xml is None:
            return None
        files = attachments_of(database, pk, instance.instance_id)
        expected = {n: hashlib.sha256(d).hexdigest() for n, d in instance.files.items()}
        if xml != instance.xml or files != expected:
            return False
        return all(database.blobs.exists(sha) and database.blobs.verify(sha) for sha in expected.values())

    # Acknowledged: there, whole, before any repair.
    for instance in acknowledged:
        assert stored_whole(instance) is True, instance.instance_id
    # The doctor finishes the interrupted transactions and finds rows and files in agreement.
    doctor = run_cli(restarted.env, "doctor", "--verify")
    assert "ok: rows and files agree" in doctor.stdout, doctor.stdout
    assert "orphan" not in doctor.stdout and "missing" not in doctor.stdout
    for instance in unacknowledged:
        assert stored_whole(instance) in (True, None), instance.instance_id
    # The devices resend what they were not told was received: every one lands once, whole.
    collect = CollectEmulator(key_url(restarted.url, token, project_id))
    for instance in unacknowledged:
        assert collect.submit(instance).status == 201
        assert stored_whole(instance) is True
    assert not any(database.blobs.incoming.iterdir()), "staging folders left behind"
