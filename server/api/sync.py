"""``/v1/sync``: what field hubs (``sarhad-sync``) use to push to central.

Authenticated by a hub token (``Authorization: Bearer <token>``, from ``sarhad hub create``), with no
other right than pushing to and pulling forms of the hub's projects. Bodies of inventories and batches
are gzip-compressed JSON lines. Write endpoints read their body *before* opening the transaction, so
that a slow link never holds the database's write lock.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import g, jsonify, request, send_file
from flask.typing import ResponseReturnValue
from marshmallow import Schema, fields, validate

from server import config, db, errors
from server.api import api
from server.api.schemas import load_json
from server.db import Writer
from server.entities import mirror
from server.models import Hub, utcnow
from server.sync import batches, bundles, forms, holdings, hubs, keys, uploads, wire

MAX_INVENTORY_ITEMS = 5000
MAX_BATCH_ITEMS = 2000


def _hub(session: Any) -> Hub:
    return hubs.authenticate_hub(session, request.headers.get("Authorization", ""))


@contextmanager
def _hub_write() -> Iterator[tuple[Writer, Hub]]:
    """One write transaction for a hub's request; the hub authenticated inside it."""
    with db.database().write() as writer:
        g.db_writer = writer
        try:
            hub = _hub(writer.session)
            hub.last_seen_at = utcnow()
            yield writer, hub
        finally:
            g.pop("db_writer", None)


def _lines(max_items: int) -> list[dict[str, Any]]:
    limit = config.settings().max_request_bytes
    body = request.get_data(cache=False)
    try:
        lines = list(wire.decode_lines(body, limit))
    except wire.BodyTooLarge:
        raise errors.too_large(limit) from None
    except wire.BodyUnreadable as exc:
        raise errors.bad_request(f"The body must be gzip-compressed JSON lines: {exc}.") from None
    if len(lines) > max_items:
        raise errors.bad_request(f"Send at most {max_items} items per request.", limit=max_items)
    try:
        return batches.load_lines(lines)
    except batches.BadLine as bad:
        raise errors.bad_request(f"Item {bad.number} is not valid.", fields=bad.messages) from None


@api.get("/sync/public-key")
def sync_public_key() -> ResponseReturnValue:
    """Central's public keys: to verify signed statements and to encrypt bundles. Public by design."""
    data_dir = config.settings().data_dir
    return jsonify(
        {
            "signing": {"algorithm": "Ed25519", "publicKey": keys.raw_public_b64(keys.signing_key(data_dir))},
            "bundle": {"algorithm": "X25519", "publicKey": keys.raw_public_b64(keys.bundle_key(data_dir))},
        }
    )


@api.get("/sync/hub")
def sync_hub() -> ResponseReturnValue:
    hub = _hub(db.session())
    data_dir = config.settings().data_dir
    return jsonify(
        {
            "name": hub.name,
            "projects": [{"id": p.id, "name": p.name} for p in hub.projects if not p.archived],
            "signingKey": keys.raw_public_b64(keys.signing_key(data_dir)),
            "bundleKey": keys.raw_public_b64(keys.bundle_key(data_dir)),
            "maxRequestBytes": config.settings().max_request_bytes,
        }
    )


@api.post("/sync/projects/<int:project_id>/inventory")
def sync_inventory(project_id: int) -> ResponseReturnValue:
    """Which of these submission versions central lacks; writes receipts for those it holds."""
    lines = _lines(MAX_INVENTORY_ITEMS)
    with _hub_write() as (writer, hub):
        hubs.allowed_project(hub, project_id)
        holdings.lock_hub(writer.session, hub)
        items = [batches.as_item(line) for line in lines]
        held = holdings.confirm(writer.session, hub, project_id, items)
        missing = [n for n, item in enumerate(items) if item.key not in held]
        blobs = holdings.missing_blobs(
            writer.session, [s for n in missing for s in items[n].attachments.values()]
        )
        body = {
            "held": len(items) - len(missing),
            "missing": missing,
            "conflicts": [n for n, item in enumerate(items) if held.get(item.key) == "conflict"],
            "missingBlobs": blobs,
        }
    return jsonify(body)


@api.post("/sync/projects/<int:project_id>/submissions")
def sync_submissions(project_id: int) -> ResponseReturnValue:
    """Ingest a batch of submission versions; answers each item's fate, in the order sent."""
    lines = _lines(MAX_BATCH_ITEMS)
    with _hub_write() as (writer, hub):
        project = hubs.allowed_project(hub, project_id)
        results = batches.ingest_batch(writer, hub, project, lines)
        body = {"results": [r.as_json() for r in results]}
    return jsonify(body)


