"""Publishing forms: pyxform in a child process, the XForm parse, version rules and media, via the CLI."""

from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import xlsxwriter
from sqlalchemy import select

from server.errors import Problem
from server.forms.convert import convert_xlsform
from server.forms.xform import parse_xform
from server.models import AuditEvent, Blob, Form, FormVersion
from tests.conftest import FORMS_DIR, AppEnv

CliRunner = Callable[..., subprocess.CompletedProcess[str]]
SARHAD_NS = 'sarhad="https://sarhad.tj/xforms"'
MISSION_FORMS = ("safety_concerns", "focus_group", "youth_consultation", "contact_signup")


def xlsform(
    survey: Sequence[Sequence[str]],
    settings: dict[str, str] | None = None,
    choices: Sequence[Sequence[str]] | None = None,
    external_choices: Sequence[Sequence[str]] | None = None,
) -> bytes:
    """An .xlsx XLSForm: ``survey`` and ``choices`` are rows, the first one the headers."""
    buf = io.BytesIO()
    book = xlsxwriter.Workbook(buf)
    sheets = (("survey", survey), ("choices", choices), ("external_choices", external_choices))
    for sheet_name, rows in sheets:
        if rows:
            sheet = book.add_worksheet(sheet_name)
            for i, row in enumerate(rows):
                sheet.write_row(i, 0, row)
    if settings:
        sheet = book.add_worksheet("settings")
        sheet.write_row(0, 0, list(settings))
        sheet.write_row(1, 0, list(settings.values()))
    book.close()
    return buf.getvalue()


YES_NO = [["list_name", "name", "label"], ["yn", "yes", "Yes"], ["yn", "no", "No"]]


def rich_form(version: str = "1", form_id: str = "rich", label: str = "Your name") -> bytes:
    """Groups, a repeat, a photo, choices, CSV lookups, an image label and sensitivity tags."""
    survey = [
        ["type", "name", "label", "media::image", "bind::sarhad:sensitivity", "appearance", "calculation"],
        ["text", "respondent", label, "logo.png", "personal", "", ""],
        ["select_one_from_file regions.csv", "region", "Region", "", "", "", ""],
        ["calculate", "population", "", "", "", "", "pulldata('districts', 'pop', 'name', ${region})"],
        ["select_one jamoat", "jamoat_known", "Jamoat?", "", "", "search('jamoats')", ""],
        ["begin group", "incident", "Incident", "", "sensitive", "", ""],
        ["integer", "age", "Age", "", "", "", ""],
        ["text", "what", "What happened", "", "", "", ""],
        ["end group", "", "", "", "", "", ""],
        ["begin repeat", "visit", "Visit", "", "", "", ""],
        ["image", "photo", "Photo", "", "", "", ""],
        ["geopoint", "where", "Where", "", "", "", ""],
        ["date", "when", "When", "", "", "", ""],
        ["end repeat", "", "", "", "", "", ""],
        ["select_multiple yn", "many", "Many", "", "", "", ""],
    ]
    settings = {"form_id": form_id, "version": version, "form_title": "Rich form", "namespaces": SARHAD_NS}
    return xlsform(survey, settings, [*YES_NO, ["jamoat", "name", "name"]])


def simple_form(
    form_id: str, version: str, label: str = "Name", extra: dict[str, str] | None = None
) -> bytes:
    settings = {"form_id": form_id, "version": version, "form_title": f"Form {form_id}", **(extra or {})}
    return xlsform([["type", "name", "label"], ["text", "name", label]], settings)


# ---- conversion and parsing (the real child process) ------------------------------------------------


