"""Entities made and changed by submissions, over real HTTP as Collect sends them: publishing a form
with an ``entities`` sheet makes its list, a submission creates its entity in the same transaction, a
form reading ``concerns.csv`` gets the list in its manifest (the hash follows the list), offline
updates arriving out of order are held and end in the right state, crossing updates are kept and
flagged, approval-required lists wait for approval, and personal questions never reach a list."""

from __future__ import annotations

import csv
import hashlib
import io
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path

import openpyxl
import pytest
import requests
from sqlalchemy import select

from server.errors import Problem
from server.models import AuditEvent, Entity, EntityBacklog, EntityList, EntityVersion
from tests.collect_emulator import CollectEmulator, Instance
from tests.conftest import LiveServer
from tests.openrosa_setup import key_url, make_device, make_project, publish_xlsform

ENT = "http://www.opendatakit.org/xforms/entities"


def _xlsform(path: Path, survey: list[list[str]], entities: list[list[str]], form_id: str) -> Path:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "survey"
    for row in survey:
        sheet.append(row)
    ents = book.create_sheet("entities")
    for row in entities:
        ents.append(row)
    choices = book.create_sheet("choices")
    for row in [["list_name", "name", "label"], ["st", "open", "Open"], ["st", "resolved", "Resolved"]]:
        choices.append(row)
    settings = book.create_sheet("settings")
    settings.append(["form_id", "version", "namespaces"])
    settings.append([form_id, "1", 'sarhad="https://sarhad.tj/xforms"'])
    book.save(path)
    return path


@dataclass
class Field:
    live: LiveServer
    project: int
    collect: CollectEmulator
    tmp: Path

    def submit(self, form_id: str, body: str) -> str:
        instance_id = f"uuid:{uuidlib.uuid4()}"
        xml = (
            f'<data id="{form_id}" version="1">{body}<meta><instanceID>{instance_id}</instanceID>'
            "</meta></data>"
        )
        sent = self.collect.submit(Instance(form_id, instance_id, xml.encode()))
        assert sent.status == 201, sent.message
        return instance_id

    def create(self, district: str, *, name: str | None = None) -> str:
        uuid = name or str(uuidlib.uuid4())
        self.submit(
            "concern_new",
            f"<district>{district}</district><status>open</status>"
            f'<meta><entity dataset="concerns" create="1" id="{uuid}"><label>{district} concern</label>'
            "</entity></meta>",
        )
        return uuid

    def update(self, uuid: str, status: str, base: int, *, trunk: str = "", branch: str = "") -> str:
        return self.submit(
            "concern_visit",
            f"<concern>{uuid}</concern><status>{status}</status>"
            f'<meta><entity dataset="concerns" update="1" baseVersion="{base}" trunkVersion="{trunk}" '
            f'branchId="{branch}" id="{uuid}"/></meta>',
        )

    def entity(self, uuid: str) -> Entity:
        with self.live.database.read() as session:
            found = session.scalar(select(Entity).where(Entity.uuid == uuid))
            assert found is not None
            session.expunge(found)
            return found

    def versions(self, uuid: str) -> list[EntityVersion]:
        with self.live.database.read() as session:
            rows = session.scalars(
                select(EntityVersion).join(Entity).where(Entity.uuid == uuid).order_by(EntityVersion.version)
            ).all()
            for row in rows:
                session.expunge(row)
            return list(rows)

    def manifest(self) -> dict[str, str]:
        listed = {f.form_id: f for f in self.collect.form_list()}
        url = listed["concern_visit"].manifest_url
        assert url is not None
        return {m.filename: m.hash for m in self.collect.manifest(url)}