MAX_BYTES = 2**63 - 1  # what the database's byte counts (BIGINT) hold


class UploadRequest(Schema):
    sha256 = fields.String(required=True, validate=validate.Regexp(r"^[0-9a-f]{64}$"))
    size = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=MAX_BYTES))


@api.post("/sync/uploads")
def sync_upload_start() -> ResponseReturnValue:
    """Start (or find) the upload of a blob; answers the offset to continue from."""
    body = load_json(UploadRequest())
    with _hub_write() as (writer, hub):
        state = uploads.start(writer.session, config.settings().data_dir, hub, body["sha256"], body["size"])
    return jsonify(state.as_json())


@api.get("/sync/uploads/<sha256>")
def sync_upload_status(sha256: str) -> ResponseReturnValue:
    hub = _hub(db.session())
    return jsonify(uploads.status(db.session(), hub, sha256).as_json())


@api.put("/sync/uploads/<sha256>")
def sync_upload_chunk(sha256: str) -> ResponseReturnValue:
    """Append the body as the chunk starting at ``?offset=N`` (``&size=N`` opens the upload at offset 0)."""
    hub = _hub(db.session())
    need_offset = "Give the chunk's starting byte as ?offset=N."
    offset = _byte_count("offset", need_offset)
    if offset is None:
        raise errors.bad_request(need_offset)
    size = _byte_count("size", "Give the file's whole size as ?size=N.")
    settings = config.settings()
    db.end_read()  # the chunk may take minutes to arrive: hold no read snapshot meanwhile
    body = uploads.ChunkBody(
        request.stream, request.environ.get("wsgi.input"), request.environ.get("gunicorn.socket")
    )
    with body.idle_limit(settings.sync_chunk_idle_seconds):
        state = uploads.append(
            db.database(),
            settings.data_dir,
            hub.id,
            sha256,
            offset,
            body,
            settings.max_request_bytes,
            size=size,
        )
    return jsonify(state.as_json())


def _byte_count(name: str, message: str) -> int | None:
    """A byte count from the query string (None when absent): digits, and no more than a file can hold."""
    raw = request.args.get(name)
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or int(raw) > MAX_BYTES:
        raise errors.bad_request(message)
    return int(raw)


@api.get("/sync/statement")
def sync_statement() -> ResponseReturnValue:
    """The signed completeness statement: what central confirmed holding for this hub."""
    hub = _hub(db.session())
    return jsonify(holdings.statement(db.session(), hub, config.settings().data_dir))


@api.get("/sync/projects/<int:project_id>/forms")
def sync_forms(project_id: int) -> ResponseReturnValue:
    """The project's published forms, every published version with its XForm and media list, and
    its entity lists with every entity's current state (the hub serves them to its tablets)."""
    session = db.session()
    project = hubs.allowed_project(_hub(session), project_id)
    return jsonify(
        {
            "project": {"id": project.id, "name": project.name},
            "forms": forms.published_forms(session, project),
            "entityLists": mirror.export_lists(session, project),
        }
    )


@api.get("/sync/projects/<int:project_id>/media/<sha256>")
def sync_form_media(project_id: int, sha256: str) -> ResponseReturnValue:
    """One form media file by content hash; only media of the project's published forms."""
    session = db.session()
    project = hubs.allowed_project(_hub(session), project_id)
    uploads.check_sha256(sha256)
    if not forms.is_form_media(session, project, sha256):
        raise errors.not_found("No form of this project uses such a media file.")
    path = db.database().blobs.path(sha256)
    if not path.exists():
        raise errors.not_found("The media file is missing from central's store; tell the administrator.")
    return send_file(path, mimetype="application/octet-stream", max_age=0, conditional=True)


@api.post("/sync/bundles")
def sync_bundle_import() -> ResponseReturnValue:
    """Import a USB bundle (the request body). It authenticates itself: the hub's token travels inside,
    encrypted for central, and the hub's signature covers the whole file. Answers a signed receipt."""
    settings = config.settings()
    folder = uploads.upload_dir(settings.data_dir)
    path = folder / f"bundle-{uuid.uuid4().hex}.part"
    try:
        with path.open("wb") as out:
            while chunk := request.stream.read(1024 * 1024):
                out.write(chunk)
        try:
            receipt = bundles.import_bundle(db.database(), settings.data_dir, path)
        except bundles.BundleRefused as refused:
            raise errors.bundle_refused(str(refused)) from None
    finally:
        path.unlink(missing_ok=True)
    return jsonify(receipt)
