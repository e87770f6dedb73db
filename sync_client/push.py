"""``sarhad-sync push``: hub → central, only what central lacks, resumable after any cut.

1. Ask central who this hub is and which projects it may push to; pin central's signing key.
2. For every submission version the ledger has not seen confirmed: inventory (central answers what it
   lacks and confirms the rest, which go straight into the ledger).
3. Upload the blobs central lacks, by content hash, in chunks that resume at central's confirmed offset.
4. Send the missing submissions in gzip batches of at most one chunk; record each confirmation.
5. Fetch central's signed completeness statement, verify it, compare its digest with the hub's own.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm
from urllib3.exceptions import MaxRetryError

from server.errors import Code
from server.sync import keys, wire
from sync_client import plan
from sync_client import retry as retry_policy
from sync_client.client import CentralClient, CentralRefused, ExitCode, SyncError
from sync_client.config import SyncConfig
from sync_client.ledger import Key, Ledger
from sync_client.sources import HubItem, HubStore, iter_chunks

# (step, done, total): what the console's "Sync now" shows while a push runs.
ProgressHook = Callable[[str, int, int], None]

GZIP_HEADERS = {"Content-Type": wire.JSON_LINES_GZIP, "Content-Encoding": "gzip"}
OFFSET_MISMATCH = Code.UPLOAD_OFFSET


@dataclass
class PushReport:
    hub: str = ""
    held_at_hub: int = 0
    already_confirmed: int = 0
    confirmed_now: int = 0
    conflicts: int = 0
    blobs_uploaded: int = 0
    blob_bytes: int = 0
    refused: list[tuple[HubItem, str]] = field(default_factory=list)
    unmapped: dict[str, int] = field(default_factory=dict)
    statement: dict[str, Any] | None = None
    verified: bool = False
    complete: bool = False

    @property
    def exit_code(self) -> int:
        return ExitCode.OK if self.complete else ExitCode.INCOMPLETE


@dataclass
class Session:
    """Everything one run of the client holds open."""

    config: SyncConfig
    client: CentralClient
    store: HubStore
    ledger: Ledger
    quiet: bool
    progress: ProgressHook | None = None

    @classmethod
    def open(
        cls, config: SyncConfig, quiet: bool, store: Any = None, progress: ProgressHook | None = None
    ) -> Session:
        config.require("central_url", "token", "hub_data_dir")
        assert config.hub_data_dir is not None
        if store is None:
            try:
                store = HubStore(config.hub_data_dir, config.hub_database_url)
            except FileNotFoundError as exc:
                raise SyncError(str(exc), ExitCode.USAGE) from None
        return cls(
            config,
            CentralClient(config),
            store,
            Ledger(config.ledger_path, config.central_url),
            quiet,
            progress,
        )

    def close(self) -> None:
        self.store.close()
        self.ledger.close()

    def bar(self, **kwargs: Any) -> Any:
        bar = tqdm(disable=self.quiet or not sys.stderr.isatty(), leave=False, **kwargs)
        return _Reported(bar, self.progress, kwargs.get("desc", ""), kwargs.get("total") or 0)

    def identify(self) -> dict[str, Any]:
        """Who central says this hub is; refuse a central whose signing key changed since first contact."""
        info: dict[str, Any] = self.client.get("/v1/sync/hub")
        pinned = self.ledger.pinned()
        if pinned and pinned["signingKey"] != info["signingKey"]:
            raise SyncError(
                f"central at {self.config.central_url} presents a different signing key than at first "
                "contact; "
                "if central was reinstalled, move the ledger file aside and push again — otherwise this is "
                "not the same server",
                ExitCode.ERROR,
            )
        self.ledger.pin(info["name"], info["signingKey"], info.get("bundleKey"))
        return info


class _Reported:
    """A progress bar that also tells ``progress`` (a disabled tqdm counts nothing)."""

    def __init__(self, bar: tqdm[Any], progress: ProgressHook | None, step: str, total: int) -> None:
        self.bar, self.progress, self.step, self.total, self.n = bar, progress, step, total, 0

    def __enter__(self) -> _Reported:
        if self.progress is not None:
            self.progress(self.step, 0, self.total)
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()

    def update(self, n: int) -> None:
        self.bar.update(n)
        self.n += n
        if self.progress is not None:
            self.progress(self.step, self.n, self.total)


def push(
    config: SyncConfig, quiet: bool = False, store: Any = None, progress: ProgressHook | None = None
) -> PushReport:
    """Push the hub's store (or ``store``: a Collect folder) to central; ``progress`` hears each step."""
    s = Session.open(config, quiet, store, progress)
    run_id = 0
    report = PushReport()
    try:
        info = s.identify()
        report.hub = info["name"]
        run_id = s.ledger.start_run("push")
        items = s.store.items()
        report.held_at_hub = len(items)
        mapping = plan.map_projects(sorted({i.project_name for i in items}), info["projects"])
        by_project: dict[int, list[HubItem]] = defaultdict(list)
        for item in items:
            if item.project_name in mapping:
                by_project[mapping[item.project_name]].append(item)
            else:
                report.unmapped[item.project_name] = report.unmapped.get(item.project_name, 0) + 1
        for project_id, group in sorted(by_project.items()):
            _push_project(s, project_id, group, report)
        _statement(s, mapping, items, report)
        if store is not None:  # a folder is part of what central holds for the hub, not all of it
            confirmed = s.ledger.confirmed()
            report.complete = all(
                i.project_name in mapping and plan.key_of(i, mapping[i.project_name]) in confirmed
                for i in items
            )
        report.complete = report.complete and not report.refused and not report.unmapped
        s.ledger.finish_run(
            run_id,
            "complete" if report.complete else "incomplete",
            report.confirmed_now,
            s.client.traffic.bytes_sent,
        )
        return report
    except SyncError as exc:
        if run_id:
            s.ledger.finish_run(
                run_id, "failed", report.confirmed_now, s.client.traffic.bytes_sent, exc.message
            )
        raise
    finally:
        s.close()


