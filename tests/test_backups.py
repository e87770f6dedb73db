"""Backups that restore: ``sarhad backup create`` while devices keep submitting, ``sarhad backup restore``
into an empty store elsewhere, and every export byte-identical there; refusals of a non-empty target,
a wrong passphrase, and a changed, cut, extended or foreign file (each with its documented exit code)."""

from __future__ import annotations

import threading
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from server.backup import schedule
from server.backup.sealed import CHUNK
from server.config import settings
from server.models import AuditEvent, Submission
from server.sync.hubs import create_hub
from tests.conftest import AppEnv, RunCli, serve_in_thread
from tests.datasets_fixtures import web_user
from tests.openrosa_setup import (
    key_url,
    make_device,
    make_project,
    new_uuid,
    publish_xform,
    small_instance,
    small_xform,
)

PASSPHRASE = "river stone under the bridge"


def _post(url: str, xml: bytes, files: dict[str, bytes]) -> requests.Response:
    parts = {"xml_submission_file": ("submission.xml", xml, "text/xml")}
    parts.update({name: (name, data, "image/jpeg") for name, data in files.items()})
    return requests.post(f"{url}/submission", files=parts, timeout=60)


def _populate(env: AppEnv, url: str, app) -> tuple[str, int]:  # type: ignore[no-untyped-def]
    """Submissions with files, an edit, a conflict, web users, a hub (and so central's keys)."""
    database = app.extensions["sarhad.db"]
    project = make_project(database, "Backup trial")
    publish_xform(app, project, small_xform(), {})
    _, token = make_device(app, project, "Tablet 1")
    device = key_url(url, token, project)
    first = new_uuid()
    for i, iid in enumerate([first, *(new_uuid() for _ in range(5))]):
        xml = small_instance(iid, village=f"Village {i}", notes=("n.jpg",))
        assert _post(device, xml, {"photo.jpg": b"photo %d" % i, "n.jpg": b"note %d" % i}).status_code == 201
    edit = small_instance(new_uuid(), village="Edited", deprecated_id=first, photo=None)
    assert _post(device, edit, {}).status_code == 201
    conflicting = small_instance(first, village="Someone else")
    assert _post(device, conflicting, {"photo.jpg": b"other photo"}).status_code == 409
    web_user(type("Live", (), {"url": url, "database": database})(), "analyst@example.tj", "analyst", project)
    with app.app_context(), database.write() as w:
        from server.models import Project

        create_hub(w.session, "Khorog hub", [w.session.get(Project, project)])
    assert requests.get(f"{url}/v1/sync/public-key", timeout=30).status_code == 200  # makes central's keys
    return device, project


def _exports(env: AppEnv, run_cli: RunCli, out: Path) -> dict[str, bytes]:
    """Every export format of the form; the zips (CSV zip, XLSX) by their members' bytes, not the
    archive's own dates, and XLSX without docProps/core.xml (the time the workbook was written)."""
    out.mkdir()
    found: dict[str, bytes] = {}
    for fmt in ("csv.zip", "jsonl", "xlsx"):
        target = out / f"small.{fmt}"
        run_cli(env, "export", "small", "--project", "Backup trial", "-o", str(target))
        if fmt == "jsonl":
            found[fmt] = target.read_bytes()
            continue
        with zipfile.ZipFile(target) as archive:
            names = [n for n in archive.namelist() if n != "docProps/core.xml"]
            found.update({f"{fmt}:{n}": archive.read(n) for n in names})
    return found