def test_parse_gives_exact_fields_media_and_metadata() -> None:
    converted = convert_xlsform(rich_form(), ".xlsx", fallback_id=None, timeout=120)
    info = parse_xform(converted.xform)
    assert (info.form_id, info.version, info.title, info.root_name) == ("rich", "1", "Rich form", "data")
    assert info.public_key is None
    assert set(info.media_names) == {"logo.png", "regions.csv", "districts.csv", "jamoats.csv"}
    assert {m.name: m.kind for m in info.media}["logo.png"] == "image"
    by_path = {f.path: f for f in info.fields}
    assert [f.path for f in info.fields] == [
        "/data/respondent",
        "/data/region",
        "/data/population",
        "/data/jamoat_known",
        "/data/incident",
        "/data/incident/age",
        "/data/incident/what",
        "/data/visit",
        "/data/visit/photo",
        "/data/visit/where",
        "/data/visit/when",
        "/data/many",
        "/data/meta",
        "/data/meta/instanceID",
    ]
    assert by_path["/data/respondent"].sensitivity == "personal"
    assert by_path["/data/region"].type == "select1" and by_path["/data/many"].type == "select"
    incident = by_path["/data/incident"]
    assert (incident.type, incident.group, incident.repeat, incident.sensitivity) == (
        "structure",
        True,
        False,
        "sensitive",
    )
    # A group's tag covers the questions inside it.
    assert (
        by_path["/data/incident/age"].type == "int"
        and by_path["/data/incident/age"].sensitivity == "sensitive"
    )
    visit = by_path["/data/visit"]
    assert (visit.type, visit.repeat, visit.group, visit.repeat_path) == ("repeat", True, True, "/data/visit")
    photo = by_path["/data/visit/photo"].as_dict()
    assert photo == {
        "path": "/data/visit/photo",
        "name": "photo",
        "type": "binary",
        "repeat": False,
        "group": False,
        "sensitivity": None,
        "binary": True,
        "repeat_path": "/data/visit",
    }
    assert by_path["/data/visit/where"].type == "geopoint" and by_path["/data/visit/when"].type == "date"
    assert [f.path for f in info.fields if f.binary] == ["/data/visit/photo"]
    assert by_path["/data/meta/instanceID"].repeat_path is None


def test_encryption_key_and_fallback_id() -> None:
    converted = convert_xlsform(
        simple_form("", "7", extra={"public_key": "MIIBIjAN BgkqhkiG"}),
        ".xlsx",
        fallback_id="my_form",
        timeout=120,
    )
    info = parse_xform(converted.xform)
    assert info.form_id == "my_form" and info.public_key == "MIIBIjANBgkqhkiG"


@pytest.mark.parametrize(
    "xml",
    [
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
        b'<h:html xmlns:h="http://www.w3.org/1999/xhtml">&lol2;</h:html>',
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><x>&xxe;</x>',
        b'<!DOCTYPE html SYSTEM "http://127.0.0.1:9/x.dtd"><h:html xmlns:h="http://www.w3.org/1999/xhtml"/>',
    ],
)
def test_doctype_and_entities_are_refused(xml: bytes) -> None:
    with pytest.raises(Problem) as caught:
        parse_xform(xml)
    assert caught.value.status == 400 and "DOCTYPE" in caught.value.message


def test_not_an_xform_too_large_and_missing_id() -> None:
    for xml, status in [
        (b"<html>unclosed", 400),
        (b"<data/>", 400),
        (b'<h:html xmlns:h="http://www.w3.org/1999/xhtml"><h:head/></h:html>', 400),
        (b"<x>" + b"a" * 2000 + b"</x>", 413),
    ]:
        with pytest.raises(Problem) as caught:
            parse_xform(xml, max_bytes=1000)
        assert caught.value.status == status and caught.value.message
    no_id = convert_xlsform(simple_form("f", "1"), ".xlsx", fallback_id=None, timeout=120).xform
    with pytest.raises(Problem, match="no id attribute"):
        parse_xform(no_id.replace(' id="f"', ""))


def test_pyxform_errors_name_sheet_and_row() -> None:
    bad = xlsform([["type", "name", "label"], ["text", "a", "A"], ["text", "a", "Again"]])
    with pytest.raises(Problem) as caught:
        convert_xlsform(bad, ".xlsx", fallback_id="dup", timeout=120)
    problem = caught.value
    assert problem.status == 400 and problem.code == "400.8"
    assert problem.details == {"sheet": "survey", "row": 3}
    assert "Traceback" not in problem.message and "'a'" in problem.message

    with pytest.raises(Problem) as garbage:
        convert_xlsform(b"PK\x03\x04 not really a zip", ".xlsx", fallback_id=None, timeout=120)
    assert garbage.value.status == 400 and "Traceback" not in garbage.value.message

    broken_calc = xlsform([["type", "name", "label", "calculation"], ["calculate", "c", "", "if(1 <2, 0, 1"]])
    if shutil.which("java") is None:
        converted = convert_xlsform(broken_calc, ".xlsx", fallback_id="calc", timeout=120)
        assert any("Java is not installed" in w for w in converted.warnings)
        return
    with pytest.raises(Problem, match="ODK Validate"):
        convert_xlsform(broken_calc, ".xlsx", fallback_id="calc", timeout=120)


