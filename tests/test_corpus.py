"""Every XLSForm of the shared corpus (158 real forms by other teams) through the real upload path.

Each form goes over HTTP to ``POST /v1/projects/{p}/forms?publish=true`` (conversion in a child process
with ODK Validate, as in production), into a project of its own since corpus forms share form ids. A form
that ODK Validate accepts (MANIFEST.json says which) must publish and be served back with the hash the
API reports; every other form must be refused with a clean 400 Problem: a message, no traceback, no 500.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import select

from server.models import Form, FormVersion
from server.projects import create_project
from server.users import create_user
from tests.conftest import LiveServer

PASSWORD = "correct horse battery"
JAVA = shutil.which("java") is not None
CONTENT_TYPES = {
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".xls": "application/vnd.ms-excel",
    ".xlsm": "application/vnd.ms-excel.sheet.macroEnabled.12",
    ".csv": "text/csv",
    ".md": "text/markdown",
}


def _publish(url: str, headers: dict[str, str], project: int, path: Path) -> dict[str, Any]:
    r = requests.post(
        f"{url}/v1/projects/{project}/forms",
        params={"publish": "true"},
        data=path.read_bytes(),
        headers={
            **headers,
            "Content-Type": CONTENT_TYPES[path.suffix.lower()],
            "X-XlsForm-FormId-Fallback": requests.utils.quote(path.stem),
        },
        timeout=300,
    )
    result: dict[str, Any] = {
        "status": r.status_code,
        "body": r.json() if r.content else None,
        "text": r.text,
    }
    if r.status_code == 200:
        form_id = r.json()["xmlFormId"]
        xml = requests.get(
            f"{url}/v1/projects/{project}/forms/{requests.utils.quote(form_id, safe='')}.xml",
            headers=headers,
            timeout=60,
        )
        result["xml_status"], result["xml_md5"] = xml.status_code, hashlib.md5(xml.content).hexdigest()
    return result


def test_every_corpus_form_publishes_or_is_refused_cleanly(corpus_dir: Path, live_server: LiveServer) -> None:
    manifest = json.loads((corpus_dir / "MANIFEST.json").read_text())
    assert len(manifest) >= 150
    with live_server.database.write() as w:
        create_user(w.session, "corpus@example.org", PASSWORD, "admin")
        projects = [
            create_project(w.session, f"Corpus {i}: {e['file']}"[:200]).id for i, e in enumerate(manifest)
        ]
    token = requests.post(
        f"{live_server.url}/v1/sessions",
        json={"email": "corpus@example.org", "password": PASSWORD},
        timeout=10,
    ).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(
            pool.map(
                lambda pair: _publish(live_server.url, headers, pair[0], corpus_dir / pair[1]["file"]),
                zip(projects, manifest, strict=True),
            )
        )

    failures = []
    published = 0
    for entry, project, result in zip(manifest, projects, results, strict=True):
        name, status, body = entry["file"], result["status"], result["body"]
        # Without Java, ODK Validate cannot run (the server says so in a warning) and all forms publish.
        if entry["odk_validate_passes"] or not JAVA:
            if status != 200:
                failures.append(f"{name}: expected to publish, got {status} {result['text'][:300]}")
            elif result["xml_status"] != 200 or result["xml_md5"] != body["hash"]:
                failures.append(f"{name}: served XForm does not match its hash")
            elif body["outcome"] != "created" or body["projectId"] != project:
                failures.append(f"{name}: unexpected outcome {body}")
            else:
                published += 1
        elif status != 400 or body["code"] != "400.8" or not body["message"] or "Traceback" in result["text"]:
            failures.append(f"{name}: expected a clean 400, got {status} {result['text'][:300]}")
    assert not failures, "\n".join(failures)
    assert published == sum(e["odk_validate_passes"] or not JAVA for e in manifest)

    # Every published version carries its parsed field list (ingest and exports depend on it).
    with live_server.database.read() as session:
        versions = session.execute(
            select(Form.xml_form_id, FormVersion.fields).join(FormVersion, FormVersion.form_id == Form.id)
        ).all()
    assert len(versions) == published
    empty = [form_id for form_id, fields in versions if not any(not f["group"] for f in fields)]
    assert not empty, f"forms with no fields parsed: {empty}"


TRANSPORTATION = "onadata__onadata__apps__main__tests__fixtures__transportation__"


def test_corpus_forms_sharing_an_id_follow_the_version_rules(
    corpus_dir: Path, live_server: LiveServer
) -> None:
    """Three corpus forms share the id transportation_2011_07_25: published into one project, the
    version rules decide (no 500): same id and version with another title is refused, a new version
    becomes current, the first file again is a no-op."""
    sequence = [
        ("transportation.xlsx", 200, "created"),
        ("transportation_ampersand_in_title.xlsx", 409, "409.6"),
        ("transportation_version.xlsx", 200, "published"),
        ("transportation.xlsx", 200, "already_published"),
    ]
    with live_server.database.write() as w:
        create_user(w.session, "corpus-ids@example.org", PASSWORD, "admin")
        project = create_project(w.session, "Corpus shared ids").id
    token = requests.post(
        f"{live_server.url}/v1/sessions",
        json={"email": "corpus-ids@example.org", "password": PASSWORD},
        timeout=10,
    ).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    for name, status, what in sequence:
        result = _publish(live_server.url, headers, project, corpus_dir / f"{TRANSPORTATION}{name}")
        body = result["body"]
        assert (result["status"], body.get("outcome") or body.get("code")) == (status, what), (name, body)
    forms = f"{live_server.url}/v1/projects/{project}/forms"
    versions = requests.get(f"{forms}/transportation_2011_07_25/versions", headers=headers, timeout=10).json()
    assert [v["version"] for v in versions] == ["212121211", "2014111"]
    current = requests.get(f"{forms}/transportation_2011_07_25", headers=headers, timeout=10).json()
    assert current["version"] == "212121211"
