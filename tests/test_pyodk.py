"""pyodk 1.3.0, unmodified, in a virtualenv of its own, against a real gunicorn server.

pyodk pins its own requests and pydantic, so it runs in a separate virtualenv created once
(``/tmp/sarhad-pyodk-venv-1.3.0``, or ``SARHAD_PYODK_VENV``) and reused across runs. The test is skipped,
saying why, only when that virtualenv cannot be created (no network to PyPI).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.datasets_fixtures import PASSWORD
from tests.test_submissions_api import instance, make_survey

PYODK_VERSION = "1.3.0"
VENV = Path(os.environ.get("SARHAD_PYODK_VENV", f"/tmp/sarhad-pyodk-venv-{PYODK_VERSION}"))


def _venv_python() -> Path:
    return VENV / "bin" / "python"


def _pyodk_works() -> bool:
    if not _venv_python().exists():
        return False
    probe = subprocess.run(
        [
            str(_venv_python()),
            "-c",
            f"from pyodk.__version__ import __version__ as v; assert v == {PYODK_VERSION!r}",
        ],
        capture_output=True,
        timeout=60,
    )
    return probe.returncode == 0


@pytest.fixture(scope="session")
def pyodk_python() -> Path:
    """The python of a virtualenv holding pyodk==1.3.0 (created under a lock, once)."""
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{VENV}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test workers wait for one creator
        if _pyodk_works():
            return _venv_python()
        building = VENV.with_name(VENV.name + ".building")
        shutil.rmtree(building, ignore_errors=True)
        shutil.rmtree(VENV, ignore_errors=True)
        try:
            subprocess.run(
                [sys.executable, "-m", "venv", str(building)], check=True, capture_output=True, timeout=120
            )
            install = subprocess.run(
                [str(building / "bin" / "python"), "-m", "pip", "install", "-q", f"pyodk=={PYODK_VERSION}"],
                capture_output=True,
                text=True,
                timeout=600,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            shutil.rmtree(building, ignore_errors=True)
            pytest.skip(f"cannot create a virtualenv for pyodk {PYODK_VERSION}: {exc}")
        if install.returncode != 0:
            shutil.rmtree(building, ignore_errors=True)
            reason = install.stderr.strip()[-500:]
            pytest.skip(f"cannot install pyodk=={PYODK_VERSION} from PyPI (no network?): {reason}")
        # Built aside and renamed, so that an interrupted build never looks finished. Only its
        # bin/python is used (a symlink that finds the venv by its location), so the move is safe.
        building.rename(VENV)
        assert _pyodk_works()
        return _venv_python()


SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from pyodk.client import Client
    from pyodk._endpoints.submission_attachments import SubmissionAttachmentService

    config, cache, work, create_xml = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4]
    out = {}
    with Client(config_path=config, cache_path=cache) as client:
        out["projects"] = [p.id for p in client.projects.list()]
        out["forms"] = [f.xmlFormId for f in client.forms.list()]
        out["submissions"] = sorted(s.instanceId for s in client.submissions.list(form_id="survey1"))
        one = client.submissions.get("uuid:s-1", form_id="survey1")
        out["one"] = [one.instanceId, one.submitterId, one.deviceId]
        out["page"] = client.submissions.get_table(
            form_id="survey1", filter="age gt 20 and __system/reviewState eq null",
            select="__id,age,grp/note", count=True, top=1,
        )
        out["skip"] = client.submissions.get_table(form_id="survey1", skip=1, top=1, select="__id")["value"]
        out["wkt"] = client.submissions.get_table(form_id="survey1", wkt=True, select="where")["value"]
        expanded = client.submissions.get_table(form_id="survey1", expand="*", top=1)
        out["expand"] = expanded["value"][0]["visit"]
        out["repeat"] = client.submissions.get_table(form_id="survey1", table_name="Submissions.visit.person")
        attachments = SubmissionAttachmentService(
            session=client.session, default_project_id=client.project_id
        )
        listed = attachments.list(form_id="survey1", instance_id="uuid:s-1")
        out["attachments"] = sorted((a.name, a.exists) for a in listed)
        client.submissions.review("uuid:s-2", "approved", form_id="survey1", comment="Checked by phone")
        client.submissions.add_comment("uuid:s-2", "Second look", form_id="survey1")
        out["reviewed"] = client.submissions.get("uuid:s-2", form_id="survey1").reviewState
        out["comments"] = [c.body for c in client.submissions.list_comments("uuid:s-2", form_id="survey1")]
        made = work / "p20.jpg"
        made.write_bytes(bytes(range(256)) * 200)
        created = client.submissions.create(
            create_xml, form_id="survey1", device_id="pyodk", attachments=[made]
        )
        out["created"] = [created.instanceId, [(a.name, a.exists) for a in created.attachments or []]]
        # The same file again (a retry): a success, nothing changes.
        out["uploaded"] = attachments.upload(made, form_id="survey1", instance_id="uuid:pyodk-20")
    # A second client reuses the cached token (pyodk checks it with GET /v1/users/current).
    with Client(config_path=config, cache_path=cache) as again:
        out["again"] = len(again.submissions.list(form_id="survey1"))
    print(json.dumps(out, default=str))
    """
)


