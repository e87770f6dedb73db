"""``sarhad-sync push`` and ``status`` end to end: a hub store and a central server over real HTTP."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from sqlalchemy import func, select

from server.models import AuditEvent, Blob, SubmissionVersion, SyncReceipt
from tests.conftest import LiveServer
from tests.test_sync_support import (
    FORM_ID,
    Store,
    form_xml,
    instance_xml,
    new_id,
    photo,
    run_sync,
    sqlite_env,
    sync_env,
)


def test_push_sends_what_central_lacks_and_proves_it(
    central: tuple[Store, LiveServer], tmp_path: Path
) -> None:
    central_store, live = central
    hub = Store(sqlite_env(tmp_path / "hub"))
    c_project, h_project = central_store.project("Khorog"), hub.project("Khorog")
    for store, project in ((central_store, c_project), (hub, h_project)):
        store.publish(project, form_xml())
    token = central_store.hub_token("Khorog-2", c_project)

    pictures = {n: photo(n, 70_000) for n in range(3)}
    first, edited, clash, both = new_id(), new_id(), new_id(), new_id()
    assert (
        hub.submit(h_project, instance_xml(first, "Ishkoshim", "p0.jpg"), {"p0.jpg": pictures[0]})
        == "created"
    )
    hub.submit(
        h_project,
        instance_xml(edited, "Roshtqala", "p1.jpg"),
        {"p1.jpg": pictures[1]},
        device="collect:tablet0002",
    )
    hub.submit(
        h_project, instance_xml(new_id(), "Roshtqala 2", "p1.jpg", deprecated=edited), {"p1.jpg": pictures[1]}
    )
    hub.submit(h_project, instance_xml(clash, "Vanj"))
    assert hub.submit(h_project, instance_xml(clash, "Vanj (typed again)")) == "conflict"  # kept at the hub
    hub.submit(h_project, instance_xml(both, "Darvoz", "p2.jpg"), {"p2.jpg": pictures[2]})
    # Central already has one of them (a tablet sent it there too) and disagrees about another.
    central_store.submit(c_project, instance_xml(both, "Darvoz", "p2.jpg"), {"p2.jpg": pictures[2]})
    other = new_id()
    hub.submit(h_project, instance_xml(other, "Murghob"))
    central_store.submit(c_project, instance_xml(other, "Murghob (other tablet)"))

    env = sync_env(live.url, token, hub.env.data_dir, SARHAD_SYNC_CHUNK_BYTES="32768")
    pushed = run_sync(env, "push")
    assert pushed.returncode == 0, pushed.stderr + pushed.stdout
    assert "COMPLETE" in pushed.stdout and "signature valid" in pushed.stdout

    hub_has = {h[1:] for h in hub.holdings()}
    central_has = {h[1:] for h in central_store.holdings()}
    assert hub_has <= central_has
    # What central already held is not sent again, and the photo it had was never uploaded twice.
    with central_store.database.read() as session:
        rows = session.execute(select(SubmissionVersion.instance_id, SubmissionVersion.source))
        sources = {instance_id: source for instance_id, source in rows}
        assert sources[both] == "device" and sources[first] == "hub"
        received = session.scalar(
            select(SubmissionVersion.received_at).where(SubmissionVersion.instance_id == first)
        )
    with hub.database.read() as hub_session:
        at_hub = hub_session.scalar(
            select(SubmissionVersion.received_at).where(SubmissionVersion.instance_id == first)
        )
    assert received == at_hub  # when the tablet's submission reached the hub, not when it was synced
    with central_store.database.read() as session:
        assert session.scalar(select(func.count()).select_from(Blob)) == 3
        receipts = session.scalar(select(func.count()).select_from(SyncReceipt))
        assert receipts == len(hub_has)
        batch_audit = session.scalars(
            select(AuditEvent.details).where(AuditEvent.action == "sync.batch")
        ).all()
        assert batch_audit and all(d["hub"] == "Khorog-2" for d in batch_audit)
    # The hub's own conflict and the one central found are both kept there, for a coordinator.
    kinds = {(h[0], h[2]) for h in central_store.holdings()}
    assert ("conflict", clash) in kinds and ("conflict", other) in kinds

    status = run_sync(env, "status", "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    last = report["total"].pop("lastConfirmed")
    assert last and last.startswith(str(dt.date.today().year))
    assert report["total"] == {
        "heldAtHub": len(hub_has),
        "confirmedAtCentral": len(hub_has),
        "pending": 0,
        "conflicts": 2,
        "refused": 0,
    }
    text = run_sync(env, "status").stdout
    assert "per form:" in text and "per device:" in text and "collect:tablet0002" in text
    assert "signature valid" in text and "matches everything this hub held then" in text
    assert report["statement"]["verified"] and report["statement"]["matchesHub"]
    assert {d["deviceId"] for d in report["devices"]} == {"collect:tablet0001", "collect:tablet0002"}
    assert [f["formId"] for f in report["forms"]] == [FORM_ID]

    # A second push has nothing to send: no inventory either, the ledger knows.
    again = run_sync(env, "push", "--json")
    assert again.returncode == 0
    second = json.loads(again.stdout)
    assert second["alreadyConfirmed"] == len(hub_has) and second["confirmedNow"] == 0
    assert second["blobsUploaded"] == 0

    # A late submission at the hub: only it goes.
    late = new_id()
    hub.submit(h_project, instance_xml(late, "Shugnan"))
    third = json.loads(run_sync(env, "push", "--json").stdout)
    assert third["confirmedNow"] == 1 and third["complete"]


def test_push_errors_are_plain_with_exit_codes(central: tuple[Store, LiveServer], tmp_path: Path) -> None:
    central_store, live = central
    hub = Store(sqlite_env(tmp_path / "hub"))
    c_project, h_project = central_store.project("Rasht"), hub.project("Rasht")
    hub.publish(h_project, form_xml())
    hub.publish(h_project, form_xml("not_at_central"))
    token = central_store.hub_token("Rasht-1", c_project)
    central_store.publish(c_project, form_xml())
    hub.submit(h_project, instance_xml(new_id(), "Gharm"))
    hub.submit(h_project, instance_xml(new_id(), "Gharm", form_id="not_at_central"))

    env = sync_env(live.url, token, hub.env.data_dir)
    partial = run_sync(env, "push", in_process=False)  # the installed command's exit code
    assert partial.returncode == 5, partial.stdout + partial.stderr
    assert "refused by central: not_at_central" in partial.stdout and "NOT complete" in partial.stdout
    status = json.loads(run_sync(env, "status", "--json").stdout)
    assert status["total"]["refused"] == 1 and status["total"]["pending"] == 1

    wrong = run_sync({**env, "SARHAD_SYNC_TOKEN": "hub_wrong"}, "push")
    assert wrong.returncode == 4 and "central refused the hub's token" in wrong.stderr
    assert "ask the administrator to re-issue it" in wrong.stderr

    unreachable = run_sync(
        {**env, "SARHAD_SYNC_CENTRAL_URL": "http://127.0.0.1:9", "SARHAD_SYNC_RETRIES": "1",
         "SARHAD_SYNC_BACKOFF_SECONDS": "0.01"},
        "push",
    )  # fmt: skip
    assert unreachable.returncode == 3 and "could not reach central" in unreachable.stderr

    missing = run_sync({k: v for k, v in env.items() if k != "SARHAD_SYNC_TOKEN"}, "push")
    assert missing.returncode == 2 and "SARHAD_SYNC_TOKEN" in missing.stderr
    nothing = run_sync({**env, "SARHAD_SYNC_HUB_DATA_DIR": str(tmp_path / "nowhere")}, "push")
    assert nothing.returncode == 2 and "does not look like a Sarhad data folder" in nothing.stderr
