"""The blob store: content addressing, verified reads, and recovery of interrupted transactions."""

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from server.blobs import BlobCorrupt, BlobMissing, BlobStore


def test_stage_publish_and_read_back(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    staging = store.staging()
    blob = staging.add_stream(io.BytesIO(b"x" * 3_000_000))
    same = staging.add_bytes(b"x" * 3_000_000)
    assert same == blob and blob.size == 3_000_000
    assert not store.exists(blob.sha256)  # nothing is visible before publish
    staging.publish()
    assert store.read_bytes(blob.sha256) == b"x" * 3_000_000
    assert list(store.iter_stored()) == [blob.sha256]
    assert list(store.incoming.iterdir()) == []


def test_discard_leaves_nothing(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    staging = store.staging()
    staging.add_bytes(b"never committed")
    staging.discard()
    assert list(store.iter_stored()) == [] and list(store.incoming.iterdir()) == []


def test_corruption_and_absence_are_detected(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    staging = store.staging()
    blob = staging.add_bytes(b"original answer")
    staging.publish()
    path = store.path(blob.sha256)
    os.chmod(path, 0o644)
    path.write_bytes(b"tampered answer")
    with pytest.raises(BlobCorrupt):
        store.read_bytes(blob.sha256)
    assert not store.verify(blob.sha256)
    with pytest.raises(BlobMissing):
        store.read_bytes("0" * 64)
    with pytest.raises(ValueError):
        store.path("../../etc/passwd")


def test_recovery_rolls_forward_committed_and_back_the_rest(tmp_path: Path) -> None:
    # A child process stages two files and dies (SIGKILL) before publishing: its lock dies with it.
    script = (
        "import os, sys; from pathlib import Path; from server.blobs import BlobStore\n"
        "s = BlobStore(Path(sys.argv[1])).staging()\n"
        "print(s.add_bytes(b'committed').sha256, s.add_bytes(b'rolled back').sha256, flush=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=False
    )
    committed, rolled_back = out.stdout.split()
    store = BlobStore(tmp_path)

    live = store.staging()  # a transaction still running in this process must be left alone
    live.add_bytes(b"in flight")
    report = store.recover(lambda shas: {s for s in shas if s == committed})
    assert (report.rolled_forward, report.rolled_back, report.in_use) == (1, 1, 1)
    assert store.read_bytes(committed) == b"committed"
    assert not store.exists(rolled_back)
    live.publish()
    assert len(list(store.iter_stored())) == 2


def test_a_failed_publish_keeps_the_files_for_recovery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The rows are committed when publish runs: a failure then (a full disk, say) must not lose the file.
    store = BlobStore(tmp_path)
    staging = store.staging()
    blob = staging.add_bytes(b"committed answer")

    def disk_full(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "_place", disk_full)
    with pytest.raises(OSError):
        staging.publish()
    monkeypatch.undo()
    report = store.recover(lambda shas: set(shas))
    assert report.rolled_forward == 1 and store.read_bytes(blob.sha256) == b"committed answer"