def test_conversion_time_limit_kills_the_worker() -> None:
    with pytest.raises(Problem) as caught:
        convert_xlsform(rich_form(), ".xlsx", fallback_id=None, timeout=0.05)
    assert caught.value.status == 400 and "longer than" in caught.value.message


# ---- the CLI ------------------------------------------------------------------------------------------


@pytest.fixture
def cli_env(make_env: Callable[[], AppEnv], run_cli: CliRunner) -> AppEnv:
    env = make_env()
    run_cli(env, "project", "create", "Khorog")
    return env


@dataclass
class VersionRow:
    id: int
    version: str
    xml: str
    published: bool
    media: dict[str, str | None]
    xlsform_filename: str | None
    xlsform_sha256: str | None
    fields: list[dict[str, object]]


def _versions(env: AppEnv, form_id: str) -> tuple[Form, list[VersionRow]]:
    """The form row and its versions as plain values, read straight from the database."""
    database = env.app().extensions["sarhad.db"]
    with database.read() as session:
        form = session.scalar(select(Form).where(Form.xml_form_id == form_id))
        assert form is not None
        rows = [
            VersionRow(
                v.id,
                v.version,
                v.xml,
                v.published_at is not None,
                {m.name: m.blob_sha256 for m in v.media},
                v.xlsform_filename,
                v.xlsform_sha256,
                v.fields,
            )
            for v in session.scalars(
                select(FormVersion).where(FormVersion.form_id == form.id).order_by(FormVersion.id)
            )
        ]
        session.expunge(form)
    database.engine.dispose()
    return form, rows


def test_cli_publish_version_rules_and_media(cli_env: AppEnv, run_cli: CliRunner, tmp_path: Path) -> None:
    folder = tmp_path / "forms"
    folder.mkdir()
    (folder / "rich.xlsx").write_bytes(rich_form("1"))
    (folder / "regions.csv").write_text("name,label\nkhorog,Khorog\n")
    (folder / "districts.csv").write_text("name,pop\nkhorog,30000\n")

    first = run_cli(cli_env, "forms", "publish", str(folder / "rich.xlsx"), "--project", "Khorog")
    assert "published new form rich version '1'" in first.stdout
    assert "attached regions.csv" in first.stdout and "attached districts.csv" in first.stdout
    assert "logo.png" in first.stdout and "jamoats.csv" in first.stdout  # the missing ones are named

    # Same file again: a no-op that says so. With a missing file now present: it is attached.
    (folder / "jamoats.csv").write_text("name,label\nj1,Jamoat 1\n")
    again = run_cli(cli_env, "forms", "publish", str(folder / "rich.xlsx"), "--project", "Khorog")
    assert "already published" in again.stdout and "attached missing media: jamoats.csv" in again.stdout

    # Same version, other content: refused, one plain line, exit 1, nothing stored.
    (folder / "rich.xlsx").write_bytes(rich_form("1", label="Full name"))
    refused = run_cli(
        cli_env, "forms", "publish", str(folder / "rich.xlsx"), "--project", "Khorog", check=False
    )
    assert refused.returncode == 1
    assert "change the version in the settings sheet" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr

    # A new version becomes current; the old one stays; identical media reuse the same blobs.
    (folder / "rich.xlsx").write_bytes(rich_form("2", label="Full name"))
    newer = run_cli(cli_env, "forms", "publish", str(folder / "rich.xlsx"), "--project", "Khorog")
    assert "version '1' still accepts its submissions" in newer.stdout
    form, versions = _versions(cli_env, "rich")
    assert [v.version for v in versions] == ["1", "2"]
    assert form.current_version_id == versions[1].id and all(v.published for v in versions)
    old_media, new_media = versions[0].media, versions[1].media
    assert old_media == new_media and old_media["logo.png"] is None and old_media["regions.csv"]
    assert versions[0].xlsform_filename == "rich.xlsx" and versions[0].xlsform_sha256
    assert versions[0].xml != versions[1].xml and versions[1].fields[0]["path"] == "/data/respondent"

    listing = run_cli(cli_env, "forms", "list", "--project", "Khorog").stdout
    assert "rich\topen\tversion 2\t2 published\t3/4 media\tRich form" in listing

    database = cli_env.app().extensions["sarhad.db"]
    with database.read() as session:
        actions = session.scalars(select(AuditEvent.action).where(AuditEvent.target_id == "rich")).all()
        assert actions.count("form.update.publish") == 2 and "form.attachment.update" in actions
        for sha in new_media.values():
            if sha:
                assert session.get(Blob, sha) is not None and database.blobs.exists(sha)
    database.engine.dispose()


