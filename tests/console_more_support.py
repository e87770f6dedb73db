"""A project seeded through the real paths for the console's device, photo and entity-list tests: a
form with two photo questions (one personal) and the concern forms that make and update the
``concerns`` entity list, submitted by a Collect-like client over OpenRosa."""

from __future__ import annotations

import io
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path

import openpyxl
from PIL import Image, ImageDraw

from tests.collect_emulator import CollectEmulator, Instance
from tests.conftest import LiveServer
from tests.openrosa_setup import key_url, make_device, make_project, publish_xlsform
from tests.test_entities_from_submissions import _xlsform


def photo_jpeg(width: int = 1600, height: int = 1200) -> bytes:
    """A camera-sized JPEG with something on it (a thumbnail of it is not one flat colour)."""
    image = Image.new("RGB", (width, height), (40, 110, 160))
    draw = ImageDraw.Draw(image)
    for i in range(0, width, 80):
        draw.rectangle((i, 0, i + 40, height), fill=(200, 120 + i % 100, 40))
    draw.ellipse((width // 4, height // 4, width * 3 // 4, height * 3 // 4), fill=(250, 240, 220))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=92)
    return out.getvalue()


def photos_xlsform(path: Path) -> Path:
    book = openpyxl.Workbook()
    survey = book.active
    assert survey is not None
    survey.title = "survey"
    survey.append(["type", "name", "label", "bind::sarhad:sensitivity"])
    survey.append(["image", "photo", "Photo of the place", ""])
    survey.append(["image", "id_photo", "Photo of the ID card", "personal"])
    survey.append(["text", "district", "District", ""])
    settings = book.create_sheet("settings")
    settings.append(["form_id", "version", "form_title", "namespaces"])
    settings.append(["photos", "1", "Photos", 'sarhad="https://sarhad.tj/xforms"'])
    book.save(path)
    return path


@dataclass
class Seeded:
    live: LiveServer
    project: int
    collect: CollectEmulator
    photo: bytes

    def submit(self, form_id: str, body: str, files: dict[str, bytes] | None = None) -> str:
        instance_id = f"uuid:{uuidlib.uuid4()}"
        xml = (
            f'<data id="{form_id}" version="1">{body}<meta><instanceID>{instance_id}</instanceID>'
            "</meta></data>"
        )
        sent = self.collect.submit(Instance(form_id, instance_id, xml.encode(), dict(files or {})))
        assert sent.status == 201, sent.message
        return instance_id

    def photo_submission(self) -> str:
        return self.submit(
            "photos",
            "<photo>place.jpg</photo><id_photo>card.jpg</id_photo><district>Khorog</district>",
            {"place.jpg": self.photo, "card.jpg": self.photo},
        )

    def concern(self, district: str, status: str = "open") -> str:
        uuid = str(uuidlib.uuid4())
        self.submit(
            "concern_new",
            f"<district>{district}</district><status>{status}</status>"
            f'<meta><entity dataset="concerns" create="1" id="{uuid}"><label>{district} concern</label>'
            "</entity></meta>",
        )
        return uuid

    def visit(self, uuid: str, status: str, base: int, *, branch: str = "") -> str:
        trunk = str(base) if branch else ""
        return self.submit(
            "concern_visit",
            f"<concern>{uuid}</concern><status>{status}</status>"
            f'<meta><entity dataset="concerns" update="1" baseVersion="{base}" trunkVersion="{trunk}" '
            f'branchId="{branch}" id="{uuid}"/></meta>',
        )


def seed(live: LiveServer, tmp: Path) -> Seeded:
    app = live.app
    project = make_project(live.database, f"Console more {uuidlib.uuid4().hex[:6]}")
    publish_xlsform(app, project, photos_xlsform(tmp / "photos.xlsx"), media={})
    concern_survey = [
        ["type", "name", "label", "save_to"],
        ["text", "district", "District", "district"],
        ["select_one st", "status", "Status", "status"],
    ]
    new = _xlsform(
        tmp / "concern_new.xlsx",
        concern_survey,
        [["list_name", "label"], ["concerns", "concat(${district}, ' concern')"]],
        "concern_new",
    )
    visit = _xlsform(
        tmp / "concern_visit.xlsx",
        [
            ["type", "name", "label", "save_to"],
            ["select_one_from_file concerns.csv", "concern", "Concern", ""],
            ["select_one st", "status", "Status", "status"],
        ],
        [["list_name", "entity_id"], ["concerns", "${concern}"]],
        "concern_visit",
    )
    publish_xlsform(app, project, new, media={})
    publish_xlsform(app, project, visit, media={})
    _, token = make_device(app, project, "Tablet K1")
    return Seeded(live, project, CollectEmulator(key_url(live.url, token, project)), photo_jpeg())
