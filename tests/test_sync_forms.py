"""``sarhad-sync pull-forms``: central's published forms, versions and media arrive at the hub, byte for
byte (Collect compares md5 hashes), and a hub can fetch form media but never a submission's files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import requests
from sqlalchemy import select

from server.models import Form, FormVersion, Project
from tests.conftest import LiveServer
from tests.test_sync_support import FORM_ID, Store, form_xml, run_sync, sqlite_env, sync_env


def _hub_forms(hub: Store) -> dict[str, tuple[str, str, list[str], dict[str, str | None]]]:
    """formId → (state, current version, published versions' md5s, media of the current version)."""
    out = {}
    with hub.database.read() as session:
        for form in session.scalars(select(Form)):
            versions = session.scalars(
                select(FormVersion).where(FormVersion.form_id == form.id).order_by(FormVersion.id)
            ).all()
            current = form.current_version
            assert current is not None
            out[form.xml_form_id] = (
                form.state,
                current.version,
                [v.md5 for v in versions],
                {m.name: m.blob_sha256 for m in current.media},
            )
    return out


def test_pull_forms_brings_versions_media_and_state(
    central: tuple[Store, LiveServer], tmp_path: Path
) -> None:
    store, live = central
    project = store.project("Khorog")
    logo = b"\x89PNG fake logo bytes"
    store.publish(project, form_xml(version="1", image="logo.png"), {"logo.png": logo})
    store.publish(project, form_xml(version="2", image="logo.png"), {"logo.png": logo + b" v2"})
    store.publish(project, form_xml("second_form"))
    token = store.hub_token("Khorog-2", project)
    hub = Store(sqlite_env(tmp_path / "hub"))
    env = sync_env(live.url, token, hub.env.data_dir)

    first = run_sync(env, "pull-forms")
    assert first.returncode == 0, first.stderr
    assert "3 published or updated" in first.stdout and "media files downloaded: 2" in first.stdout
    central_md5 = {}
    with store.database.read() as session:
        for version in session.scalars(select(FormVersion)):
            central_md5.setdefault(version.form.xml_form_id, []).append(version.md5)
    forms = _hub_forms(hub)
    assert forms[FORM_ID][:3] == ("open", "2", central_md5[FORM_ID])
    assert forms[FORM_ID][3] == {"logo.png": hashlib.sha256(logo + b" v2").hexdigest()}
    assert forms["second_form"][2] == central_md5["second_form"]
    with hub.database.read() as session:
        assert session.scalars(select(Project.name)).all() == ["Khorog"]

    again = run_sync(env, "pull-forms")
    assert again.returncode == 0 and "0 published or updated, 3 already up to date" in again.stdout

    with store.app.app_context(), store.database.write() as w:
        form = w.session.scalar(select(Form).where(Form.xml_form_id == "second_form"))
        assert form is not None
        form.state = "closed"
    store.publish(project, form_xml(version="3", image="logo.png"), {"logo.png": logo + b" v2"})
    third = run_sync(env, "pull-forms")
    assert third.returncode == 0 and "1 published or updated" in third.stdout
    forms = _hub_forms(hub)
    assert forms["second_form"][0] == "closed" and forms[FORM_ID][1] == "3"
    assert "media files downloaded" not in third.stdout  # the hub had that logo already


def test_hub_fetches_only_its_forms_media(central: tuple[Store, LiveServer]) -> None:
    store, live = central
    project, other = store.project("Vanj"), store.project("Darvoz")
    secret = b"not a form's file"
    store.publish(other, form_xml(image="logo.png"), {"logo.png": secret})
    token = store.hub_token("Vanj-1", project)
    headers = {"Authorization": f"Bearer {token}"}
    sha = hashlib.sha256(secret).hexdigest()
    base = f"{live.url}/v1/sync/projects"
    assert requests.get(f"{base}/{other}/forms", headers=headers, timeout=10).status_code == 403
    assert requests.get(f"{base}/{other}/media/{sha}", headers=headers, timeout=10).status_code == 403
    # A blob of another project (or a submission's photo) is not form media of this one.
    assert requests.get(f"{base}/{project}/media/{sha}", headers=headers, timeout=10).status_code == 404
    assert requests.get(f"{base}/{project}/media/nothex", headers=headers, timeout=10).status_code == 400
    assert requests.get(f"{base}/{project}/forms", headers=headers, timeout=10).json()["forms"] == []