def _push_project(s: Session, project_id: int, group: list[HubItem], report: PushReport) -> None:
    confirmed = s.ledger.confirmed()
    pending = plan.unconfirmed(group, project_id, confirmed)
    report.already_confirmed += len(group) - len(pending)
    to_send, blobs = _inventory(s, project_id, pending, report)
    _upload_blobs(s, plan.blobs_in_order(to_send, blobs), report)
    versions, conflicts = plan.phases(to_send)
    failed = _send(s, project_id, versions, report)
    _send(s, project_id, plan.conflicts_ready(conflicts, failed), report)


def _inventory(
    s: Session, project_id: int, pending: list[HubItem], report: PushReport
) -> tuple[list[HubItem], set[str]]:
    to_send: list[HubItem] = []
    blobs: set[str] = set()
    with s.bar(total=len(pending), desc="checking with central", unit="sub") as bar:
        for page in iter_chunks(pending, plan.INVENTORY_PAGE):
            body = wire.encode_lines(plan.inventory_line(i) for i in page)
            answer = s.client.post(
                f"/v1/sync/projects/{project_id}/inventory", data=body, headers=GZIP_HEADERS
            )
            missing, conflicts = set(answer["missing"]), set(answer["conflicts"])
            held = [
                (plan.key_of(item, project_id), item.attachments, "conflict" if n in conflicts else "version")
                for n, item in enumerate(page)
                if n not in missing
            ]
            report.confirmed_now += s.ledger.confirm(held)
            report.conflicts += len(conflicts)
            to_send += [page[n] for n in sorted(missing)]
            blobs.update(answer["missingBlobs"])
            bar.update(len(page))
    return to_send, blobs


def _upload_blobs(s: Session, shas: Sequence[str], report: PushReport) -> None:
    if not shas:
        return
    sizes = s.store.blob_sizes(list(shas))
    total = sum(sizes.get(sha, 0) for sha in shas)
    with s.bar(total=total, desc="uploading attachments", unit="B", unit_scale=True) as bar:
        for sha in shas:
            if sha not in sizes:
                continue  # the hub's row names a file it does not have; the item will report it
            sent = upload_blob(s, sha, sizes[sha], bar)
            report.blobs_uploaded += 1
            report.blob_bytes += sent