def test_pyodk_end_to_end(pyodk_python: Path, server_process: Any, make_env: Any, tmp_path: Path) -> None:
    env = make_env()
    server = server_process(env)
    app = env.app()
    live = SimpleNamespace(url=server.url, app=app, database=app.extensions["sarhad.db"])
    survey = make_survey(live, "pyodk")
    config = tmp_path / "pyodk_config.toml"
    config.write_text(
        "[central]\n"
        f'base_url = "{server.url}"\n'
        f'username = "{survey.users["coordinator"].email}"\n'
        f'password = "{PASSWORD}"\n'
        f"default_project_id = {survey.project}\n"
    )
    script = tmp_path / "use_pyodk.py"
    script.write_text(SCRIPT)
    create_xml = instance(20, "Dilnoza", 22, photo="p20.jpg").replace("uuid:s-20", "uuid:pyodk-20")
    run = subprocess.run(
        [
            str(pyodk_python),
            str(script),
            str(config),
            str(tmp_path / "cache.toml"),
            str(tmp_path),
            create_xml,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if not k.startswith(("PYODK_", "VIRTUAL_ENV"))},
    )
    assert run.returncode == 0, f"pyodk failed:\n{run.stderr[-4000:]}"
    out = json.loads(run.stdout.strip().splitlines()[-1])

    assert out["projects"] == [survey.project]
    assert out["forms"] == ["survey1"]
    assert out["submissions"] == ["uuid:s-1", "uuid:s-2", "uuid:s-3", "uuid:s-9"]
    assert out["one"][0] == "uuid:s-1" and isinstance(out["one"][1], int)
    page = out["page"]
    assert page["value"] == [{"__id": "uuid:s-3", "age": 45, "grp": {"note": None}}]  # newest first
    assert page["@odata.count"] == 2 and "$skiptoken" in page["@odata.nextLink"]
    assert [r["__id"] for r in out["skip"]] == ["uuid:s-2"]
    assert [r["where"] for r in out["wkt"]] == ["POINT (69.8 37.9)", None, "POINT (68.7734 38.5612 800)"]
    assert [v["place"] for v in out["expand"]] == ["Kulob"]
    assert [p["years"] for p in out["repeat"]["value"]] == [70, 40, 41]
    assert out["uploaded"] is True
    # A coordinator of a project that keeps personal data from coordinators: the ID card is withheld.
    assert out["attachments"] == [["p1.jpg", True]]
    with live.database.read() as session:
        from server.api.submissions import find_submission
        from server.forms.publish import find_form

        sub = find_submission(session, find_form(session, survey.project, "survey1"), "uuid:pyodk-20")
        photo = next(a for a in sub.current_version.attachments if a.name == "p20.jpg")  # type: ignore[union-attr]
        stored = live.database.blobs.read_bytes(photo.blob_sha256)  # type: ignore[arg-type]
    assert stored == bytes(range(256)) * 200  # the whole chunked upload, byte for byte
    assert out["reviewed"] == "approved"
    assert out["comments"] == ["Checked by phone", "Second look"]
    assert out["created"] == ["uuid:pyodk-20", [["p20.jpg", True]]]
    assert out["again"] == len(out["submissions"]) + 1


