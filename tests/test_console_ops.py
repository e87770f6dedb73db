"""The console's conflicts, downloads and hubs-and-sync pages over real HTTP, with their background jobs:
conflicts decided (new version through ingest, keep, set aside; nothing deleted; audited) in the console
and through ``/v1/projects/{p}/conflicts``; exports and donor reports prepared as jobs and fetched only
by the user who asked, pseudonymised for an analyst; a hub's "Sync now" pushing to a live central."""

from __future__ import annotations

import io
import re
import time
import uuid
import zipfile
from pathlib import Path

import requests
from openpyxl import load_workbook
from sqlalchemy import select

from server.ingest import ingest
from server.models import AuditEvent, Conflict, ConsoleJob, Source, Submission
from tests.conftest import LiveServer, free_port, serve_in_thread
from tests.console_support import PASSWORD, Browser, add_project, add_user
from tests.test_console_pages import _email, _publish_safety, _signed_in
from tests.test_sync_support import Store, form_xml, instance_xml, new_id, sqlite_env


def safety_xml(instance_id: str, age: int, name: str = "Zarina Karimova") -> bytes:
    return (
        f'<data id="safety" version="2026120401"><respondent_name>{name}</respondent_name>'
        f"<district>khorog</district><age>{age}</age><feels_safe>yes</feels_safe>"
        f"<meta><instanceID>{instance_id}</instanceID></meta></data>"
    ).encode()


def put(live: LiveServer, project_id: int, xml: bytes, files: dict[str, bytes] | None = None) -> str:
    """Store a payload through the one ingest path, as a tool would."""
    with live.app.app_context(), live.database.write() as w:
        result = ingest(
            w,
            project=project_id,
            xml_bytes=xml,
            attachments=[(n, io.BytesIO(b)) for n, b in (files or {}).items()],
            source=Source.API,
        )
        return str(result.outcome)


def wait_for_job(browser: Browser, location: str) -> str:
    """Follow a job page until the job ends; returns the job id."""
    job_id = location.rstrip("/").rsplit("/", 1)[-1]
    for _ in range(200):
        state = browser.get(f"/jobs/{job_id}/state").json()
        if state["finished"]:
            return job_id
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish: {state}")


def api_token(live: LiveServer, email: str) -> dict[str, str]:
    answer = requests.post(f"{live.url}/v1/sessions", json={"email": email, "password": PASSWORD}, timeout=30)
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['token']}"}


# ---- conflicts --------------------------------------------------------------------------------------


