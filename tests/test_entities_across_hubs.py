"""The mission's flow in the field, with the real forms of ``forms/`` and the real ``sarhad-sync``:
a concern is recorded at a hub with no link to central; a follow-up on another tablet at that hub
reads it from the hub's ``concerns.csv`` and moves it forward; the hub pushes; an action plan made at
central addresses it; ``pull-forms`` brings central's state back to the hub. Central, the hub and the
list files agree, and the versions and the audit log tell the whole story. Then two hubs update the
same concern before either syncs: central keeps both versions and flags the conflict."""

from __future__ import annotations

import csv
import io
import uuid as uuidlib
from pathlib import Path

import openpyxl
from sqlalchemy import select

from server.config import settings
from server.entities.attachment import list_file
from server.forms import publish, source_from_xlsform
from server.models import AuditEvent, Entity, EntityList, EntityVersion, Project
from tests.collect_emulator import CollectEmulator, Instance
from tests.conftest import FORMS_DIR, LiveServer, RunCli, serve_in_thread
from tests.openrosa_setup import key_url, make_device
from tests.test_sync_support import Store, run_sync, sqlite_env, sync_env

PROJECT = "Panj pilot"
FLOW_FORMS = ("safety_concerns", "action_plan", "follow_up")


def _publish_mission_forms(store: Store, project_id: int) -> None:
    media = {p.name: p.read_bytes() for p in FORMS_DIR.glob("*.csv")}
    for name in FLOW_FORMS:
        source = source_from_xlsform(
            (FORMS_DIR / f"{name}.xlsx").read_bytes(), settings(store.app), filename=f"{name}.xlsx"
        )
        with store.app.app_context(), store.database.write() as w:
            project = w.session.get(Project, project_id)
            assert project is not None
            wanted = {n: d for n, d in media.items() if n in source.info.media_names}
            publish(w, project, source, wanted)


def _version(form_id: str) -> str:
    return {"safety_concerns": "2026120502", "action_plan": "2026120501", "follow_up": "2026120501"}[form_id]


def _instance(form_id: str, body: str) -> tuple[str, bytes]:
    instance_id = f"uuid:{uuidlib.uuid4()}"
    xml = (
        f'<data id="{form_id}" version="{_version(form_id)}">{body}'
        f"<meta><instanceID>{instance_id}</instanceID></meta></data>"
    )
    return instance_id, xml.encode()


def concern(uuid: str) -> tuple[str, bytes]:
    """A consented safety concern as Collect fills it (only what the entity reads, and the consent)."""
    return _instance(
        "safety_concerns",
        "<today>2026-12-05</today><consent>yes</consent><report><place><region>khatlon</region>"
        "<district>panj</district><jamoat>panj_panj</jamoat></place><concern><category>theft</category>"
        "<severity>medium</severity></concern><concern_status>open</concern_status>"
        "<reported_on>2026-12-05</reported_on></report>"
        f'<meta><entity dataset="concerns" create="1" id="{uuid}"><label>panj · theft · 2026-12-05</label>'
        "</entity></meta>",
    )


def follow_up(uuid: str, progress: str, base: int, branch: str) -> tuple[str, bytes]:
    return _instance(
        "follow_up",
        "<region>khatlon</region><district>panj</district><visit_date>2026-12-06</visit_date>"
        f"<visit_of>concern</visit_of><concern_visit><concern>{uuid}</concern>"
        f"<concern_progress>{progress}</concern_progress><concern_last_visit>2026-12-06</concern_last_visit>"
        f'<meta><entity dataset="concerns" update="1" baseVersion="{base}" trunkVersion="{base}" '
        f'branchId="{branch}" id="{uuid}"/></meta></concern_visit><notes></notes>',
    )


def action_plan(concern_uuid: str, base: int, plan_uuid: str) -> tuple[str, bytes]:
    return _instance(
        "action_plan",
        "<today>2026-12-07</today><region>khatlon</region><district>panj</district>"
        f"<community>panj_panj</community><cppt_number>3</cppt_number><addressed><concern>{concern_uuid}</concern>"
        "<concern_in_plan>in_plan</concern_in_plan>"
        f'<meta><entity dataset="concerns" update="1" baseVersion="{base}" trunkVersion="{base}" '
        f'branchId="{uuidlib.uuid4()}" id="{concern_uuid}"/></meta></addressed>'
        "<actions><action_type>lighting</action_type><action_what>Lamps by the school</action_what>"
        "<responsible>local_government</responsible><due_date>2027-01-15</due_date>"
        "<grant_amount>1200</grant_amount></actions><grant_total>1200</grant_total>"
        "<action_count>1</action_count><concern_count>1</concern_count><plan_progress>planned</plan_progress>"
        "<plan_date>2026-12-07</plan_date>"
        f'<meta><entity dataset="action_plans" create="1" id="{plan_uuid}">'
        "<label>CPPT 3 · panj_panj · 2026-12-07</label></entity></meta>",
    )


