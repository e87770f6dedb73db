"""The console's dashboard over real HTTP: the numbers behind each chart (its CSV) against submissions
sent the way Collect sends them, suppressed for an analyst as donor reports are (group disclosure
included), labels in the user's language, SVG downloads, and one look in a real browser."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from lxml import etree

from tests.collect_emulator import CollectEmulator, Instance
from tests.conftest import ROOT, LiveServer
from tests.console_support import PASSWORD, Browser, add_project, add_user
from tests.openrosa_setup import key_url, make_device, publish_xlsform
from tests.test_console_browser import MIN_COLOURS, SCREENSHOTS, _colours, _sign_in, chromium  # noqa: F401

FORMS = ROOT / "forms"

# Safety concerns: (region, district, category, severity) → how many.
SAFETY = {("sughd", "asht", "theft", "low"): 7, ("sughd", "ayni", "gbv", "high"): 6,
          ("khatlon", "danghara", "drugs", "medium"): 2}  # fmt: skip
# Youth: trust_fair answers (agree5 has "Don't know" and "Prefer not to say"); all feel very safe by day.
TRUST_FAIR = ["4"] * 5 + ["dont_know"] * 2 + ["refused"]
# Focus groups: participants by question.
GROUPS = [{"women_18_29": "4", "men_18_29": "6", "women_30plus": "3"}, {"men_18_29": "5", "women_14_17": "0"}]


def _instance(form_xml: bytes, form_id: str, values: dict[str, str]) -> Instance:
    """A submission of a mission form, built from its XForm's own instance with ``values`` set by question
    name (names are unique in these forms), everything else left empty, as a tablet would send it."""
    root = etree.fromstring(form_xml)
    model_instance = next(
        el for el in root.iter() if etree.QName(el).localname == "instance" and not el.get("id")
    )
    data = etree.fromstring(etree.tostring(next(iter(model_instance))))
    for el in list(data.iter()):
        for attr in list(el.attrib):
            if etree.QName(attr).localname == "template":
                del el.attrib[attr]
    for name, value in values.items():
        found = [el for el in data.iter() if etree.QName(el).localname == name]
        assert len(found) == 1, (form_id, name, len(found))
        found[0].text = value
    instance_id = f"uuid:{uuid.uuid4()}"
    next(el for el in data.iter() if etree.QName(el).localname == "instanceID").text = instance_id
    return Instance(form_id, instance_id, etree.tostring(data, xml_declaration=True, encoding="utf-8"))


@pytest.fixture(scope="module")
def board(live_server: LiveServer) -> Iterator[dict[str, Any]]:
    project = add_project(live_server.database, "Dashboard")
    for name in ("safety_concerns", "youth_consultation", "focus_group"):
        publish_xlsform(live_server.app, project, FORMS / f"{name}.xlsx")
    _id, token = make_device(live_server.app, project, "Dashboard tablet")
    collect = CollectEmulator(key_url(live_server.url, token, project))
    forms = collect.download_forms()

    def send(form_id: str, values: dict[str, str]) -> None:
        result = collect.submit(_instance(forms[form_id].xml, form_id, values))
        assert result.sent, result.posts

    for (region, district, category, severity), count in SAFETY.items():
        for _ in range(count):
            send("safety_concerns", {"consent": "yes", "region": region, "district": district,
                                     "category": category, "severity": severity})  # fmt: skip
    for answer in TRUST_FAIR:
        send(
            "youth_consultation", {"consent": "yes", "region": "sughd", "trust_fair": answer, "safe_day": "5"}
        )
    for group in GROUPS:
        send("focus_group", {"participants_agreed": "yes", "region": "sughd", **group})
    emails = {}
    for role in ("coordinator", "analyst"):
        emails[role] = f"dash-{role}-{uuid.uuid4().hex[:6]}@example.tj"
        add_user(live_server.database, emails[role], role, project)
    outsider = f"dash-outsider-{uuid.uuid4().hex[:6]}@example.tj"
    add_user(live_server.database, outsider, "analyst", add_project(live_server.database, "Elsewhere"))
    yield {"live": live_server, "project": project, "emails": emails, "outsider": outsider}


def _browser(board: dict[str, Any], who: str, lang: str = "en") -> Browser:
    browser = Browser.open(board["live"].url)
    browser.http.headers["Accept-Language"] = lang
    email = board["emails"].get(who, who)
    assert browser.sign_in(email).status_code == 302
    return browser


def _csv(browser: Browser, project: int, key: str, **query: str) -> dict[str, list[str]]:
    reply = browser.get(f"/projects/{project}/dashboard/{key}.csv", params=query)
    assert reply.status_code == 200 and reply.headers["Content-Type"].startswith("text/csv"), reply.text
    rows = list(csv.reader(io.StringIO(reply.content.decode("utf-8"))))  # labels hold commas
    return {row[0]: row[1:] for row in rows}


def _by_series(table: dict[str, list[str]], label: str) -> dict[str, str]:
    return dict(zip(table[""], table[label], strict=True))


@pytest.fixture(scope="module")
def coordinator(board: dict[str, Any]) -> Browser:
    return _browser(board, "coordinator")


@pytest.fixture(scope="module")
def analyst(board: dict[str, Any]) -> Browser:
    return _browser(board, "analyst")


def test_coordinator_sees_every_count(board: dict[str, Any], coordinator: Browser) -> None:
    p = board["project"]
    page = coordinator.get(f"/projects/{p}/dashboard")
    assert page.status_code == 200
    titles = ("Submissions per day", "Safety concerns by region and severity", "How safe young people feel",
              "Young people's trust in the police", "Focus-group participants by sex and age")  # fmt: skip
    for title in titles:
        assert title in page.text
    assert page.text.count("<title id=") >= 7
    assert "suppression-note" not in page.text
    assert f'href="/projects/{p}/dashboard"' in coordinator.get(f"/projects/{p}").text

    daily = _csv(coordinator, p, "daily")
    assert sum(int(line[-1]) for label, line in daily.items() if label) == 15 + 8 + 2
    forms = _csv(coordinator, p, "forms")
    assert sorted(int(line[-1]) for label, line in forms.items() if label) == [2, 8, 15]

    region = _csv(coordinator, p, "safety-region")
    sughd = _by_series(region, "Sughd Region")
    assert sughd["Low: a nuisance, nobody is in danger"] == "7" and sughd["Total"] == "13"
    assert _by_series(region, "Khatlon Region")["Total"] == "2"
    district = _csv(coordinator, p, "safety-district")
    assert {k: v[-1] for k, v in district.items() if k} == {"Asht district": "7", "Ayni district": "6",
                                                           "Danghara district": "2"}  # fmt: skip
    category = _csv(coordinator, p, "safety-category")
    assert any(_by_series(category, label)["Total"] == "6" for label in category if label)

    trust = _csv(coordinator, p, "youth-trust")
    fair = next(_by_series(trust, label) for label in trust if label and "fair" in label.lower())
    assert fair["4 – Agree"] == "5" and fair["Don't know"] == "2" and fair["Prefer not to say"] == "1"
    assert fair["Total"] == "8"
    safe = _csv(coordinator, p, "youth-safe")
    day = next(_by_series(safe, label) for label in safe if label and "day" in label.lower())
    assert day["5 – Very safe"] == "8"

    groups = _csv(coordinator, p, "groups-participants")
    assert _by_series(groups, "Women") == {"14–17": "0", "18–29": "4", "30+": "3", "Total": "7"}
    assert _by_series(groups, "Men") == {"14–17": "0", "18–29": "11", "30+": "0", "Total": "11"}


def test_analyst_sees_counts_suppressed_as_donor_reports(board: dict[str, Any], analyst: Browser) -> None:
    p = board["project"]
    page = analyst.get(f"/projects/{p}/dashboard")
    assert page.status_code == 200 and "suppression-note" in page.text
    district = _csv(analyst, p, "safety-district")
    assert district["Danghara district"][-1] == "[c]"  # 2 < k
    assert district["Ayni district"][-1] == "[c]"  # its complement: 2 alone follows from the total
    assert district["Asht district"][-1] == "7"
    # The same table as the donor report of the same questions, cell for cell.
    region = _csv(analyst, p, "safety-region")
    assert _by_series(region, "Khatlon Region")["Total"] == "[c]"
    base = board["live"].url
    credentials = {"email": board["emails"]["analyst"], "password": PASSWORD}
    signed = requests.post(f"{base}/v1/sessions", json=credentials, timeout=30)
    donor = requests.get(f"{base}/v1/projects/{p}/forms/safety_concerns/report.csv", timeout=30,
                         params={"rows": "region", "cols": "severity", "lang": "en"},
                         headers={"Authorization": f"Bearer {signed.json()['token']}"})  # fmt: skip
    report = {row[0]: row[1:] for row in csv.reader(io.StringIO(donor.text.split("\n\n")[0])) if row}
    for label in ("Sughd Region", "Khatlon Region"):
        assert region[label] == report[label], label
    # Category is tagged sensitive: each severity holds one category only (all 7 "low" are thefts), so
    # every category cell of those columns is hidden, though no count of 6 or 7 is small.
    category = _csv(analyst, p, "safety-category")
    for label, line in category.items():
        if label:
            assert line[:-1] == ["[c]"] * (len(line) - 1), (label, line)
    trust = _csv(analyst, p, "youth-trust")
    fair = next(_by_series(trust, label) for label in trust if label and "fair" in label.lower())
    assert fair["Don't know"] == fair["Prefer not to say"] == "[c]" and fair["4 – Agree"] == "5"
    groups = _csv(analyst, p, "groups-participants")
    assert _by_series(groups, "Women")["30+"] == "[c]" and _by_series(groups, "Men")["18–29"] == "11"
    svg = analyst.get(f"/projects/{p}/dashboard/safety-district.svg")
    assert svg.status_code == 200 and svg.headers["Content-Type"].startswith("image/svg+xml")
    assert svg.text.startswith("<?xml") and "<title" in svg.text and "[c]" in svg.text


def test_labels_in_the_users_language_and_access(board: dict[str, Any]) -> None:
    p = board["project"]
    russian = _browser(board, "coordinator", "ru")
    region = _csv(russian, p, "safety-region")
    assert "Согдийская область" in region
    assert "Низкая: неудобство, никто не в опасности" in region[""]
    outsider = _browser(board, board["outsider"])
    assert outsider.get(f"/projects/{p}/dashboard").status_code == 403
    assert outsider.get(f"/projects/{p}/dashboard/daily.csv").status_code == 403
    anonymous = Browser.open(board["live"].url)
    assert anonymous.get(f"/projects/{p}/dashboard").status_code == 302
    coordinator = _browser(board, "coordinator")
    assert coordinator.get(f"/projects/{p}/dashboard/nothing.svg").status_code == 404
    assert coordinator.get(f"/projects/{p}/dashboard", params={"since": "nonsense"}).status_code == 400
    later = _csv(coordinator, p, "forms", since="2099-01-01")  # a range with no submissions
    assert [line[-1] for label, line in later.items() if label] == ["0", "0", "0"]
    assert coordinator.get(f"/projects/{p}/dashboard", params={"since": "2099-01-01"}).status_code == 200


def test_dashboard_in_a_browser(board: dict[str, Any], chromium: Any) -> None:  # noqa: F811
    context = chromium.new_context(viewport={"width": 1366, "height": 768}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(20_000)
    _sign_in(page, board["live"].url, board["emails"]["coordinator"], PASSWORD)
    page.goto(f"{board['live'].url}/projects/{board['project']}")
    page.click("#dashboard-link")
    page.wait_for_load_state()
    assert page.locator("section.chart svg").count() >= 7
    assert page.locator("button.png").first.is_visible()  # the script ran (and CSP allowed it)
    with page.expect_download() as download:
        page.locator("#chart-safety-region button.png").click()
    png = Path(download.value.path()).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and _colours(png) > 4
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = page.screenshot(path=str(SCREENSHOTS / "dashboard-en.png"), full_page=True)
    assert _colours(shot) > MIN_COLOURS
    page.click("form.langs button[value=tg]")
    page.wait_for_load_state()
    assert page.locator("h1").inner_text().startswith("Панели нишондиҳандаҳо")
    page.locator("#chart-safety-category").evaluate("element => element.scrollIntoView()")
    shot = page.screenshot(path=str(SCREENSHOTS / "dashboard-tg.png"))  # one screen, for the README
    assert _colours(shot) > MIN_COLOURS
    context.close()
