"""``sarhad-sync bundle export|import|receipt``: sneakernet for sites that never get a link.

- ``export FILE`` (at the hub): every submission version central has not confirmed, with its files, in
  one file signed by the hub and encrypted for central. The hub's token travels inside, encrypted.
- ``import FILE`` (anywhere that reaches central, e.g. the district office): hands the file to central,
  which checks and ingests it, and writes central's signed receipt beside it (``FILE.receipt.json``).
- ``receipt FILE.receipt.json`` (back at the hub): checks central's signature and marks what arrived,
  so that the next bundle carries only the rest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from server.errors import Code
from server.sync import keys, wire
from server.sync.bundle_format import BundleWriter
from sync_client import plan
from sync_client.client import CentralClient, CentralRefused, ExitCode, SyncError
from sync_client.config import SyncConfig
from sync_client.ledger import Key, Ledger, attachments_key
from sync_client.sources import HubStore


@dataclass
class ExportReport:
    items: int = 0
    files: int = 0
    file_bytes: int = 0
    skipped: int = 0
    path: Path = field(default_factory=Path)


BUNDLE_REFUSED = Code.BUNDLE_REFUSED.value


def _ledger(config: SyncConfig) -> Ledger:
    config.require("central_url", "hub_data_dir")
    return Ledger(config.ledger_path, config.central_url)


def _central_key(
    configured: str, ledger: Ledger, pinned_as: str, what: str, setting: str, hint: str = ""
) -> str:
    """One of central's public keys: as configured, else as pinned by an earlier run with central."""
    key = configured or (ledger.pinned() or {}).get(pinned_as)
    if not key:
        raise SyncError(
            f"central's {what} is not known here: set {setting} (printed by `sarhad hub create`){hint}",
            ExitCode.USAGE,
        )
    return str(key)


def export_bundle(config: SyncConfig, path: Path) -> ExportReport:
    config.require("token", "hub_data_dir")
    assert config.hub_data_dir is not None
    ledger = _ledger(config)
    store = HubStore(config.hub_data_dir, config.hub_database_url)
    try:
        central_key = _central_key(
            config.central_bundle_key,
            ledger,
            "bundleKey",
            "bundle key",
            "SARHAD_SYNC_CENTRAL_BUNDLE_KEY",
            ", or run pull-forms once while central is reachable",
        )
        confirmed = {(k.xml_form_id, k.instance_id, k.sha256): v[0] for k, v in ledger.confirmed().items()}
        items = [
            i
            for i in store.items()
            if confirmed.get((i.xml_form_id, i.instance_id, i.sha256)) != attachments_key(i.attachments)
        ]
        report = ExportReport(path=path)
        report.skipped = len(store.items()) - len(items)
        versions, conflicts = plan.phases(items)
        ordered = versions + conflicts
        shas = plan.blobs_in_order(ordered, {s for i in ordered for s in i.attachments.values()})
        sizes = store.blob_sizes(shas)
        tmp = path.with_name(path.name + ".partial")
        with tmp.open("wb") as out:
            writer = BundleWriter(out, central_key, keys.signing_key(config.hub_data_dir))
            writer.line({"token": config.token, "items": len(ordered)})
            for sha in shas:
                if sha not in sizes:
                    continue
                writer.line({"blob": sha, "size": sizes[sha]})
                with store.open_blob(sha) as fh:
                    while chunk := fh.read(1024 * 1024):
                        writer.write(chunk)
                report.files += 1
                report.file_bytes += sizes[sha]
            xmls = store.xmls(ordered)
            for item in ordered:
                line = plan.batch_line(item, xmls[(item.kind, item.row_id)])
                writer.line({"item": {**line, "project": item.project_name}})
            writer.line({"end": True})
            writer.close()
        tmp.replace(path)
        report.items = len(ordered)
        return report
    finally:
        store.close()
        ledger.close()


def import_bundle(config: SyncConfig, path: Path, receipt_path: Path | None) -> tuple[dict[str, Any], Path]:
    config.require("central_url")
    client = CentralClient(config)
    try:
        with path.open("rb") as fh:
            signed = client.request(
                "POST", "/v1/sync/bundles", retry=False, data=fh,
                headers={"Content-Type": "application/octet-stream"},
            )  # fmt: skip
    except CentralRefused as refused:
        # Central's own code says the file itself is at fault (tampered, foreign, damaged): exit 6.
        code = ExitCode.BUNDLE_REFUSED if refused.code == BUNDLE_REFUSED else ExitCode.ERROR
        raise SyncError(refused.message.removeprefix("central refused the request: "), code) from None
    target = receipt_path or path.with_name(path.name + ".receipt.json")
    target.write_text(json.dumps(signed, indent=2, ensure_ascii=False))
    return signed, target


def read_receipt(config: SyncConfig, receipt_path: Path) -> dict[str, int]:
    """Check central's signature on a receipt and mark in the ledger what it says central holds."""
    config.require("hub_data_dir")
    try:
        signed = json.loads(receipt_path.read_text())
        body = signed["receipt"]
    except (OSError, ValueError, KeyError, TypeError):
        raise SyncError(f"{receipt_path} is not a receipt of central", ExitCode.USAGE) from None
    ledger = _ledger(config)
    assert config.hub_data_dir is not None
    store = HubStore(config.hub_data_dir, config.hub_database_url)
    try:
        key = _central_key(
            config.central_signing_key, ledger, "signingKey", "signing key", "SARHAD_SYNC_CENTRAL_SIGNING_KEY"
        )
        if not keys.verify_signature(key, str(signed.get("signature", "")), wire.canonical_json(body)):
            raise SyncError(
                "the receipt does not carry central's valid signature; nothing was marked",
                ExitCode.BUNDLE_REFUSED,
            )
        by_ident = {(i.xml_form_id, i.instance_id, i.sha256): i for i in store.items()}
        held, refused = [], 0
        for entry in body["items"]:
            item = by_ident.get((entry["formId"], entry["instanceId"], entry["sha256"]))
            if item is None or "projectId" not in entry:
                continue
            key_ = Key(int(entry["projectId"]), item.xml_form_id, item.instance_id, item.sha256)
            if entry["status"] == "held":
                held.append((key_, item.attachments, entry.get("heldAs", "version")))
            else:
                ledger.refuse(key_, str(entry.get("message", "refused")))
                refused += 1
        confirmed = ledger.confirm(held)
    finally:
        store.close()
        ledger.close()
    return {"confirmed": confirmed, "refused": refused, "entities": _take_entity_lists(config, body)}


def _take_entity_lists(config: SyncConfig, body: dict[str, Any]) -> int:
    """Central's entity lists from the (verified) receipt, taken as pull-forms takes them."""
    payload = body.get("entityLists") or []
    if not payload:
        return 0
    from server.entities import mirror
    from server.models import Project
    from sync_client.hubstore import HubWriter

    hub = HubWriter(config)
    changed = 0
    try:
        with hub.write() as w:
            for item in payload:
                project = w.session.scalar(select(Project).where(Project.name == item["project"]))
                if project is not None:
                    changed += mirror.import_lists(w.session, project, item["lists"])
    finally:
        hub.close()
    return changed