def _entity(store: Store, uuid: str) -> tuple[int, str, str | None]:
    with store.database.read() as session:
        found = session.scalar(select(Entity).where(Entity.uuid == uuid))
        assert found is not None, f"{uuid} is not in this store"
        return found.version, found.data.get("status") or found.data["progress"], found.conflict


def _csv_status(data: bytes, uuid: str) -> tuple[str, str]:
    rows = {r["name"]: r for r in csv.DictReader(io.StringIO(data.decode()))}
    return rows[uuid]["__version"], rows[uuid]["status"]


def _list_csv(store: Store, name: str) -> bytes:
    with store.database.read() as session:
        entity_list = session.scalar(select(EntityList).where(EntityList.name == name))
        assert entity_list is not None
        return list_file(session, entity_list.id).data


def _submit(collect: CollectEmulator, form_id: str, made: tuple[str, bytes]) -> str:
    instance_id, xml = made
    sent = collect.submit(Instance(form_id, instance_id, xml))
    assert sent.status == 201, sent.message
    return instance_id


def test_a_concern_from_a_hub_to_an_action_plan_and_back(
    central: tuple[Store, LiveServer], tmp_path: Path, run_cli: RunCli
) -> None:
    store, live = central
    c_project = store.project(PROJECT)
    _publish_mission_forms(store, c_project)
    token = store.hub_token("Panj hub", c_project)
    hub = Store(sqlite_env(tmp_path / "hub"))
    env = sync_env(live.url, token, hub.env.data_dir)
    pulled = run_sync(env, "pull-forms")
    assert pulled.returncode == 0, pulled.stderr + pulled.stdout
    h_project = hub.project(PROJECT)
    hub_live, stop_hub = serve_in_thread(hub.app)
    try:
        # The link is down: two tablets work with the hub alone.
        tablets = []
        for _ in range(2):
            _, device_token = make_device(hub.app, h_project)
            tablets.append(CollectEmulator(key_url(hub_live.url, device_token, h_project)))
        uuid = str(uuidlib.uuid4())
        reported = _submit(tablets[0], "safety_concerns", concern(uuid))
        # The second tablet gets blank forms: the hub's concerns.csv already lists the new concern.
        got = tablets[1].download_forms(["follow_up"])["follow_up"].media["concerns.csv"]
        assert _csv_status(got, uuid) == ("1", "open")
        visited = _submit(tablets[1], "follow_up", follow_up(uuid, "in_progress", 1, str(uuidlib.uuid4())))
        assert _entity(hub, uuid)[:2] == (2, "in_progress")

        pushed = run_sync(env, "push")
        assert pushed.returncode == 0, pushed.stderr + pushed.stdout
        assert _entity(store, uuid) == (2, "in_progress", None)

        # At central, the partnership team's plan takes up the concern.
        plan_uuid = str(uuidlib.uuid4())
        plan_id, plan_xml = action_plan(uuid, 2, plan_uuid)
        assert store.submit(c_project, plan_xml) == "created"
        assert _entity(store, uuid) == (3, "in_plan", None)
        assert _entity(store, plan_uuid)[:2] == (1, "planned")

        again = run_sync(env, "pull-forms")
        assert again.returncode == 0, again.stderr + again.stdout
        assert "entities brought up to date from central: 2" in again.stdout
        assert _entity(hub, uuid) == (3, "in_plan", None)
        assert _list_csv(hub, "concerns") == _list_csv(store, "concerns")
        # The analysts' export says the same.
        exported = tmp_path / "concerns.xlsx"
        run_cli(store.env, "entities", "export", "concerns", "--project", PROJECT, "-o", str(exported))
        sheet = openpyxl.load_workbook(exported).active
        assert sheet is not None
        lines = [[c.value for c in line] for line in sheet.iter_rows()]
        status_at = lines[0].index("status")
        assert [line[status_at] for line in lines[1:]] == ["in_plan"]
        assert "phone" not in lines[0] and "description" not in lines[0]
        refreshed = tablets[1].download_forms(["follow_up"])["follow_up"].media
        assert _csv_status(refreshed["concerns.csv"], uuid) == ("3", "in_plan")
        assert "action_plans.csv" in refreshed

        with store.database.read() as session:
            versions = session.scalars(
                select(EntityVersion).join(Entity).where(Entity.uuid == uuid).order_by(EntityVersion.version)
            ).all()
            assert [v.source["submission"]["instanceId"] for v in versions] == [reported, visited, plan_id]
            assert [v.data["status"] for v in versions] == ["open", "in_progress", "in_plan"]
            actions = session.scalars(
                select(AuditEvent.action).where(AuditEvent.target_id == uuid).order_by(AuditEvent.id)
            ).all()
            assert actions == ["entity.create", "entity.update.version", "entity.update.version"]

        # Two hubs update the concern before either syncs: both versions are kept, the conflict shown.
        other_dir = tmp_path / "hub2"
        other = Store(sqlite_env(other_dir))
        other_env = sync_env(live.url, store.hub_token("Panj hub 2", c_project), other_dir)
        assert run_sync(other_env, "pull-forms").returncode == 0
        other_project = other.project(PROJECT)
        hub.submit(h_project, follow_up(uuid, "resolved", 3, str(uuidlib.uuid4()))[1])
        other.submit(other_project, follow_up(uuid, "not_resolved", 3, str(uuidlib.uuid4()))[1])
        assert run_sync(env, "push").returncode == 0
        assert run_sync(other_env, "push").returncode == 0
        version, status, conflict = _entity(store, uuid)
        assert (version, status, conflict) == (5, "not_resolved", "hard")
        with store.database.read() as session:
            kept = session.scalars(
                select(EntityVersion).join(Entity).where(Entity.uuid == uuid).order_by(EntityVersion.version)
            ).all()
            assert [v.data["status"] for v in kept][-2:] == ["resolved", "not_resolved"]
            assert kept[-1].base_version == 3 and kept[-1].conflicting_properties == ["status"]
        assert run_sync(env, "pull-forms").returncode == 0
        assert _entity(hub, uuid) == (5, "not_resolved", "hard")
        # The donor report counts concerns by district and status, one concern is hidden as [c].
        report = tmp_path / "report.csv"
        done = run_cli(
            store.env, "entities", "report", "concerns", "--project", PROJECT, "--rows", "district",
            "--cols", "status", "-o", str(report),
        )  # fmt: skip
        assert "1 entities" in done.stdout
        table = list(csv.reader(io.StringIO(report.read_text())))
        assert table[0] == ["district", "not_resolved", "Total"]
        assert table[1] == ["panj", "[c]", "[c]"] and table[2] == ["Total", "[c]", "[c]"]
        with store.database.read() as session:
            assert session.scalars(
                select(AuditEvent.action).where(AuditEvent.target_type == "dataset")
            ).all()[-2:] == ["dataset.export", "dataset.report"]
    finally:
        stop_hub()