def _count(env: AppEnv, model: type) -> int:
    app = env.app()
    with app.extensions["sarhad.db"].read() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_backup_taken_under_load_restores_elsewhere_identically(
    make_env: Callable[[], AppEnv], run_cli: RunCli, tmp_path: Path
) -> None:
    source = make_env()
    app = source.app()
    live, stop = serve_in_thread(app)
    try:
        device, _project = _populate(source, live.url, app)

        # A backup while a device keeps submitting: it holds a consistent store of one instant.
        stop_load = threading.Event()
        sent: list[int] = []

        def keep_submitting() -> None:
            while not stop_load.is_set():
                reply = _post(device, small_instance(new_uuid(), village="During"), {"photo.jpg": b"x" * 300})
                sent.append(reply.status_code)

        loader = threading.Thread(target=keep_submitting)
        loader.start()
        during = tmp_path / "during.sarhad-backup"
        try:
            run_cli(source, "backup", "create", str(during), input=PASSPHRASE + "\n")
        finally:
            stop_load.set()
            loader.join(timeout=60)
        assert sent and set(sent) == {201}, sent
        under_load = make_env()
        run_cli(under_load, "backup", "restore", str(during), input=PASSPHRASE + "\n")
        doctor = run_cli(under_load, "doctor", "--verify")
        assert "ok: rows and files agree" in doctor.stdout
        assert 7 <= _count(under_load, Submission) <= 7 + len(sent)

        # With the devices quiet, a second backup restored elsewhere gives the very same exports.
        passphrase_file = tmp_path / "passphrase"
        passphrase_file.write_text(PASSPHRASE + "\n")
        quiet = tmp_path / "quiet.sarhad-backup"
        run_cli(source, "backup", "create", str(quiet), "--passphrase-file", str(passphrase_file))
        target = make_env()
        restored = run_cli(target, "backup", "restore", str(quiet), "--passphrase-file", str(passphrase_file))
        assert "restored" in restored.stdout
        assert "ok: rows and files agree" in run_cli(target, "doctor", "--verify").stdout
        assert _exports(source, run_cli, tmp_path / "a") == _exports(target, run_cli, tmp_path / "b")

        # The restored server serves: the same web user signs in, the same device key submits, the keys
        # hubs pinned are the same.
        restored_app = target.app()
        again, stop_again = serve_in_thread(restored_app)
        try:
            signin = {"email": "analyst@example.tj", "password": "correct horse battery"}
            assert requests.post(f"{again.url}/v1/sessions", json=signin, timeout=30).status_code == 200
            new_device = device.replace(live.url, again.url)
            assert _post(new_device, small_instance(new_uuid(), village="After"), {}).status_code == 201
            keys = [requests.get(f"{u}/v1/sync/public-key", timeout=30).json() for u in (live.url, again.url)]
            assert keys[0] == keys[1]
        finally:
            stop_again()
        with restored_app.extensions["sarhad.db"].read() as session:
            actions = list(
                session.scalars(select(AuditEvent.action).where(AuditEvent.action.like("backup.%")))
            )
        assert "backup.restore" in actions and "backup.create" in actions  # the second create is not inside

        # Refusals, each with its own exit code, and nothing restored.
        refused = run_cli(target, "backup", "restore", str(quiet), input=PASSPHRASE + "\n", check=False)
        assert refused.returncode == 3 and "empty" in refused.stderr
        # One empty target for every refusal below: each must leave it empty (else the next would be 3).
        fresh = make_env()
        wrong = run_cli(fresh, "backup", "restore", str(quiet), input="not it\n", check=False)
        assert wrong.returncode == 4 and "passphrase" in wrong.stderr
        data = quiet.read_bytes()
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0x01
        damaged = {
            "changed": bytes(flipped),
            "cut": data[: len(data) - 100],
            "extended": data + b"\0",
            "foreign": b"PK\x03\x04" + data[4:],
        }
        for why, content in damaged.items():
            path = tmp_path / f"{why}.sarhad-backup"
            path.write_bytes(content)
            result = run_cli(fresh, "backup", "restore", str(path), input=PASSPHRASE + "\n", check=False)
            assert result.returncode == 5, (why, result.stderr)
            assert _count(fresh, Submission) == 0, why
            assert not list((fresh.data_dir / "blobs" / "objects").rglob("*/*")), why
    finally:
        stop()


def test_scheduled_backups_keep_the_last_n(make_env: Callable[[], AppEnv], tmp_path: Path) -> None:
    folder = tmp_path / "usb" / "sarhad-backups"
    passphrase = tmp_path / "passphrase"
    passphrase.write_text(PASSPHRASE)
    env = make_env()
    app = env.app(backup_dir=str(folder), backup_passphrase_file=str(passphrase), backup_keep=2)
    database = app.extensions["sarhad.db"]
    config = settings(app)
    assert schedule.run_once(database, config) is None  # the disk is not plugged in: skipped
    folder.mkdir(parents=True)
    written = [schedule.run_once(database, config) for _ in range(3)]
    assert all(written)
    assert schedule.backups_in(folder) == written[1:]
    scheduler = schedule.start(app)
    assert scheduler is not None and len(scheduler.get_jobs()) == 1
    scheduler.shutdown(wait=False)


@pytest.mark.parametrize("size", [0, CHUNK, CHUNK + 1, 3 * CHUNK - 5])
def test_container_round_trips_at_chunk_edges(size: int) -> None:
    import io
    import os

    from server.backup.sealed import SealedReader, SealedWriter

    plain = os.urandom(size)
    sealed = io.BytesIO()
    writer = SealedWriter(sealed, b"pass", log2_n=10)
    writer.write(plain[: size // 3])
    writer.write(plain[size // 3 :])
    writer.close()
    sealed.seek(0)
    reader = SealedReader(sealed, b"pass")
    assert reader.read() == plain
