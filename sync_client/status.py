"""``sarhad-sync status``: per form and per device, what the hub holds and what central confirmed."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sync_client.ledger import Ledger
from sync_client.sources import HubItem


@dataclass
class Counts:
    held: int = 0
    confirmed: int = 0
    conflicts: int = 0
    refused: int = 0
    last_confirmed: str = ""  # when central last confirmed one of these (ISO 8601)

    @property
    def pending(self) -> int:
        return self.held - self.confirmed

    def as_json(self) -> dict[str, int]:
        return {
            "heldAtHub": self.held,
            "confirmedAtCentral": self.confirmed,
            "pending": self.pending,
            "conflicts": self.conflicts,
            "refused": self.refused,
            "lastConfirmed": self.last_confirmed or None,
        }


@dataclass
class Status:
    forms: dict[tuple[str, str], Counts] = field(default_factory=lambda: defaultdict(Counts))
    devices: dict[str, Counts] = field(default_factory=lambda: defaultdict(Counts))
    total: Counts = field(default_factory=Counts)
    last_run: dict[str, Any] | None = None
    last_success: dict[str, Any] | None = None
    statement: dict[str, Any] | None = None


def compute(items: list[HubItem], ledger: Ledger) -> Status:
    """Counts from the hub's store and the ledger alone: works with no link to central."""
    from sync_client.ledger import attachments_key

    confirmed = {(k.xml_form_id, k.instance_id, k.sha256): v for k, v in ledger.confirmed().items()}
    refused = {(k.xml_form_id, k.instance_id, k.sha256) for k in ledger.refused()}
    times = ledger.confirmed_times()
    status = Status()
    for item in items:
        key = (item.xml_form_id, item.instance_id, item.sha256)
        seen = confirmed.get(key)
        done = seen is not None and seen[0] == attachments_key(item.attachments)
        conflict = item.kind == "conflict" or (done and seen is not None and seen[1] == "conflict")
        for counts in (
            status.forms[(item.project_name, item.xml_form_id)],
            status.devices[item.device_id or "(unknown device)"],
            status.total,
        ):
            counts.held += 1
            counts.confirmed += done
            counts.conflicts += conflict
            counts.refused += key in refused and not done
            if done:
                counts.last_confirmed = max(counts.last_confirmed, times.get(key, ""))
    status.last_run = ledger.last_run()
    status.last_success = ledger.last_run("complete")
    status.statement = ledger.statement()
    return status


def describe(status: Status) -> str:
    def line(name: str, *cells: object) -> str:
        return f"  {name:<36}" + "".join(f" {cell!s:>9}" for cell in cells[:5]) + f"  {cells[5]}"

    def row(name: str, c: Counts) -> str:
        return line(name, c.held, c.confirmed, c.pending, c.conflicts, c.refused, c.last_confirmed or "never")

    header = line("", "at hub", "confirmed", "pending", "conflicts", "refused", "last confirmed")
    out = ["per form:", header]
    out += [row(f"{p} / {f}", c) for (p, f), c in sorted(status.forms.items())]
    out += ["per device:", header]
    out += [row(d, c) for d, c in sorted(status.devices.items())]
    out.append(row("TOTAL", status.total))
    if status.last_run:
        r = status.last_run
        out.append(f"last sync: {r['startedAt']} → {r['outcome'] or 'interrupted'}")
    if status.last_success:
        out.append(f"last complete sync: {status.last_success['finishedAt']}")
    else:
        out.append("last complete sync: never")
    st = status.statement
    if st:
        body = st["signed"]["statement"]
        verdict = "matches everything this hub held then" if st["matchesHub"] else "does NOT match the hub"
        out.append(
            f"central's signed statement ({st['fetchedAt']}): {body['total']} submissions from hub "
            f"{body['hub']} are at central ({body['conflicts']} of them kept as conflicts), digest "
            f"{body['digest']}; signature {'valid' if st['verified'] else 'INVALID'}; {verdict}"
        )
    return "\n".join(out)


def as_json(status: Status) -> dict[str, Any]:
    return {
        "forms": [{"project": p, "formId": f, **c.as_json()} for (p, f), c in sorted(status.forms.items())],
        "devices": [{"deviceId": d, **c.as_json()} for d, c in sorted(status.devices.items())],
        "total": status.total.as_json(),
        "lastRun": status.last_run,
        "lastCompleteRun": status.last_success,
        "statement": status.statement,
    }
