"""The submissions table's filters (region, district, device, has issues, with date and review state)
and the columns each user chooses, over real HTTP: submissions come from devices through OpenRosa (the
one ingest path copies region, district and device onto the submission), and an analyst never sees a
personal answer through a column or a filter."""

from __future__ import annotations

import io
import re
import uuid

import pytest
from openpyxl import Workbook
from sqlalchemy import select

from server.models import AppUser, Conflict
from tests.collect_emulator import CollectEmulator, Instance
from tests.conftest import LiveServer
from tests.console_support import XLSX_TYPE, Browser, add_project, add_user

FORM = "fg_place"


def place_xlsform() -> bytes:
    wb = Workbook()
    survey = wb.active
    survey.title = "survey"
    survey.append(["type", "name", "label::English (en)", "label::Tajik (tg)", "bind::sarhad:sensitivity"])
    survey.append(["text", "facilitator", "Facilitator", "Фасилитатор", "personal"])
    survey.append(["begin_group", "place", "Place", "Макон", ""])
    survey.append(["select_one region", "region", "Region", "Вилоят", ""])
    survey.append(["select_one district", "district", "District", "Ноҳия", ""])
    survey.append(["end_group", "", "", "", ""])
    survey.append(["integer", "participants", "Participants", "Иштирокчиён", ""])
    survey.append(["text", "summary", "Summary", "Хулоса", ""])
    choices = wb.create_sheet("choices")
    choices.append(["list_name", "name", "label::English (en)", "label::Tajik (tg)"])
    choices.append(["region", "gbao", "GBAO", "ВМКБ"])
    choices.append(["region", "sughd", "Sughd", "Суғд"])
    choices.append(["district", "khorog", "Khorog", "Хоруғ"])
    choices.append(["district", "rushan", "Rushan", "Рӯшон"])
    choices.append(["district", "isfara", "Isfara", "Исфара"])
    settings = wb.create_sheet("settings")
    settings.append(["form_id", "version", "form_title", "default_language", "namespaces"])
    settings.append([FORM, "1", "Places", "English (en)", 'sarhad="https://sarhad.tj/xforms"'])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def _xml(instance_id: str, facilitator: str, region: str, district: str, n: int) -> bytes:
    return (
        f'<data id="{FORM}" version="1"><facilitator>{facilitator}</facilitator>'
        f"<place><region>{region}</region><district>{district}</district></place>"
        f"<participants>{n}</participants><summary>note {n}</summary>"
        f"<meta><instanceID>{instance_id}</instanceID></meta></data>"
    ).encode()


def _device(browser: Browser, project_id: int, name: str) -> CollectEmulator:
    page = browser.post(
        f"/projects/{project_id}/devices", {"name": name}, token_from=f"/projects/{project_id}/devices"
    )
    url = re.search(r'<code class="url">([^<]+)</code>', page.text)
    assert url
    return CollectEmulator(url.group(1))


def _signed_in(live: LiveServer, role: str, project_id: int) -> Browser:
    email = f"{role}-{uuid.uuid4().hex[:8]}@example.tj"
    add_user(live.database, email, role, project_id)
    browser = Browser.open(live.url)
    assert browser.sign_in(email).status_code == 302
    return browser


@pytest.fixture(scope="module")
def sent(live_server: LiveServer) -> tuple[int, Browser, dict[str, str]]:
    """Four submissions from two devices in three districts, one marked "has issues", one with a
    conflicting payload kept."""
    project_id = add_project(live_server.database, f"Filters {uuid.uuid4().hex[:4]}")
    coordinator = _signed_in(live_server, "coordinator", project_id)
    files = {"xlsform": (f"{FORM}.xlsx", place_xlsform(), XLSX_TYPE)}
    page = f"/projects/{project_id}"
    assert coordinator.post(f"{page}/forms", {}, files=files, token_from=page).status_code == 200
    form_page = f"{page}/forms/{FORM}"
    assert coordinator.post(f"{form_page}/publish", {}, token_from=form_page).status_code == 302
    one, two = _device(coordinator, project_id, "Tablet A"), _device(coordinator, project_id, "Tablet B")
    ids = {}
    for key, device, region, district in [
        ("a", one, "gbao", "khorog"),
        ("b", one, "gbao", "rushan"),
        ("c", two, "sughd", "isfara"),
        ("d", two, "gbao", "khorog"),
    ]:
        ids[key] = f"uuid:{uuid.uuid4()}"
        xml = _xml(ids[key], f"Facilitator {key.upper()}", region, district, ord(key))
        assert device.submit(Instance(FORM, ids[key], xml)).sent
    # Other XML under c's instanceID: ingest keeps it as a conflict for a coordinator.
    two.submit(Instance(FORM, ids["c"], _xml(ids["c"], "Facilitator C", "sughd", "isfara", 12)))
    with live_server.database.read() as session:
        assert session.scalars(select(Conflict).where(Conflict.instance_id == ids["c"])).one()
    sub = f"{form_page}/submissions/{ids['b']}"
    assert coordinator.post(f"{sub}/review", {"review_state": "hasIssues"}, token_from=sub).status_code == 302
    return project_id, coordinator, ids


