"""Helpers of the console tests: a small XLSForm in three languages, users, and a browser-like client
(requests with cookies) that signs in through the sign-in page and sends each form's CSRF token."""

from __future__ import annotations

import io
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from openpyxl import Workbook

from server.db import Database
from server.models import Project
from server.projects import create_project
from server.users import create_user
from tests.collect_emulator import CollectEmulator, Instance, fill, read_form

PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')

SURVEY_HEADER = [
    "type",
    "name",
    "label::English (en)",
    "label::Tajik (tg)",
    "label::Russian (ru)",
    "bind::sarhad:sensitivity",
]


def safety_xlsform(*, broken: bool = False, version: str = "2026120401", form_id: str = "safety") -> bytes:
    """A short survey with labels in en/tg/ru and one personal question. ``broken`` names a choice
    list that does not exist on row 3 of the survey sheet, which pyxform refuses naming that row."""
    wb = Workbook()
    survey = wb.active
    survey.title = "survey"
    survey.append(SURVEY_HEADER)
    survey.append(
        ["text", "respondent_name", "Respondent's name", "Номи посухдиҳанда", "Имя респондента", "personal"]
    )
    survey.append(
        [
            "select_one district" if not broken else "select_one districts",
            "district",
            "District",
            "Ноҳия",
            "Район",
            "",
        ]
    )
    survey.append(["integer", "age", "Age", "Синну сол", "Возраст", ""])
    survey.append(
        [
            "select_one yesno",
            "feels_safe",
            "Do you feel safe?",
            "Шумо худро бехатар ҳис мекунед?",
            "Вы чувствуете себя в безопасности?",
            "",
        ]
    )
    choices = wb.create_sheet("choices")
    choices.append(["list_name", "name", "label::English (en)", "label::Tajik (tg)", "label::Russian (ru)"])
    choices.append(["district", "khorog", "Khorog", "Хоруғ", "Хорог"])
    choices.append(["district", "rushan", "Rushan", "Рӯшон", "Рушан"])
    choices.append(["yesno", "yes", "Yes", "Ҳа", "Да"])
    choices.append(["yesno", "no", "No", "Не", "Нет"])
    settings = wb.create_sheet("settings")
    settings.append(["form_id", "version", "form_title", "default_language", "namespaces"])
    settings.append([form_id, version, "Safety survey", "English (en)", 'sarhad="https://sarhad.tj/xforms"'])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def add_project(database: Database, name: str) -> int:
    with database.write() as w:
        project: Project = create_project(w.session, name)
        return project.id


def add_user(database: Database, email: str, role: str, project_id: int | None) -> None:
    with database.write() as w:
        project = w.session.get(Project, project_id) if project_id is not None else None
        create_user(w.session, email, PASSWORD, role, project)


@dataclass
class Browser:
    """A requests session that behaves as a browser filling the console's forms."""

    base: str
    http: requests.Session

    @classmethod
    def open(cls, base: str) -> Browser:
        http = requests.Session()
        http.trust_env = False
        http.headers["Accept-Language"] = "en"  # pages are in Tajik for a browser that asks for nothing
        return cls(base, http)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.http.get(self.base + path, allow_redirects=False, timeout=60, **kwargs)

    def csrf(self, path: str) -> str:
        page = self.get(path)
        found = _CSRF.search(page.text)
        assert found, f"no CSRF token on {path} ({page.status_code})"
        return found.group(1)

    def post(
        self, path: str, data: dict[str, Any], *, token_from: str = "/", **kwargs: Any
    ) -> requests.Response:
        body = {"csrf_token": self.csrf(token_from), **data}
        return self.http.post(self.base + path, data=body, allow_redirects=False, timeout=120, **kwargs)

    def sign_in(self, email: str, password: str = PASSWORD) -> requests.Response:
        return self.post(
            "/sign-in", {"email": email, "password": password, "next": ""}, token_from="/sign-in"
        )


def collect_submit(token_url: str, form_id: str, *, seed: int = 1) -> Instance:
    """Download ``form_id`` and send one filled instance the way Collect does."""
    collect = CollectEmulator(token_url)
    downloaded = collect.download_forms(only=[form_id])[form_id]
    model = read_form(downloaded.xml, downloaded.media)
    instance = fill(model, rng=random.Random(seed))
    result = collect.submit(instance)
    assert result.sent, result.posts
    return instance


# ---- the browser -------------------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
REQUIRE_BROWSER_ENV = "SARHAD_REQUIRE_BROWSER"


def browser_missing() -> str | None:
    """Why no browser test can run here, or None when Chromium, zbarimg and Playwright are all present."""
    import shutil

    if not Path(CHROMIUM).exists():
        return f"Chromium is not at {CHROMIUM} (scripts/setup-browser installs it as root)"
    if shutil.which("zbarimg") is None:
        return "zbarimg is not installed (scripts/setup-browser installs zbar-tools as root)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (scripts/setup-venv dev installs it)"
    return None


def launch_chromium(playwright: Any) -> Any:
    """Debian's Chromium through Playwright (its own browser download is never used)."""
    return playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
    )
