"""What to send, decided without any I/O: project mapping, what is still unconfirmed, in which order,
and how to pack submissions into batches no larger than one chunk."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sync_client.ledger import Key, attachments_key
from sync_client.sources import HubItem

INVENTORY_PAGE = 1000
MAX_BATCH_ITEMS = 1000


def map_projects(
    hub_projects: Sequence[str], central_projects: Sequence[Mapping[str, Any]]
) -> dict[str, int]:
    """Hub project name → central project id: same name first; when exactly one hub project and one
    project the hub may push to are left over, they are taken to be the same."""
    by_name = {str(p["name"]): int(p["id"]) for p in central_projects}
    mapping = {name: by_name[name] for name in hub_projects if name in by_name}
    left_hub = [n for n in hub_projects if n not in mapping]
    left_central = [pid for pid in by_name.values() if pid not in mapping.values()]
    if len(left_hub) == 1 and len(left_central) == 1:
        mapping[left_hub[0]] = left_central[0]
    return mapping


def key_of(item: HubItem, project_id: int) -> Key:
    return Key(project_id, item.xml_form_id, item.instance_id, item.sha256)


def unconfirmed(
    items: Iterable[HubItem], project_id: int, confirmed: Mapping[Key, tuple[str, str]]
) -> list[HubItem]:
    """Items central has not confirmed with exactly these attachments (a late photo means resend)."""
    out = []
    for item in items:
        seen = confirmed.get(key_of(item, project_id))
        if seen is None or seen[0] != attachments_key(item.attachments):
            out.append(item)
    return out


def inventory_line(item: HubItem) -> dict[str, Any]:
    return {
        "formId": item.xml_form_id,
        "instanceId": item.instance_id,
        "sha256": item.sha256,
        "attachments": [{"name": n, "sha256": s} for n, s in sorted(item.attachments.items())],
    }


def batch_line(item: HubItem, xml: str) -> dict[str, Any]:
    line = inventory_line(item)
    line["xml"] = xml
    if item.device_id:
        line["deviceId"] = item.device_id
    if item.user_agent:
        line["userAgent"] = item.user_agent
    if item.received_at:
        line["receivedAt"] = item.received_at
    return line


def phases(to_send: Sequence[HubItem]) -> tuple[list[HubItem], list[HubItem]]:
    """Versions first; kept conflicts after, so that central receives the version a conflict
    disagrees with before the conflict itself (else the conflict would become the version)."""
    return [i for i in to_send if i.kind == "version"], [i for i in to_send if i.kind == "conflict"]


def conflicts_ready(conflicts: Sequence[HubItem], failed_versions: Iterable[HubItem]) -> list[HubItem]:
    """Conflicts whose disagreeing version did not fail to reach central in this run."""
    blocked = {(i.xml_form_id, i.instance_id) for i in failed_versions}
    return [c for c in conflicts if (c.xml_form_id, c.instance_id) not in blocked]


def blobs_in_order(items: Sequence[HubItem], wanted: Iterable[str]) -> list[str]:
    """The blobs central lacks, in the order the items need them."""
    wanted_set = set(wanted)
    order: list[str] = []
    seen: set[str] = set()
    for item in items:
        for _name, sha in sorted(item.attachments.items()):
            if sha in wanted_set and sha not in seen:
                seen.add(sha)
                order.append(sha)
    order += sorted(wanted_set - seen)
    return order


@dataclass(frozen=True)
class Batch:
    start: int
    count: int
    body: bytes


def _gzip(lines: Sequence[bytes]) -> bytes:
    return gzip.compress(b"".join(lines), compresslevel=9, mtime=0)


def pack(lines: Sequence[dict[str, Any]], budget: int) -> list[Batch]:
    """Consecutive lines packed into gzip bodies of at most ``budget`` bytes each (a single line larger
    than that goes alone). Deterministic, so that a restart packs the same way."""
    encoded = [json.dumps(line, separators=(",", ":")).encode("utf-8") + b"\n" for line in lines]
    batches: list[Batch] = []
    start, ratio = 0, 4.0
    while start < len(encoded):
        count, raw = 0, 0
        while start + count < len(encoded) and count < MAX_BATCH_ITEMS:
            raw += len(encoded[start + count])
            count += 1
            if raw >= budget * ratio:
                break
        body = _gzip(encoded[start : start + count])
        while len(body) > budget and count > 1:
            count = max(1, int(count * budget / len(body) * 0.9))
            body = _gzip(encoded[start : start + count])
        raw = sum(len(e) for e in encoded[start : start + count])
        ratio = max(1.0, raw / max(1, len(body)))
        batches.append(Batch(start, count, body))
        start += count
    return batches