CENTRAL_SHAPES_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from datetime import datetime
    from pathlib import Path
    from pyodk.client import Client
    from pyodk.errors import PyODKError

    config, cache, work = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    out = {}
    with Client(config_path=config, cache_path=cache) as client:
        # An XLSForm without form_id: pyodk names it "uuid:..." through X-XlsForm-FormId-Fallback.
        created = client.forms.create(definition=(work / "no_id.xlsx").read_bytes())
        out["created"] = created.xmlFormId
        # Form ids with "/", "%" and quotes, and an emoji, created then updated in place.
        for form_id, name in [("'=+/*-451%/%", "specials.xml"), ("✅", "dingbat.xml")]:
            client.forms.create(definition=(work / name).as_posix(), form_id=form_id)
            client.forms.update(form_id=form_id, attachments=[], version_updater=lambda v: v + "_1")
        out["versions"] = {f.xmlFormId: f.version for f in client.forms.list()}
        iid = "sena_~~!@#$%^&*()_+=-✅✅"
        xml = (work / "submission.xml").read_text().replace("IID", iid)
        out["submitted"] = client.submissions.create(xml=xml, form_id="'=+/*-451%/%").instanceId
        out["fetched"] = client.submissions.get(form_id="'=+/*-451%/%", instance_id=iid).instanceId
        # App users assigned to forms with role 2, as Central does it.
        client.projects.create_app_users(display_names=["tablet a", "tablet b"], forms=["✅"])
        assignments = "projects/{pid}/forms/{fid}/assignments"
        url = client.session.urlformat(assignments, pid=client.project_id, fid="✅")
        out["assigned"] = client.session.get(url).json()
        # Entity lists and their properties.
        client.entity_lists.create(entity_list_name="concerns")
        client.entity_lists.add_property(name="district", entity_list_name="concerns")
        try:
            client.entity_lists.create(entity_list_name="concerns")
        except PyODKError as err:
            out["duplicate"] = err.is_central_error(code=409.3)
        got = client.entity_lists.get(entity_list_name="concerns")
        out["entity_list"] = [got.name, [p.name for p in got.properties]]
        out["entity_lists"] = [e.name for e in client.entity_lists.list()]
        # Entities: create, update against a version, a stale update refused, merge, OData.
        entities = client.entities
        entities.default_entity_list_name = "concerns"
        made = entities.create(label="Vahdat 1", data={"district": "Vahdat"})
        updated = entities.update(made.uuid, label="Vahdat 1b", base_version=1)
        try:
            entities.update(made.uuid, data={"district": "Rudaki"}, base_version=1)
        except PyODKError as err:
            out["stale"] = err.is_central_error(code=409.15)
        out["updated"] = [updated.currentVersion.version, updated.currentVersion.data]
        entities.create_many([{"label": "Hisor 1", "district": "Hisor"}, {"label": "Gone", "district": "X"}])
        entities.merge(
            [{"label": "Hisor 1", "district": "Hisor", "status": "open"}, {"label": "New", "district": "Y"}],
            delete_not_matched=True,
            match_keys=["label"],
        )
        table = entities.get_table(filter="district eq 'Hisor'", select="label,status,__system/version")
        out["merged"] = table["value"]
        out["labels"] = sorted(e["label"] for e in entities.get_table()["value"])
    print(json.dumps(out, default=str))
    """
)


def test_pyodk_with_centrals_odd_ids_assignments_entity_lists_and_entities(
    pyodk_python: Path, server_process: Any, make_env: Any, tmp_path: Path
) -> None:
    from server.projects import create_project
    from server.users import create_user
    from tests.test_central_form_rules import NO_FORM_ID, orx_form
    from tests.test_forms_publish import xlsform

    env = make_env()
    server = server_process(env)
    database = env.app().extensions["sarhad.db"]
    with database.write() as w:
        project = create_project(w.session, "pyodk shapes")
        create_user(w.session, "shapes@example.org", PASSWORD, "admin", project)
        project_id = project.id
    (tmp_path / "no_id.xlsx").write_bytes(xlsform(NO_FORM_ID, {"version": "1"}))
    (tmp_path / "specials.xml").write_bytes(orx_form("&apos;=+/*-451%/%"))
    (tmp_path / "dingbat.xml").write_bytes(orx_form("✅"))
    (tmp_path / "submission.xml").write_text(
        '<data id="\'=+/*-451%/%" version="1.0_1"><meta><instanceID>IID</instanceID></meta>'
        "<name>Alice</name></data>"
    )
    config = tmp_path / "pyodk_config.toml"
    config.write_text(
        "[central]\n"
        f'base_url = "{server.url}"\n'
        'username = "shapes@example.org"\n'
        f'password = "{PASSWORD}"\n'
        f"default_project_id = {project_id}\n"
    )
    script = tmp_path / "use_pyodk.py"
    script.write_text(CENTRAL_SHAPES_SCRIPT)
    run = subprocess.run(
        [str(pyodk_python), str(script), str(config), str(tmp_path / "cache.toml"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if not k.startswith(("PYODK_", "VIRTUAL_ENV"))},
    )
    assert run.returncode == 0, f"pyodk failed:\n{run.stderr[-4000:]}"
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["created"].startswith("uuid:")
    assert out["versions"]["'=+/*-451%/%"] == "1.0_1" and out["versions"]["✅"] == "1.0_1"
    assert out["submitted"] == out["fetched"] == "sena_~~!@#$%^&*()_+=-✅✅"
    assert [a["roleId"] for a in out["assigned"]] == [2, 2]
    assert out["duplicate"] is True
    assert out["entity_list"] == ["concerns", ["district"]] and out["entity_lists"] == ["concerns"]
    assert out["stale"] is True and out["updated"] == [2, {"district": "Vahdat"}]
    assert out["merged"] == [{"label": "Hisor 1", "status": "open", "__system": {"version": 2}}]
    assert out["labels"] == ["Hisor 1", "New"]  # Vahdat 1b and Gone were not in the merged data
