"""``sarhad-sync push --to-openrosa URL``: the hub's submissions to any OpenRosa server (ODK Central,
KoboToolbox, another Sarhad) the way Collect sends them: HEAD, then a multipart POST per submission,
split into several POSTs (``*isIncomplete*``) when larger than the server accepts. 201/202 means sent;
409 is a conflict there (reported, never retried); a cut or a 5xx is retried with backoff. The ledger
remembers what was sent, so a restart goes on with the rest."""

from __future__ import annotations

import email.utils
from dataclasses import dataclass, field
from typing import Any

import requests
from requests.auth import HTTPDigestAuth

from server.log_redaction import redact
from sync_client import __version__
from sync_client import retry as retry_policy
from sync_client.client import ExitCode, SyncError
from sync_client.config import SyncConfig
from sync_client.ledger import Key, Ledger, attachments_key
from sync_client.retry import RETRYABLE_STATUS
from sync_client.sources import HubItem, HubStore

DEFAULT_LIMIT = 10_000_000  # what Collect assumes when the server does not say
MAX_FILES_PER_POST = 100


@dataclass
class OpenRosaReport:
    sent: int = 0
    already: int = 0
    conflicts: list[tuple[HubItem, str]] = field(default_factory=list)
    refused: list[tuple[HubItem, str]] = field(default_factory=list)
    skipped_conflicts: int = 0

    @property
    def exit_code(self) -> int:
        return ExitCode.INCOMPLETE if self.conflicts or self.refused else ExitCode.OK


def _message(response: requests.Response) -> str:
    text = response.text
    start, end = text.find("<message"), text.find("</message>")
    if start >= 0 and end > start:
        return text[text.find(">", start) + 1 : end].strip()
    return f"HTTP {response.status_code}"


class OpenRosaTarget:
    def __init__(self, config: SyncConfig, url: str, username: str | None, password: str | None) -> None:
        self.config = config
        self.url = url.rstrip("/")
        self.shown_url = redact(self.url)  # a device key in the URL is never printed
        self.session = retry_policy.session(config)
        self.session.headers.update({"X-OpenRosa-Version": "1.0", "User-Agent": f"sarhad-sync/{__version__}"})
        if username:
            self.session.auth = HTTPDigestAuth(username, password or "")

    def _send(self, method: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", (self.config.connect_timeout, self.config.read_timeout))
        headers = {"Date": email.utils.formatdate(usegmt=True)}
        try:  # transient failures are retried by the session (sync_client.retry)
            response = self.session.request(method, self.url + "/submission", headers=headers, **kwargs)
        except (requests.ConnectionError, requests.Timeout) as exc:
            last = type(exc).__name__
            raise SyncError(
                f"could not reach the OpenRosa server at {self.shown_url} ({last})", ExitCode.UNREACHABLE
            ) from None
        if response.status_code >= 500 or response.status_code in RETRYABLE_STATUS:
            raise SyncError(
                f"could not reach the OpenRosa server at {self.shown_url} (HTTP {response.status_code})",
                ExitCode.UNREACHABLE,
            )
        if response.status_code == 401:
            raise SyncError(
                f"the OpenRosa server at {self.shown_url} refused the credentials: check the URL's token or "
                "--username/--password",
                ExitCode.REFUSED_TOKEN,
            )
        return response

    def limit(self) -> int:
        response = self._send("HEAD")
        if response.status_code != 204:
            return DEFAULT_LIMIT
        return int(response.headers.get("X-OpenRosa-Accept-Content-Length", DEFAULT_LIMIT))

    def post(self, xml: bytes, files: list[tuple[str, bytes]], limit: int) -> requests.Response:
        """One submission, split like Collect when XML plus files exceed the limit or 100 files."""
        parts: list[list[tuple[str, bytes]]] = [[]]
        size = len(xml)
        for name, data in files:
            if parts[-1] and (size + len(data) > limit or len(parts[-1]) >= MAX_FILES_PER_POST):
                parts.append([])
                size = len(xml)
            parts[-1].append((name, data))
            size += len(data)
        response: requests.Response | None = None
        for n, part in enumerate(parts):
            fields: list[tuple[str, Any]] = [("xml_submission_file", ("submission.xml", xml, "text/xml"))]
            fields += [(name, (name, data, "application/octet-stream")) for name, data in part]
            if n < len(parts) - 1:
                fields.append(("*isIncomplete*", (None, b"yes")))
            response = self._send("POST", files=fields)
            if response.status_code not in (201, 202):
                return response
        assert response is not None
        return response


def push_to_openrosa(
    config: SyncConfig, url: str, username: str | None, password: str | None
) -> OpenRosaReport:
    config.require("hub_data_dir")
    assert config.hub_data_dir is not None
    store = HubStore(config.hub_data_dir, config.hub_database_url)
    ledger = Ledger(config.ledger_path, f"openrosa:{url.rstrip('/')}")
    target = OpenRosaTarget(config, url, username, password)
    report = OpenRosaReport()
    try:
        confirmed = ledger.confirmed()
        conflicted = {k: m for k, m in ledger.refused().items() if m.startswith("conflict: ")}
        items = store.items()
        report.skipped_conflicts = sum(1 for i in items if i.kind == "conflict")
        pending = []
        for item in items:
            if item.kind != "version":
                continue  # a conflict kept at the hub would only be refused there: it stays for review
            seen = confirmed.get(Key(0, item.xml_form_id, item.instance_id, item.sha256))
            key = Key(0, item.xml_form_id, item.instance_id, item.sha256)
            if seen is not None and seen[0] == attachments_key(item.attachments):
                report.already += 1
            elif key in conflicted:  # the server said 409 before: it will not change its mind
                report.conflicts.append((item, conflicted[key].removeprefix("conflict: ")))
            else:
                pending.append(item)
        if not pending:
            return report
        limit = target.limit()
        for item in pending:
            xml = store.xmls([item])[(item.kind, item.row_id)].encode("utf-8")
            files = [(name, store.blobs.read_bytes(sha)) for name, sha in sorted(item.attachments.items())]
            response = target.post(xml, files, limit)
            key = Key(0, item.xml_form_id, item.instance_id, item.sha256)
            if response.status_code in (201, 202):
                ledger.confirm([(key, item.attachments, "version")])
                report.sent += 1
            elif response.status_code == 409:
                report.conflicts.append((item, _message(response)))
                ledger.refuse(key, "conflict: " + _message(response))
            else:
                report.refused.append((item, _message(response)))
                ledger.refuse(key, _message(response))
        return report
    finally:
        store.close()
        ledger.close()


def describe(report: OpenRosaReport, url: str) -> str:
    lines = [f"{redact(url)}: {report.sent} sent now, {report.already} sent before"]
    for item, message in report.conflicts:
        lines.append(f"  conflict (not retried): {item.xml_form_id} {item.instance_id}: {message}")
    for item, message in report.refused:
        lines.append(f"  refused: {item.xml_form_id} {item.instance_id}: {message}")
    if report.skipped_conflicts:
        lines.append(
            f"  {report.skipped_conflicts} conflict(s) kept at the hub were not sent (review them there)"
        )
    return "\n".join(lines)