# The submission XML above is written by hand exactly as Collect fills these forms: the <meta> of the
# entity comes before the instance's own <meta> (pyxform puts them in one block; two are the same).
@pytest.fixture(scope="module")
def field(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Field:
    tmp = tmp_path_factory.mktemp("entity-forms")
    app = live_server.app
    project = make_project(live_server.database, "Entities from submissions")
    publish_xlsform(
        app,
        project,
        _xlsform(
            tmp / "concern_new.xlsx",
            [
                ["type", "name", "label", "save_to"],
                ["text", "district", "District", "district"],
                ["select_one st", "status", "Status", "status"],
            ],
            [["list_name", "label"], ["concerns", "concat(${district}, ' concern')"]],
            "concern_new",
        ),
        media={},
    )
    publish_xlsform(
        app,
        project,
        _xlsform(
            tmp / "concern_visit.xlsx",
            [
                ["type", "name", "label", "save_to"],
                ["select_one_from_file concerns.csv", "concern", "Concern", ""],
                ["select_one st", "status", "Status", "status"],
            ],
            [["list_name", "entity_id"], ["concerns", "${concern}"]],
            "concern_visit",
        ),
        media={},
    )
    _, token = make_device(app, project)
    return Field(live_server, project, CollectEmulator(key_url(live_server.url, token, project)), tmp)


def test_publishing_makes_the_list_and_a_submission_its_entity(field: Field) -> None:
    with field.live.database.read() as session:
        entity_list = session.scalar(select(EntityList).where(EntityList.project_id == field.project))
        assert entity_list is not None and entity_list.name == "concerns"
        assert [p.name for p in entity_list.properties] == ["district", "status"]
    uuid = field.create("Vakhsh")
    entity = field.entity(uuid)
    assert (entity.label, entity.data, entity.version) == (
        "Vakhsh concern",
        {"district": "Vakhsh", "status": "open"},
        1,
    )
    (first,) = field.versions(uuid)
    assert first.submission_version_id is not None
    assert first.source["submission"]["xmlFormId"] == "concern_new"
    with field.live.database.read() as session:
        audit = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "entity.create", AuditEvent.target_id == uuid)
        ).one()
        assert audit.actor_app_user_id is not None
        assert audit.details["source"]["submission"]["instanceId"].startswith("uuid:")


def test_the_list_is_a_form_attachment_whose_hash_follows_it(field: Field) -> None:
    uuid = field.create("Shahrinav")
    before = field.manifest()
    assert "concerns.csv" in before
    # Collect checks every file against the manifest's md5 (the emulator raises when it differs).
    body = field.collect.download_forms(["concern_visit"])["concern_visit"].media["concerns.csv"]
    rows = list(csv.reader(io.StringIO(body.decode())))
    assert rows[0] == ["name", "label", "__version", "district", "status"]
    assert [uuid, "Shahrinav concern", "1", "Shahrinav", "open"] in rows
    assert before["concerns.csv"] == "md5:" + hashlib.md5(body).hexdigest()
    field.update(uuid, "resolved", 1)
    after = field.manifest()
    assert after["concerns.csv"] != before["concerns.csv"]
    assert field.entity(uuid).data["status"] == "resolved"


def test_offline_updates_out_of_order_are_held_then_applied_in_order(field: Field) -> None:
    uuid = field.create("Panj")
    branch = str(uuidlib.uuid4())
    # The tablet made two updates offline on version 1; the second arrives first.
    field.update(uuid, "resolved", 2, trunk="1", branch=branch)
    assert field.entity(uuid).version == 1
    with field.live.database.read() as session:
        assert session.scalars(select(EntityBacklog).where(EntityBacklog.entity_uuid == uuid)).all()
    field.update(uuid, "open", 1, trunk="1", branch=branch)
    entity = field.entity(uuid)
    assert (entity.version, entity.data["status"], entity.conflict) == (3, "resolved", None)
    assert [v.branch_base_version for v in field.versions(uuid)] == [None, 1, 2]
    with field.live.database.read() as session:
        assert not session.scalars(select(EntityBacklog).where(EntityBacklog.entity_uuid == uuid)).all()