def test_conflicts_side_by_side_and_every_decision(live_server: LiveServer) -> None:
    project_id = add_project(live_server.database, f"C-{uuid.uuid4().hex[:6]}")
    admin, admin_email = _signed_in(live_server, "admin", project_id)
    analyst, _ = _signed_in(live_server, "analyst", project_id)
    _publish_safety(admin, project_id)
    same = new_id()
    assert put(live_server, project_id, safety_xml(same, 30)) == "created"
    assert put(live_server, project_id, safety_xml(same, 31), {"note.txt": b"typed again"}) == "conflict"
    assert put(live_server, project_id, safety_xml(same, 32)) == "conflict"
    assert put(live_server, project_id, safety_xml(same, 33)) == "conflict"
    with live_server.database.read() as session:
        ids = list(
            session.scalars(select(Conflict.id).where(Conflict.instance_id == same).order_by(Conflict.id))
        )
    taken, aside, kept = ids

    assert analyst.get(f"/projects/{project_id}/conflicts").status_code == 403
    assert analyst.get(f"/projects/{project_id}/conflicts/{taken}").status_code == 403
    listing = admin.get(f"/projects/{project_id}/conflicts")
    assert listing.status_code == 200
    assert all(f"/conflicts/{i}" in listing.text for i in ids)

    page = admin.get(f"/projects/{project_id}/conflicts/{taken}")
    assert page.status_code == 200
    # Field by field, labelled: the stored answer beside the kept one, the difference marked.
    assert re.search(r"<th scope=\"row\">Age</th><td>30</td><td class=\"differs\">31", page.text)
    assert "Khorog" in page.text  # a choice shown by its label
    file_link = f"/projects/{project_id}/conflicts/{taken}/files/kept/note.txt"
    assert file_link in page.text
    assert admin.get(file_link).content == b"typed again"

    forged = admin.http.post(
        f"{live_server.url}/projects/{project_id}/conflicts/{taken}/decision",
        data={"decision": "new-version"},
        allow_redirects=False,
    )
    assert forged.status_code in (400, 403)
    decided = admin.post(
        f"/projects/{project_id}/conflicts/{taken}/decision",
        {"decision": "new-version", "note": "the facilitator corrected the age"},
        token_from=f"/projects/{project_id}/conflicts/{taken}",
    )
    assert decided.status_code == 302
    after = admin.get(f"/projects/{project_id}/conflicts/{taken}")
    assert "Taken as a new version" in after.text and "Record the decision" not in after.text
    again = admin.post(
        f"/projects/{project_id}/conflicts/{taken}/decision",
        {"decision": "set-aside"},
        token_from=f"/projects/{project_id}/conflicts",
    )
    assert again.status_code == 409

    # The other two through the API.
    headers = api_token(live_server, admin_email)
    base = f"{live_server.url}/v1/projects/{project_id}/conflicts"
    one = requests.get(f"{base}/{aside}", headers=headers, timeout=30).json()
    assert one["storedInstanceId"] == same and "<age>32</age>" in one["xml"] and one["decision"] is None
    bad = requests.post(f"{base}/{aside}/decision", json={"decision": "delete"}, headers=headers, timeout=30)
    assert bad.status_code == 400
    for cid, decision in ((aside, "set-aside"), (kept, "keep-stored")):
        answer = requests.post(
            f"{base}/{cid}/decision", json={"decision": decision}, headers=headers, timeout=30
        )
        assert answer.status_code == 200 and answer.json()["decision"] == decision, answer.text
    assert requests.get(base, headers=headers, timeout=30).json() == []
    everything = requests.get(f"{base}?all=true", headers=headers, timeout=30).json()
    assert {c["id"]: c["decision"] for c in everything} == {
        taken: "new-version",
        aside: "set-aside",
        kept: "keep-stored",
    }
    analyst_headers = api_token(live_server, _analyst_email(live_server, project_id))
    assert requests.get(base, headers=analyst_headers, timeout=30).status_code == 403

    with live_server.database.read() as session:
        sub = session.scalar(select(Submission).where(Submission.instance_id == same))
        assert sub is not None and len(sub.versions) == 2 and sub.review_state == "edited"
        current = sub.current_version
        assert current is not None and "<age>31</age>" in current.xml
        assert current.deprecated_id == same and current.source == "api"
        assert [a.name for a in current.attachments] == ["note.txt"]
        # Nothing deleted: every kept payload is still there, decided.
        rows = list(session.scalars(select(Conflict).where(Conflict.id.in_(ids))))
        assert len(rows) == 3 and all(r.resolved_at and r.xml for r in rows)
        audits = list(
            session.scalars(
                select(AuditEvent).where(
                    AuditEvent.action == "submission.conflict.decide", AuditEvent.project_id == project_id
                )
            )
        )
        assert {(a.details["decision"], a.details["via"]) for a in audits} == {
            ("new-version", "console"),
            ("set-aside", "api"),
            ("keep-stored", "api"),
        }
        assert any(a.details.get("note") == "the facilitator corrected the age" for a in audits)


def _analyst_email(live: LiveServer, project_id: int) -> str:
    email = _email("analyst")
    add_user(live.database, email, "analyst", project_id)
    return email


# ---- downloads --------------------------------------------------------------------------------------


