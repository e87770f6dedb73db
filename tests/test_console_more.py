"""The console's Digest devices and form assignments, photo thumbnails and entity lists over real HTTP,
seeded through OpenRosa (a Collect-like client) and the /v1 API; the same on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import re
import uuid as uuidlib

import pytest
import requests
from PIL import Image
from sqlalchemy import select

from server.config import settings
from server.models import AuditEvent, Entity
from server.thumbnails import cache_path
from tests.collect_emulator import CollectEmulator
from tests.conftest import LiveServer
from tests.console_more_support import Seeded, seed
from tests.console_support import Browser
from tests.openrosa_setup import digest_url
from tests.test_console_ops import api_token
from tests.test_console_pages import _signed_in


@pytest.fixture(scope="module")
def world(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    return seed(live_server, tmp_path_factory.mktemp("console-more"))


@pytest.fixture(scope="module")
def admin(world: Seeded) -> tuple[Browser, str]:
    return _signed_in(world.live, "admin", world.project)


@pytest.fixture(scope="module")
def analyst(world: Seeded) -> Browser:
    return _signed_in(world.live, "analyst", world.project)[0]


def _actions(world: Seeded, action: str) -> list[AuditEvent]:
    with world.live.database.read() as session:
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.action == action, AuditEvent.project_id == world.project)
        ).all()
        for row in rows:
            session.expunge(row)
        return list(rows)


# ---- devices -----------------------------------------------------------------------------------------


def test_a_digest_device_and_the_forms_it_sees(
    world: Seeded, admin: tuple[Browser, str], analyst: Browser
) -> None:
    browser, _ = admin
    p = world.project
    devices = f"/projects/{p}/devices"
    differ = browser.post(
        devices,
        {"name": "hub-tablet", "password": "long enough 1", "password_again": "other"},
        token_from=devices,
    )
    assert differ.status_code == 400 and "differ" in differ.text
    short = browser.post(
        devices, {"name": "hub-tablet", "password": "short", "password_again": "short"}, token_from=devices
    )
    assert short.status_code == 400
    made = browser.post(
        devices,
        {"name": "hub-tablet", "password": "long enough 1", "password_again": "long enough 1"},
        token_from=devices,
    )
    assert made.status_code == 200, made.text
    assert '<code id="digest-username">hub-tablet</code>' in made.text
    assert f"{world.live.url}/v1/projects/{p}</code>" in made.text  # no key in the address
    assert "/v1/key/" not in made.text and 'class="qr"' in made.text
    assert (_actions(world, "field_key.create")[-1].details or {}).get("with_password") is True

    listing = browser.get(devices)
    found = re.search(rf'href="/projects/{p}/devices/(\d+)">hub-tablet</a>', listing.text)
    assert found, listing.text
    device_id = int(found.group(1))
    page = browser.get(f"{devices}/{device_id}")
    assert page.status_code == 200 and 'id="collect-settings"' in page.text
    assert analyst.get(f"{devices}/{device_id}").status_code == 403

    # The password works for Collect over Digest; with no assignment it sees every open form.
    collect = CollectEmulator(digest_url(world.live.url, p), username="hub-tablet", password="long enough 1")
    assert {f.form_id for f in collect.form_list()} == {"photos", "concern_new", "concern_visit"}

    forms_url = f"{devices}/{device_id}/forms"
    forged = browser.http.post(world.live.url + forms_url, data={"form": "photos"}, allow_redirects=False)
    assert forged.status_code in (400, 403)
    refused = analyst.post(forms_url, {"form": "photos"}, token_from="/")
    assert refused.status_code == 403
    saved = browser.post(
        forms_url, {"form": ["photos", "concern_visit"]}, token_from=f"{devices}/{device_id}"
    )
    assert saved.status_code == 302 and saved.headers["Location"].endswith("saved=1")
    assert {f.form_id for f in collect.form_list()} == {"photos", "concern_visit"}
    page = browser.get(f"{devices}/{device_id}")
    assert re.search(r'value="photos" checked', page.text) and not re.search(
        r'value="concern_new" checked', page.text
    )
    assert "Photos" in browser.get(devices).text  # the list says what each device sees

    # The API reads the same assignments.
    headers = api_token(world.live, admin[1])
    listed = requests.get(
        f"{world.live.url}/v1/projects/{p}/assignments/forms", headers=headers, timeout=30
    ).json()
    assert {(a["actorId"], a["xmlFormId"]) for a in listed} >= {
        (device_id, "photos"),
        (device_id, "concern_visit"),
    }

    cleared = browser.post(forms_url, {}, token_from=f"{devices}/{device_id}")
    assert cleared.status_code == 302
    assert {f.form_id for f in collect.form_list()} == {"photos", "concern_new", "concern_visit"}
    created = [e.target_id for e in _actions(world, "field_key.assignment.create")]
    deleted = [e.target_id for e in _actions(world, "field_key.assignment.delete")]
    assert sorted(created) == sorted(deleted) == ["concern_visit", "photos"]


# ---- photo thumbnails --------------------------------------------------------------------------------


def test_photos_show_as_small_thumbnails_under_the_api_rules(
    world: Seeded, admin: tuple[Browser, str], analyst: Browser
) -> None:
    browser, _ = admin
    instance_id = world.photo_submission()
    base = f"/projects/{world.project}/forms/photos/submissions/{instance_id}"
    page = browser.get(base)
    assert page.status_code == 200
    assert (
        f'src="{base}/thumbnails/place.jpg"' in page.text and f'src="{base}/thumbnails/card.jpg"' in page.text
    )
    assert f'href="{base}/files/place.jpg"' in page.text

    thumb = browser.get(f"{base}/thumbnails/place.jpg")
    assert thumb.status_code == 200 and thumb.headers["Content-Type"] == "image/webp"
    assert len(thumb.content) < len(world.photo) // 10, (len(thumb.content), len(world.photo))
    with Image.open(io.BytesIO(thumb.content)) as image:
        assert max(image.size) == 240 and image.size == (240, 180)
        assert len(set(image.convert("RGB").get_flattened_data())) > 20  # a picture, not a flat square
    assert thumb.headers["Cache-Control"] == "no-store"  # personal data, as every attachment
    sha = thumb.headers["ETag"].strip('"')
    assert cache_path(settings(world.live.app).data_dir, sha).exists()
    again = browser.get(f"{base}/thumbnails/place.jpg", headers={"If-None-Match": thumb.headers["ETag"]})
    assert again.status_code == 304

    full = browser.get(f"{base}/files/place.jpg")
    assert full.status_code == 200 and full.content == world.photo
    assert (
        full.headers["Content-Type"] == "image/jpeg" and "sandbox" in full.headers["Content-Security-Policy"]
    )

    # An analyst sees the place, never the ID card: not on the page, not as a thumbnail, not as a file.
    seen = analyst.get(base)
    assert f"{base}/thumbnails/place.jpg" in seen.text and "card.jpg" not in seen.text
    assert analyst.get(f"{base}/thumbnails/card.jpg").status_code == 403
    assert analyst.get(f"{base}/files/card.jpg").status_code == 403
    assert analyst.get(f"{base}/thumbnails/place.jpg").status_code == 200
    assert browser.get(f"{base}/thumbnails/nothing.jpg").status_code == 404
    anonymous = Browser.open(world.live.url).get(f"{base}/thumbnails/place.jpg")
    assert anonymous.status_code == 302 and "/sign-in" in anonymous.headers["Location"]


# ---- entity lists ------------------------------------------------------------------------------------


def test_entity_lists_entities_filters_and_paging(
    world: Seeded, admin: tuple[Browser, str], analyst: Browser
) -> None:
    browser, email = admin
    p = world.project
    world.concern("Vakhsh")
    resolved = world.concern("Panj")
    world.visit(resolved, "resolved", 1)
    # 60 more through the API, so that the table needs two pages.
    headers = api_token(world.live, email)
    bulk = requests.post(
        f"{world.live.url}/v1/projects/{p}/datasets/concerns/entities",
        json={
            "entities": [
                {"label": f"Bulk {i}", "data": {"district": "Rasht", "status": "open"}} for i in range(60)
            ],
            "source": {"name": "visits.csv"},
        },
        headers=headers,
        timeout=60,
    )
    assert bulk.status_code == 200, bulk.text

    lists = analyst.get(f"/projects/{p}/entity-lists")  # any role reads lists, as in the API
    assert lists.status_code == 200
    assert re.search(r'>concerns</a></td>\s*<td class="num">62</td>', lists.text), lists.text
    assert "district, status" in lists.text and "as soon as received" in lists.text
    assert f'href="/projects/{p}/entity-lists"' in browser.get(f"/projects/{p}").text

    table = f"/projects/{p}/entity-lists/concerns"
    first = browser.get(table)
    assert first.status_code == 200 and first.text.count("entity-lists/concerns/entities/") == 50
    older = re.search(r'href="([^"]+)" id="next-page"', first.text)
    assert older
    second = browser.get(older.group(1).replace("&amp;", "&"))
    assert second.text.count("entity-lists/concerns/entities/") == 12 and 'id="next-page"' not in second.text
    both = set(re.findall(r"entities/([0-9a-f-]{36})", first.text + second.text))
    assert len(both) == 62

    only = browser.get(f"{table}?prop=status&value=resolved")
    assert only.text.count("entity-lists/concerns/entities/") == 1 and resolved in only.text
    vakhsh = browser.get(f"{table}?prop=district&value=Vakhsh")
    assert vakhsh.text.count("entity-lists/concerns/entities/") == 1
    assert browser.get(f"{table}?prop=nothing&value=x").status_code == 400
    assert browser.get(f"/projects/{p}/entity-lists/nothing").status_code == 404


def test_an_entity_versions_and_its_conflict_marked_resolved(
    world: Seeded, admin: tuple[Browser, str], analyst: Browser
) -> None:
    browser, _ = admin
    p = world.project
    uuid = world.concern("Farkhor")
    world.visit(uuid, "resolved", 1, branch=str(uuidlib.uuid4()))
    world.visit(uuid, "open", 1, branch=str(uuidlib.uuid4()))  # made apart on version 1: a conflict
    address = f"/projects/{p}/entity-lists/concerns/entities/{uuid}"

    page = browser.get(address)
    assert page.status_code == 200
    assert 'id="conflict"' in page.text and 'id="resolve"' in page.text
    assert page.text.count('<li id="version-') == 3
    assert "made on version 1" in page.text  # version 3 followed version 2 but was made on 1
    assert re.search(
        r"<th scope=\"row\">status</th><td><del>open</del></td><td><ins>resolved</ins>", page.text
    )
    assert "Device Tablet K1" in page.text
    assert f"/projects/{p}/forms/concern_visit/submissions/uuid:" in page.text
    assert "conflict" in browser.get(f"/projects/{p}/entity-lists/concerns?conflicts=1").text

    seen = analyst.get(address)
    assert seen.status_code == 200 and 'id="resolve"' not in seen.text
    assert "Tablet K1" not in seen.text  # device names as pseudonyms, as on the submissions pages
    assert analyst.post(f"{address}/resolve", {"base_version": "3"}).status_code == 403
    stale = browser.post(f"{address}/resolve", {"base_version": "2"}, token_from=address)
    assert stale.status_code == 409
    forged = browser.http.post(
        f"{world.live.url}{address}/resolve", data={"base_version": "3"}, allow_redirects=False
    )
    assert forged.status_code in (400, 403)

    done = browser.post(f"{address}/resolve", {"base_version": "3"}, token_from=address)
    assert done.status_code == 302
    after = browser.get(done.headers["Location"])
    assert 'id="resolved"' in after.text and 'id="conflict"' not in after.text
    with world.live.database.read() as session:
        assert session.scalar(select(Entity.conflict).where(Entity.uuid == uuid)) is None
    (event,) = [e for e in _actions(world, "entity.update.resolve") if e.target_id == uuid]
    assert event.details["dataset"] == "concerns" and event.details["source"] == {"via": "console"}
    again = browser.post(f"{address}/resolve", {"base_version": "3"}, token_from=address)
    assert again.status_code == 400  # no conflict left: Central's 400.32, as the API answers