def test_updates_made_apart_on_one_version_are_both_kept_and_flagged(field: Field) -> None:
    uuid = field.create("Farkhor")
    field.update(uuid, "resolved", 1, trunk="1", branch=str(uuidlib.uuid4()))
    field.update(uuid, "open", 1, trunk="1", branch=str(uuidlib.uuid4()))
    entity = field.entity(uuid)
    assert (entity.version, entity.conflict, entity.data["status"]) == (3, "hard", "open")
    versions = field.versions(uuid)
    assert [v.data["status"] for v in versions] == ["open", "resolved", "open"]
    assert versions[2].base_version == 1 and versions[2].conflicting_properties == ["status"]


def test_an_update_of_an_unknown_entity_keeps_the_submission_and_audits_the_error(field: Field) -> None:
    ghost = str(uuidlib.uuid4())
    instance_id = field.update(ghost, "resolved", 1)
    with field.live.database.read() as session:
        error = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "entity.error", AuditEvent.target_id == instance_id)
        ).one()
        assert error.details["problemCode"] == "404.8"


def test_approval_required_lists_wait_for_approval(field: Field, live_server: LiveServer) -> None:
    from server.models import Project
    from server.users import create_user

    with live_server.database.write() as w:
        project = w.session.get(Project, field.project)
        create_user(
            w.session, "approver@entities.example.org", "a long enough password", "coordinator", project
        )
    token = requests.post(
        f"{live_server.url}/v1/sessions",
        json={"email": "approver@entities.example.org", "password": "a long enough password"},
        timeout=10,
    ).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    dataset = f"{live_server.url}/v1/projects/{field.project}/datasets/concerns"
    changed = requests.patch(dataset, json={"approvalRequired": True}, headers=headers, timeout=10)
    assert changed.status_code == 200 and changed.json()["approvalRequired"] is True

    def waiting(district: str) -> tuple[str, str]:
        uuid = str(uuidlib.uuid4())
        instance_id = field.submit(
            "concern_new",
            f"<district>{district}</district><status>open</status>"
            f'<meta><entity dataset="concerns" create="1" id="{uuid}"><label>{district} concern</label>'
            "</entity></meta>",
        )
        with live_server.database.read() as session:
            assert session.scalar(select(Entity).where(Entity.uuid == uuid)) is None
        return uuid, instance_id

    uuid, instance_id = waiting("Hamadoni")
    reviewed = requests.patch(
        f"{live_server.url}/v1/projects/{field.project}/forms/concern_new/submissions/{instance_id}",
        json={"reviewState": "approved"},
        headers=headers,
        timeout=10,
    )
    assert reviewed.status_code == 200, reviewed.text
    assert field.entity(uuid).label == "Hamadoni concern"
    # Approval no longer required: ?convert=true creates what was still waiting.
    later, _ = waiting("Khovaling")
    back = requests.patch(
        f"{dataset}?convert=true", json={"approvalRequired": False}, headers=headers, timeout=10
    )
    assert back.status_code == 200 and back.json()["approvalRequired"] is False
    assert field.entity(later).label == "Khovaling concern"
    assert [v.version for v in field.versions(uuid)] == [1]  # the approved one was not made twice


def test_a_personal_question_saved_to_a_list_is_refused(field: Field) -> None:
    path = _xlsform(
        field.tmp / "leaky.xlsx",
        [
            ["type", "name", "label", "save_to", "bind::sarhad:sensitivity"],
            ["text", "district", "District", "district", ""],
            ["text", "phone", "Phone", "phone", "personal"],
        ],
        [["list_name", "label"], ["concerns", "${district}"]],
        "leaky",
    )
    with pytest.raises(Problem) as refused:
        publish_xlsform(field.live.app, field.project, path, media={})
    assert refused.value.code == "400.25", refused.value.message
    assert "'phone' is tagged personal" in refused.value.message