def test_downloads_run_as_jobs_pseudonymised_for_an_analyst(live_server: LiveServer) -> None:
    project_id = add_project(live_server.database, f"D-{uuid.uuid4().hex[:6]}")
    admin, _ = _signed_in(live_server, "admin", project_id)
    analyst, _ = _signed_in(live_server, "analyst", project_id)
    _publish_safety(admin, project_id)
    for n in range(12):
        put(live_server, project_id, safety_xml(new_id(), 20 + n, name=f"Name {n}"))

    page = analyst.get(f"/projects/{project_id}/downloads")
    assert page.status_code == 200 and "Export a dataset" in page.text
    started = analyst.post(
        f"/projects/{project_id}/downloads/export",
        {"form": "safety", "format": "csv.zip", "lang": "ru", "labels": "1"},
        token_from=f"/projects/{project_id}/downloads",
    )
    assert started.status_code == 302 and "/jobs/" in started.headers["Location"]
    job_id = wait_for_job(analyst, started.headers["Location"])
    job_page = analyst.get(f"/jobs/{job_id}")
    assert "Download safety.csv.zip" in job_page.text
    got = analyst.get(f"/jobs/{job_id}/file")
    assert got.status_code == 200 and got.headers["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(got.content)) as zf:
        main = zf.read(next(n for n in zf.namelist() if n.endswith("safety.csv"))).decode("utf-8-sig")
    assert "Хорог" in main  # choice labels in Russian
    assert "Name 3" not in main and "p_" in main  # the analyst's file holds pseudonyms, as via the API
    # Another user (even an administrator) cannot see or fetch it.
    assert admin.get(f"/jobs/{job_id}").status_code == 404
    assert admin.get(f"/jobs/{job_id}/file").status_code == 404
    assert "Download" not in admin.get(f"/projects/{project_id}/downloads").text.split("recent downloads")[-1]

    xlsx = admin.post(
        f"/projects/{project_id}/downloads/export",
        {"form": "safety", "format": "xlsx", "review_state": ["received"]},
        token_from=f"/projects/{project_id}/downloads",
    )
    job_id = wait_for_job(admin, xlsx.headers["Location"])
    book = load_workbook(io.BytesIO(admin.get(f"/jobs/{job_id}/file").content), read_only=True)
    rows = list(book.worksheets[0].iter_rows(values_only=True))
    assert len(rows) == 13 and any("Name 3" in str(cell) for row in rows for cell in row)

    report = analyst.post(
        f"/projects/{project_id}/downloads/report",
        {"form": "safety", "rows": "district", "format": "csv", "min_cell": "5"},
        token_from=f"/projects/{project_id}/downloads",
    )
    job_id = wait_for_job(analyst, report.headers["Location"])
    shown = analyst.get(f"/jobs/{job_id}")
    assert "Counts of submissions" in shown.text  # the suppression notes, on the page
    csv_text = analyst.get(f"/jobs/{job_id}/file").text
    assert "khorog" in csv_text.lower() and "12" in csv_text
    failed = analyst.post(
        f"/projects/{project_id}/downloads/report",
        {"form": "safety", "rows": "no_such_question", "format": "csv"},
        token_from=f"/projects/{project_id}/downloads",
    )
    job_id = wait_for_job(analyst, failed.headers["Location"])
    assert "Failed" in analyst.get(f"/jobs/{job_id}").text
    lowered = analyst.post(
        f"/projects/{project_id}/downloads/report",
        {"form": "safety", "rows": "district", "format": "csv", "min_cell": "2"},
        token_from=f"/projects/{project_id}/downloads",
    )
    assert lowered.status_code == 400

    with live_server.database.read() as session:
        kinds = {
            j.kind for j in session.scalars(select(ConsoleJob).where(ConsoleJob.project_id == project_id))
        }
        assert kinds == {"export", "report"}
        audited = session.scalars(
            select(AuditEvent.details).where(
                AuditEvent.project_id == project_id, AuditEvent.action == "form.submission.export"
            )
        ).all()
        assert {(d["via"], d["access"]["level"]) for d in audited} == {
            ("console", "redacted"),
            ("console", "raw"),
        }


def test_job_files_are_swept_after_a_day(live_server: LiveServer) -> None:
    import datetime as dt

    from server import jobs
    from server.config import settings

    project_id = add_project(live_server.database, f"S-{uuid.uuid4().hex[:6]}")
    admin, _ = _signed_in(live_server, "admin", project_id)
    _publish_safety(admin, project_id)
    started = admin.post(
        f"/projects/{project_id}/downloads/export",
        {"form": "safety", "format": "jsonl"},
        token_from=f"/projects/{project_id}/downloads",
    )
    job_id = wait_for_job(admin, started.headers["Location"])
    data_dir: Path = settings(live_server.app).data_dir
    folder = jobs.folder_of(data_dir, job_id)
    assert folder.is_dir()
    with live_server.database.write() as w:
        job = w.session.get(ConsoleJob, job_id)
        assert job is not None
        job.created_at -= jobs.KEEP_FOR + dt.timedelta(minutes=1)
    jobs.sweep(live_server.database, data_dir)
    assert not folder.exists()
    assert admin.get(f"/jobs/{job_id}").status_code == 404


# ---- hubs and sync ----------------------------------------------------------------------------------


def test_hub_sync_now_and_central_hub_list(central: tuple[Store, LiveServer], tmp_path: Path) -> None:
    central_store, central_live = central
    hub = Store(sqlite_env(tmp_path / "hub"))
    c_project, h_project = central_store.project("Khorog"), hub.project("Khorog")
    for store, project in ((central_store, c_project), (hub, h_project)):
        store.publish(project, form_xml())
    token = central_store.hub_token("Khorog laptop", c_project)
    for village in ("Ishkoshim", "Vanj", "Darvoz"):
        hub.submit(h_project, instance_xml(new_id(), village))
    settings_file = hub.env.data_dir / "sync.toml"
    # First central cannot be reached: the job fails, saying why, and nothing is lost.
    settings_file.write_text(
        f'central_url = "http://127.0.0.1:{free_port()}"\ntoken = "{token}"\nretries = 0\n'
    )

    hub_live, stop = serve_in_thread(hub.app)
    try:
        email = _email("admin")
        add_user(hub.database, email, "admin", None)
        browser = Browser.open(hub_live.url)
        assert browser.sign_in(email).status_code == 302
        before = browser.get("/hubs")
        assert before.status_code == 200 and "Sync now" in before.text
        assert re.search(r'id="pending">3<', before.text)
        unreachable = browser.post("/hubs/sync", {}, token_from="/hubs")
        job_id = wait_for_job(browser, unreachable.headers["Location"])
        failed = browser.get(f"/jobs/{job_id}")
        assert "Failed" in failed.text and "Sync failed" in failed.text, failed.text
        assert "Failed" in browser.get("/hubs").text  # the last sync and its result
        settings_file.write_text(f'central_url = "{central_live.url}"\ntoken = "{token}"\n')
        forged = browser.http.post(f"{hub_live.url}/hubs/sync", data={}, allow_redirects=False)
        assert forged.status_code in (400, 403)
        started = browser.post("/hubs/sync", {}, token_from="/hubs")
        assert started.status_code == 302 and "/jobs/" in started.headers["Location"]
        job_id = wait_for_job(browser, started.headers["Location"])
        done = browser.get(f"/jobs/{job_id}")
        assert "Finished" in done.text and "COMPLETE" in done.text, done.text
        after = browser.get("/hubs")
        assert re.search(r'id="pending">0<', after.text) and re.search(r'id="confirmed">3<', after.text)
        assert "Complete" in after.text and "signature valid" in after.text

        coordinator = _email("coordinator")
        add_user(hub.database, coordinator, "analyst", h_project)
        analyst = Browser.open(hub_live.url)
        assert analyst.sign_in(coordinator).status_code == 302
        assert analyst.get("/hubs").status_code == 403
    finally:
        stop()

    site_admin = _email("admin")
    add_user(central_store.database, site_admin, "admin", None)
    at_central = Browser.open(central_live.url)
    assert at_central.sign_in(site_admin).status_code == 302
    listing = at_central.get("/hubs")
    assert listing.status_code == 200 and "Khorog laptop" in listing.text and "Sync now" not in listing.text
    assert "3 held (3 versions, 0 conflicts, 0 files)" in listing.text