def upload_blob(s: Session, sha256: str, size: int, bar: Any = None) -> int:
    """Upload one blob from where central says it stands; returns the bytes of content sent.

    A chunk cut by the link is not sent again from its start: central keeps what arrived, so the
    next attempt asks where the upload stands and goes on from there."""
    state = _open_upload(s, sha256, size)
    offset, sent = int(state["offset"]), 0
    resume = retry_policy.policy(s.config)  # the same budget and waits as every other request
    if bar is not None:
        bar.update(offset)
    while not state["complete"]:
        try:
            chunk = s.store.read_range(sha256, offset, s.config.chunk_bytes)
        except OSError as exc:
            raise SyncError(
                f"the hub cannot read its file {sha256} ({exc.strerror}): run `sarhad doctor` on the hub",
                ExitCode.ERROR,
            ) from None
        if not chunk and offset < size:
            raise SyncError(f"the hub's file {sha256} is shorter than its database says", ExitCode.ERROR)
        try:
            state = s.client.put(
                f"/v1/sync/uploads/{sha256}",
                params={"offset": offset, "size": size},
                data=chunk,
                headers={"Content-Type": "application/octet-stream"},
                retry=False,
            )
            sent += len(chunk)
        except CentralRefused as refused:
            if refused.code != OFFSET_MISMATCH:
                raise
            # The previous attempt did arrive (its answer was lost) or central knows better: go on from there.
            state = s.client.get(f"/v1/sync/uploads/{sha256}")
        except SyncError as failed:
            if failed.exit_code != ExitCode.UNREACHABLE:
                raise
            try:
                resume = resume.increment("PUT", f"/v1/sync/uploads/{sha256}", error=failed)
            except MaxRetryError:
                raise failed from None
            s.client.traffic.retries += 1
            resume.sleep()
            state = _resume_upload(s, sha256, size)
        if bar is not None:
            bar.update(int(state["offset"]) - offset)
        offset = int(state["offset"])
    s.ledger.blob_confirmed(sha256)
    return sent


def _open_upload(s: Session, sha256: str, size: int) -> dict[str, Any]:
    if size <= s.config.chunk_bytes:
        # One chunk: the PUT opens the upload itself (one request instead of two on a slow link).
        return {"offset": 0, "complete": False}
    return s.client.post("/v1/sync/uploads", json={"sha256": sha256, "size": size})  # type: ignore[no-any-return]


def _resume_upload(s: Session, sha256: str, size: int) -> dict[str, Any]:
    """Where an upload stands after a cut; opened again when nothing of it had arrived."""
    try:
        return s.client.get(f"/v1/sync/uploads/{sha256}")  # type: ignore[no-any-return]
    except CentralRefused as refused:
        if refused.status != 404:
            raise
        return _open_upload(s, sha256, size)


def _send(s: Session, project_id: int, items: list[HubItem], report: PushReport) -> list[HubItem]:
    """Send items in batches of one chunk; returns the items central did not confirm."""
    failed, needs_blobs = _send_once(s, project_id, items, report)
    if needs_blobs:
        # A blob vanished at central between inventory and batch: upload it, then once more.
        _upload_blobs(s, sorted({sha for item in needs_blobs for sha in item.attachments.values()}), report)
        again, still = _send_once(s, project_id, needs_blobs, report)
        failed += again
        for item in still:
            message = "central still lacks an attachment after it was uploaded"
            s.ledger.refuse(plan.key_of(item, project_id), message)
            report.refused.append((item, message))
            failed.append(item)
    return failed