def test_a_hub_with_no_link_gets_the_lists_back_with_its_bundle_receipt(
    central: tuple[Store, LiveServer], tmp_path: Path
) -> None:
    from server.sync import keys

    store, live = central
    c_project = store.project(PROJECT)
    _publish_mission_forms(store, c_project)
    known = str(uuidlib.uuid4())
    store.submit(c_project, concern(known)[1])
    token = store.hub_token("Shughnon hub", c_project)
    hub = Store(sqlite_env(tmp_path / "hub"))
    central_keys = {
        "SARHAD_SYNC_CENTRAL_BUNDLE_KEY": keys.raw_public_b64(keys.bundle_key(store.env.data_dir)),
        "SARHAD_SYNC_CENTRAL_SIGNING_KEY": keys.raw_public_b64(keys.signing_key(store.env.data_dir)),
    }
    online = sync_env(live.url, token, hub.env.data_dir, **central_keys)
    offline = {**online, "SARHAD_SYNC_CENTRAL_URL": "https://central.invalid"}
    assert run_sync(online, "pull-forms").returncode == 0  # once, when the hub was set up
    assert _entity(hub, known) == (1, "open", None)
    # Then the link is gone. Central moves the known concern on; the hub records a new one.
    store.submit(c_project, follow_up(known, "resolved", 1, str(uuidlib.uuid4()))[1])
    mine = str(uuidlib.uuid4())
    hub.submit(hub.project(PROJECT), concern(mine)[1])
    bundle = tmp_path / "usb.sarhad"
    assert run_sync(offline, "bundle", "export", str(bundle)).returncode == 0
    assert run_sync(online, "bundle", "import", str(bundle)).returncode == 0  # at the district office
    read = run_sync(offline, "bundle", "receipt", str(bundle) + ".receipt.json")
    assert read.returncode == 0, read.stderr + read.stdout
    assert "entities brought up to date from central: 1" in read.stdout
    assert _entity(hub, known) == (2, "resolved", None)
    assert _entity(store, mine) == _entity(hub, mine) == (1, "open", None)
