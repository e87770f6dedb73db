"""Importing a USB bundle at central: authenticate, verify, decrypt, store its files, ingest its
submissions through the same batch path as a push (``source=bundle``), and answer a receipt signed by
central that the hub reads back. Importing the same bundle again changes nothing and answers the same
receipt contents (idempotent)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from server import audit
from server.db import Database
from server.entities import mirror
from server.errors import Problem
from server.models import Blob, Hub, Project, Source
from server.sync import batches, hubs, keys, wire
from server.sync.bundle_format import BundleRefused, PayloadReader, open_bundle

FLUSH_ITEMS = 200


class _ChunkStream:
    """A read()-able view of an iterator of byte pieces (for the blob store's stream staging)."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self._pieces = pieces
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            try:
                self._buffer += next(self._pieces)
            except StopIteration:
                break
        if size < 0:
            out, self._buffer = self._buffer, b""
        else:
            out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def import_bundle(database: Database, data_dir: Path, path: Path) -> dict[str, Any]:
    size = path.stat().st_size
    with path.open("rb") as fh:
        opened = open_bundle(fh, size, keys.bundle_key(data_dir))
        reader = PayloadReader(opened.payload)
        first = reader.line() or {}
        hub_id, hub_name = _authenticate(database, str(first.get("token", "")), opened.hub_signing_key)
        results: list[dict[str, Any]] = []
        pending: list[dict[str, Any]] = []
        blobs = 0
        ended = False
        while (record := reader.line()) is not None:
            if "blob" in record:
                blobs += _store_blob(database, reader, str(record["blob"]), int(record["size"]))
            elif "item" in record:
                pending.append(record["item"])
                if len(pending) >= FLUSH_ITEMS:
                    results += _ingest(database, hub_id, pending)
                    pending = []
            elif record.get("end"):
                ended = True
                break
        if not ended:
            raise BundleRefused("the bundle's contents end early (no end record)")
        results += _ingest(database, hub_id, pending)
    bundle_sha = _sha256_file(path)
    with database.write() as w:
        counts: dict[str, int] = defaultdict(int)
        for r in results:
            counts[r["status"]] += 1
        audit.record(
            w.session, "sync.bundle", target_type="hub", target_id=hub_id, hub=hub_name, bundle=bundle_sha,
            new_files=blobs, **counts,
        )  # fmt: skip
    body = {
        "hub": hub_name,
        "bundle": bundle_sha,
        "importedAt": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "items": results,
        # The hub's entity lists as central holds them after this import: a hub that never reaches
        # central takes them when the receipt comes back on the USB stick (as pull-forms would give).
        "entityLists": _entity_lists(database, hub_id),
    }
    key = keys.signing_key(data_dir)
    return {
        "receipt": body,
        "algorithm": "Ed25519",
        "signature": base64.b64encode(key.sign(wire.canonical_json(body))).decode("ascii"),
        "publicKey": keys.raw_public_b64(key),
    }


def _entity_lists(database: Database, hub_id: int) -> list[dict[str, Any]]:
    with database.read() as session:
        hub = session.get(Hub, hub_id)
        assert hub is not None
        return [{"project": p.name, "lists": mirror.export_lists(session, p)} for p in hub.projects]


def _authenticate(database: Database, token: str, signing_key: str) -> tuple[int, str]:
    with database.write() as w:
        try:
            hub = hubs.authenticate_hub(w.session, f"Bearer {token}")
        except Problem:
            raise BundleRefused(
                "the bundle comes from a hub this central does not know, or whose token was revoked"
            ) from None
        if hub.signing_key is None:
            hub.signing_key = signing_key  # first bundle: pin the hub's key
        elif hub.signing_key != signing_key:
            raise BundleRefused(
                f"the bundle is signed by another key than hub {hub.name!r}'s earlier bundles"
            )
        return hub.id, hub.name


def _store_blob(database: Database, reader: PayloadReader, sha256: str, size: int) -> int:
    with database.write() as w:
        if w.session.get(Blob, sha256) is not None:
            for _ in reader.chunks(size):
                pass  # already here: skip its bytes
            return 0
        staged = w.staging.add_stream(_ChunkStream(reader.chunks(size)))  # type: ignore[arg-type]
        if staged.sha256 != sha256 or staged.size != size:
            raise BundleRefused("a file in the bundle does not match its hash")
        w.add_blob(staged)
        return 1


def _ingest(database: Database, hub_id: int, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not items:
        return []
    by_project: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in items:
        by_project[str(item.pop("project", ""))].append(item)
    results: list[dict[str, Any]] = []
    for project_name, lines in by_project.items():
        try:
            loaded = batches.load_lines(lines)
        except batches.BadLine as bad:
            raise BundleRefused(f"a submission in the bundle is not valid: {bad.messages}") from None
        with database.write() as w:
            hub = w.session.get(Hub, hub_id)
            assert hub is not None
            project = next((p for p in hub.projects if p.name == project_name and not p.archived), None)
            if project is None:
                results += [
                    {**_ident(line), "project": project_name, "status": "refused",
                     "message": f"project {project_name!r} is not one this hub may send to"}
                    for line in loaded
                ]  # fmt: skip
                continue
            for result in batches.ingest_batch(w, hub, project, loaded, source=Source.BUNDLE):
                results.append({**result.as_json(), "projectId": project.id, "project": project.name})
    return results


def _ident(line: dict[str, Any]) -> dict[str, Any]:
    return {"formId": line["formId"], "instanceId": line["instanceId"], "sha256": line["sha256"]}


__all__ = ["BundleRefused", "Project", "import_bundle"]