def _send_once(
    s: Session, project_id: int, items: list[HubItem], report: PushReport
) -> tuple[list[HubItem], list[HubItem]]:
    failed: list[HubItem] = []
    needs_blobs: list[HubItem] = []
    with s.bar(total=len(items), desc="sending submissions", unit="sub") as bar:
        for page in iter_chunks(items, plan.INVENTORY_PAGE):
            xmls = s.store.xmls(page)
            lines = [plan.batch_line(i, xmls[(i.kind, i.row_id)]) for i in page]
            for batch in plan.pack(lines, s.config.chunk_bytes):
                part = page[batch.start : batch.start + batch.count]
                answer = s.client.post(
                    f"/v1/sync/projects/{project_id}/submissions", data=batch.body, headers=GZIP_HEADERS
                )
                held = []
                for item, result in zip(part, answer["results"], strict=True):
                    key = plan.key_of(item, project_id)
                    if result["status"] == "held":
                        held_as = result.get("heldAs", "version")
                        held.append((key, item.attachments, held_as))
                        report.conflicts += held_as == "conflict"
                    elif result["status"] == "needsBlobs":
                        needs_blobs.append(item)
                    else:
                        message = result.get("message") or "refused"
                        s.ledger.refuse(key, message)
                        report.refused.append((item, message))
                        failed.append(item)
                report.confirmed_now += s.ledger.confirm(held)
                bar.update(len(part))
    return failed, needs_blobs


def local_lines(mapping: dict[str, int], items: Sequence[HubItem]) -> list[str]:
    return [
        wire.holding_line(mapping[i.project_name], i.xml_form_id, i.instance_id, i.sha256, i.attachments)
        for i in items
        if i.project_name in mapping
    ]


def _statement(s: Session, mapping: dict[str, int], items: Sequence[HubItem], report: PushReport) -> None:
    signed = s.client.get("/v1/sync/statement")
    pinned = s.ledger.pinned()
    key = pinned["signingKey"] if pinned else signed["publicKey"]
    verified = keys.verify_signature(key, signed["signature"], wire.canonical_json(signed["statement"]))
    if not verified:
        raise SyncError("central's completeness statement does not carry a valid signature", ExitCode.ERROR)
    matches = signed["statement"]["digest"] == wire.holdings_digest(local_lines(mapping, items))
    s.ledger.save_statement(signed, verified, matches)
    report.statement, report.verified, report.complete = signed, verified, matches


def describe(report: PushReport) -> str:
    lines = [
        f"hub {report.hub}: {report.held_at_hub} submission versions held here",
        f"  confirmed at central before this run: {report.already_confirmed}; "
        f"confirmed now: {report.confirmed_now}"
        f" (of them kept as conflicts for review: {report.conflicts})",
        f"  attachments uploaded: {report.blobs_uploaded} ({report.blob_bytes} bytes)",
    ]
    for name, count in sorted(report.unmapped.items()):
        lines.append(f"  not sent: {count} from project {name!r}, which this hub may not push to at central")
    for item, message in report.refused[:20]:
        lines.append(f"  refused by central: {item.xml_form_id} {item.instance_id}: {message}")
    if len(report.refused) > 20:
        lines.append(f"  ... and {len(report.refused) - 20} more refused")
    if report.statement:
        st = report.statement["statement"]
        state = "COMPLETE" if report.complete else "NOT complete"
        lines.append(
            f"  central's signed statement: {st['total']} held for hub {st['hub']} "
            f"({st['versions']} versions, {st['conflicts']} conflicts, {st['attachments']} attachments), "
            f"digest {st['digest'][:16]}…, signature valid — {state}"
        )
    return "\n".join(lines)


def as_json(report: PushReport) -> str:
    return json.dumps(
        {
            "hub": report.hub,
            "heldAtHub": report.held_at_hub,
            "alreadyConfirmed": report.already_confirmed,
            "confirmedNow": report.confirmed_now,
            "conflicts": report.conflicts,
            "blobsUploaded": report.blobs_uploaded,
            "refused": [
                {"formId": i.xml_form_id, "instanceId": i.instance_id, "message": m}
                for i, m in report.refused
            ],
            "unmapped": report.unmapped,
            "complete": report.complete,
            "statement": report.statement,
        },
        indent=2,
    )


__all__ = ["Key", "PushReport", "push", "upload_blob"]