def _shown(browser: Browser, project_id: int, query: str) -> set[str]:
    page = browser.get(f"/projects/{project_id}/forms/{FORM}/submissions?{query}")
    assert page.status_code == 200, page.text[:300]
    return set(re.findall(r"submissions/(uuid:[0-9a-f-]+)", page.text))


def test_filters_by_region_district_device_and_issues(
    live_server: LiveServer, sent: tuple[int, Browser, dict[str, str]]
) -> None:
    project_id, coordinator, ids = sent
    page = coordinator.get(f"/projects/{project_id}/forms/{FORM}/submissions").text
    assert 'id="f-region"' in page and ">GBAO<" in page and 'id="f-district"' in page and ">Isfara<" in page
    assert _shown(coordinator, project_id, "") == set(ids.values())
    assert _shown(coordinator, project_id, "region=gbao") == {ids["a"], ids["b"], ids["d"]}
    assert _shown(coordinator, project_id, "district=khorog") == {ids["a"], ids["d"]}
    assert _shown(coordinator, project_id, "region=gbao&district=rushan") == {ids["b"]}
    with live_server.database.read() as session:
        tablet_b = session.scalars(
            select(AppUser.id).where(AppUser.project_id == project_id, AppUser.display_name == "Tablet B")
        ).one()
    assert f'<option value="{tablet_b}"' in page
    assert _shown(coordinator, project_id, f"device={tablet_b}") == {ids["c"], ids["d"]}
    assert _shown(coordinator, project_id, "issues=1") == {ids["b"], ids["c"]}
    assert _shown(coordinator, project_id, "issues=1&district=khorog") == set()
    assert _shown(coordinator, project_id, "issues=1&region=sughd") == {ids["c"]}
    assert _shown(coordinator, project_id, "from=2000-01-01&to=2000-01-02") == set()
    bad = coordinator.get(f"/projects/{project_id}/forms/{FORM}/submissions?review=nonsense")
    assert bad.status_code == 400


def test_columns_are_chosen_per_user_and_remembered(
    live_server: LiveServer, sent: tuple[int, Browser, dict[str, str]]
) -> None:
    project_id, coordinator, _ids = sent
    listing = f"/projects/{project_id}/forms/{FORM}/submissions"
    head = re.compile(r"<thead>(.*?)</thead>", re.S)
    before = head.search(coordinator.get(listing).text).group(1)  # type: ignore[union-attr]
    assert "Participants" in before and "Summary" in before
    chosen = coordinator.post(
        f"{listing}/columns",
        {"column": ["/summary", "/place/district", "/nonsense"], "next": f"{listing}?district=khorog"},
        token_from=listing,
    )
    assert chosen.status_code == 302 and chosen.headers["Location"].endswith("?district=khorog")
    after = head.search(coordinator.get(listing).text).group(1)  # type: ignore[union-attr]
    assert "Summary" in after and "District" in after and "Participants" not in after
    # Per user: another coordinator still has the first questions.
    other = _signed_in(live_server, "coordinator", project_id)
    assert "Participants" in head.search(other.get(listing).text).group(1)  # type: ignore[union-attr]
    reset = coordinator.post(f"{listing}/columns", {"reset": "1"}, token_from=listing)
    assert reset.status_code == 302
    assert "Participants" in head.search(coordinator.get(listing).text).group(1)  # type: ignore[union-attr]


def test_an_analyst_sees_no_personal_answer_through_columns_or_filters(
    live_server: LiveServer, sent: tuple[int, Browser, dict[str, str]]
) -> None:
    project_id, _coordinator, ids = sent
    analyst = _signed_in(live_server, "analyst", project_id)
    listing = f"/projects/{project_id}/forms/{FORM}/submissions"
    chosen = analyst.post(f"{listing}/columns", {"column": ["/facilitator", "/summary"]}, token_from=listing)
    assert chosen.status_code == 302
    page = analyst.get(listing).text
    assert "Facilitator A" not in page and re.search(r"p_[0-9a-f]{16}", page)
    assert "Tablet A" not in page  # device names are pseudonymised for analysts too
    assert _shown(analyst, project_id, "district=rushan") == {ids["b"]}