def test_a_held_update_whose_base_never_comes_can_be_applied_flagged(field: Field) -> None:
    from server.entities.from_submissions import force_held

    uuid = field.create("Jayhun")
    field.update(uuid, "resolved", 3, trunk="1", branch=str(uuidlib.uuid4()))  # its versions 2 never came
    assert field.entity(uuid).version == 1
    with field.live.database.write() as w:
        entity_list = w.session.scalar(select(EntityList).where(EntityList.project_id == field.project))
        assert entity_list is not None
        applied, left = force_held(w.session, entity_list, None)
    assert (applied, left) == (1, 0)
    entity = field.entity(uuid)
    assert (entity.version, entity.data["status"], entity.conflict) == (2, "resolved", "soft")
    assert field.versions(uuid)[-1].source["forced"] is True


def test_one_action_plan_moves_every_concern_it_addresses(field: Field) -> None:
    """Entities from repeats (spec 2025.1): one repeat row per addressed concern, each its own update,
    and the plan itself created in another list, all from one submission."""
    publish_xlsform(
        field.live.app, field.project, Path(__file__).parent.parent / "forms" / "action_plan.xlsx"
    )
    first, second = field.create("Dusti"), field.create("Dusti")
    rows = "".join(
        f"<addressed><concern>{uuid}</concern><concern_in_plan>in_plan</concern_in_plan>"
        f'<meta><entity dataset="concerns" update="1" baseVersion="1" trunkVersion="1" '
        f'branchId="{uuidlib.uuid4()}" id="{uuid}"/></meta></addressed>'
        for uuid in (first, second)
    )
    plan = str(uuidlib.uuid4())
    instance_id = f"uuid:{uuidlib.uuid4()}"
    xml = (
        '<data id="action_plan" version="2026120501"><district>dusti</district><cppt_number>1</cppt_number>'
        f"{rows}<plan_progress>planned</plan_progress><concern_count>2</concern_count>"
        f'<meta><entity dataset="action_plans" create="1" id="{plan}"><label>CPPT 1 · dusti</label>'
        f"</entity><instanceID>{instance_id}</instanceID></meta></data>"
    )
    sent = field.collect.submit(Instance("action_plan", instance_id, xml.encode()))
    assert sent.status == 201, sent.message
    assert [field.entity(u).data["status"] for u in (first, second)] == ["in_plan", "in_plan"]
    made = field.entity(plan)
    assert (made.label, made.data["progress"], made.data["concerns"]) == ("CPPT 1 · dusti", "planned", "2")


def test_analysts_download_the_list_and_a_suppressed_report(field: Field) -> None:
    from server.models import Project
    from server.users import create_user

    with field.live.database.write() as w:
        project = w.session.get(Project, field.project)
        create_user(
            w.session, "analyst@entities-flow.example.org", "a long enough password", "analyst", project
        )
    token = requests.post(
        f"{field.live.url}/v1/sessions",
        json={"email": "analyst@entities-flow.example.org", "password": "a long enough password"},
        timeout=10,
    ).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    for _ in range(5):
        field.create("Isfara")
    base = f"{field.live.url}/v1/projects/{field.project}/datasets/concerns"
    sheet = requests.get(f"{base}/entities.xlsx", headers=headers, timeout=10)
    assert sheet.status_code == 200 and sheet.content[:2] == b"PK"
    book = openpyxl.load_workbook(io.BytesIO(sheet.content)).active
    assert book is not None
    header = [c.value for c in next(book.iter_rows())]
    assert header[:2] == ["name", "label"] and "status" in header and "__conflict" in header
    report = requests.get(f"{base}/report.csv?rows=district&cols=status", headers=headers, timeout=10)
    assert report.status_code == 200, report.text
    lines = {line[0]: line[1:] for line in csv.reader(io.StringIO(report.text)) if line and line[0] != "#"}
    assert lines["Isfara"][lines["district"].index("open")] == "5"  # five open concerns: shown
    assert "[c]" in report.text  # the districts with fewer are hidden
    unknown = requests.get(f"{base}/report.csv?rows=phone", headers=headers, timeout=10)
    assert unknown.status_code == 400