def test_cli_errors_are_one_line_and_other_files_still_publish(
    cli_env: AppEnv, run_cli: CliRunner, tmp_path: Path
) -> None:
    (tmp_path / "broken.xlsx").write_bytes(b"this is not a spreadsheet")
    (tmp_path / "dup.xlsx").write_bytes(
        xlsform([["type", "name", "label"], ["text", "a", "A"], ["text", "a", "B"]])
    )
    (tmp_path / "good.xlsx").write_bytes(simple_form("good", "1"))
    result = run_cli(
        cli_env,
        "forms",
        "publish",
        *(str(tmp_path / n) for n in ("broken.xlsx", "dup.xlsx", "good.xlsx")),
        "--project",
        "Khorog",
        check=False,
    )
    assert result.returncode == 1
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 2 and "Traceback" not in result.stderr
    assert errors[0].startswith(f"error: {tmp_path / 'broken.xlsx'}: ")
    assert "[row : 3]" in errors[1] and "survey" in errors[1]
    assert "published new form good" in result.stdout

    missing = run_cli(
        cli_env, "forms", "publish", str(tmp_path / "good.xlsx"), "--project", "Nowhere", check=False
    )
    assert missing.returncode == 1 and "There is no project 'Nowhere'" in missing.stderr


def test_cli_publishes_xform_xml(cli_env: AppEnv, run_cli: CliRunner, tmp_path: Path) -> None:
    xml = convert_xlsform(simple_form("plain", "3"), ".xlsx", fallback_id=None, timeout=120).xform
    (tmp_path / "plain.xml").write_text(xml, encoding="utf-8")
    out = run_cli(cli_env, "forms", "publish", str(tmp_path / "plain.xml"), "--project", "1").stdout
    assert "published new form plain version '3'" in out
    form, versions = _versions(cli_env, "plain")
    assert versions[0].xml == xml and versions[0].xlsform_sha256 is None and form.state == "open"


def test_mission_forms_publish_with_their_csv_media(cli_env: AppEnv, run_cli: CliRunner) -> None:
    files = [FORMS_DIR / f"{name}.xlsx" for name in MISSION_FORMS]
    result = run_cli(cli_env, "forms", "publish", *map(str, files), "--project", "Khorog")
    assert result.stdout.count("published new form") == len(MISSION_FORMS)
    database = cli_env.app().extensions["sarhad.db"]
    with database.read() as session:
        for form in session.scalars(select(Form)):
            current = form.current_version
            assert current is not None
            csvs = {m.name: m for m in current.media if m.name.endswith(".csv")}
            for name, row in csvs.items():
                # Every CSV the form uses sits beside it in forms/ and was attached byte for byte.
                assert row.blob_sha256 is not None, f"{form.xml_form_id}: {name} not attached"
                assert database.blobs.read_bytes(row.blob_sha256) == (FORMS_DIR / name).read_bytes()
            assert any(f["sensitivity"] for f in current.fields), f"{form.xml_form_id} tags no field"
    database.engine.dispose()
