"""``sarhad export`` on the three mission forms (``forms/*.xlsx``), with generated submissions.

The real command runs in a subprocess against a store filled through the real publishing and ingest
code. Checked: every format opens and holds every submission; labels in Russian; the operator is raw,
``--role analyst`` and ``--as EMAIL`` are redacted; bad input gets one clear line and exit code 1; every
export is audited with its filters.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import openpyxl
import pytest
from sqlalchemy import select

from server.models import AuditEvent, Form
from tests.conftest import FORMS_DIR, AppEnv, RunCli
from tests.datasets_fixtures import PASSWORD, generated_instance, make_project, publish_file, submit

MISSION_FORMS = ("safety_concerns", "focus_group", "youth_consultation")
COUNT = 4


@pytest.fixture(scope="module")
def store(module_env: AppEnv) -> Iterator[AppEnv]:
    app = module_env.app()
    database = app.extensions["sarhad.db"]
    project_id = make_project(database, "Mission")
    for name in MISSION_FORMS:
        form_pk = publish_file(database, app, project_id, FORMS_DIR / f"{name}.xlsx")
        with database.read() as session:
            form = session.get(Form, form_pk)
            assert form is not None and form.current_version is not None
            media = {p.name: p.read_bytes() for p in FORMS_DIR.glob("*.csv")}
            instances = [generated_instance(form.current_version, n, media) for n in range(1, COUNT + 1)]
        for xml, _, files in instances:
            submit(database, app, project_id, xml, files)
    with database.write() as w:
        from server.models import Project
        from server.users import create_user

        project = w.session.get(Project, project_id)
        create_user(w.session, "cli-analyst@example.tj", PASSWORD, "analyst", project)
    yield module_env


def _rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


@pytest.mark.parametrize("name", MISSION_FORMS)
def test_csv_zip_of_each_mission_form(store: AppEnv, run_cli: RunCli, tmp_path: Path, name: str) -> None:
    out = tmp_path / f"{name}.csv.zip"
    result = run_cli(store, "export", name, "--project", "Mission", "-o", str(out))
    assert f"exported {name} to {out}" in result.stdout and "operator (raw)" in result.stdout
    files = zipfile.ZipFile(out)
    names = files.namelist()
    assert names[0] == f"{name}.csv" and "codebook.csv" in names and "conflicts.csv" in names
    rows = _rows(files.read(f"{name}.csv"))
    assert len(rows) == COUNT
    assert next(iter(rows[0])) == "SubmissionDate" and list(rows[0])[-1] == "_issues"
    codebook = _rows(files.read("codebook.csv"))
    personal = [r for r in codebook if r["personal_data"] == "personal"]
    assert personal and all(r["treatment"] == "as collected" for r in personal)
    labelled = [r for r in codebook if r["type"] == "select_one" and r["question_en"]]
    assert labelled and all(r["question_tg"] and r["question_ru"] and r["choices_ru"] for r in labelled)


def test_analyst_role_redacts_the_safety_concerns(store: AppEnv, run_cli: RunCli, tmp_path: Path) -> None:
    raw = tmp_path / "raw.csv.zip"
    redacted = tmp_path / "analyst.csv.zip"
    run_cli(store, "export", "safety_concerns", "--project", "Mission", "-o", str(raw))
    result = run_cli(
        store, "export", "safety_concerns", "--project", "Mission", "--role", "analyst", "-o", str(redacted)
    )
    assert "analyst (redacted)" in result.stdout
    raw_rows = _rows(zipfile.ZipFile(raw).read("safety_concerns.csv"))
    rows = _rows(zipfile.ZipFile(redacted).read("safety_concerns.csv"))
    # a single-line personal answer (the name of an unlisted village): pseudonymised for analysts
    name_column = next(c for c in rows[0] if c.endswith("jamoat_other"))
    description = next(c for c in rows[0] if c.endswith("description"))
    assert (
        raw_rows[0][name_column]
        and raw_rows[0][name_column] in zipfile.ZipFile(raw).read("safety_concerns.csv").decode()
    )
    assert rows[0][name_column].startswith("p_") and rows[0][description] == ""
    assert raw_rows[0][name_column].encode() not in zipfile.ZipFile(redacted).read("safety_concerns.csv")


def test_xlsx_with_russian_labels(store: AppEnv, run_cli: RunCli, tmp_path: Path) -> None:
    out = tmp_path / "youth.xlsx"
    run_cli(
        store,
        "export",
        "youth_consultation",
        "--project",
        "Mission",
        "--labels",
        "--lang",
        "ru",
        "-o",
        str(out),
    )
    book = openpyxl.load_workbook(out, read_only=True)
    assert book.sheetnames[0] == "youth_consultation" and book.sheetnames[-2:] == ["codebook", "conflicts"]
    rows = list(book["youth_consultation"].iter_rows(values_only=True))
    assert len(rows) == 1 + COUNT
    header = rows[0]
    assert header[0] == "SubmissionDate" and "_issues" in header
    text = " ".join(str(v) for row in rows[1:] for v in row if v is not None)
    assert any("\u0400" <= ch <= "\u04ff" for ch in text)  # Russian choice labels, not codes
    codebook = list(book["codebook"].iter_rows(values_only=True))
    assert codebook[0][0] == "variable" and len(codebook) > 10


def test_jsonl_and_geojson_with_sidecars(store: AppEnv, run_cli: RunCli, tmp_path: Path) -> None:
    jsonl = tmp_path / "sc.jsonl"
    result = run_cli(store, "export", "safety_concerns", "--project", "Mission", "-o", str(jsonl))
    lines = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == COUNT and all(line["__id"].startswith("uuid:") for line in lines)
    assert "codebook.csv" in result.stdout and (tmp_path / "sc.jsonl.codebook.csv").exists()
    geo = tmp_path / "sc.geojson"
    run_cli(store, "export", "safety_concerns", "--project", "Mission", "--role", "analyst", "-o", str(geo))
    collection = json.loads(geo.read_text(encoding="utf-8"))
    assert collection["type"] == "FeatureCollection" and collection["codebook"]
    points = [f["geometry"]["coordinates"] for f in collection["features"]]
    assert len(points) == COUNT and all(len(p) == 2 and round(p[0], 1) == p[0] for p in points)


def test_export_as_a_web_user_and_audit(store: AppEnv, run_cli: RunCli, tmp_path: Path) -> None:
    out = tmp_path / "fg.csv.zip"
    result = run_cli(
        store, "export", "focus_group", "--project", "Mission", "--as", "cli-analyst@example.tj",
        "--since", "2020-01-01", "--until", "2099-12-31", "--review-state", "received", "-o", str(out),
    )  # fmt: skip
    assert "as cli-analyst@example.tj (redacted)" in result.stdout
    app = store.app()
    with app.extensions["sarhad.db"].read() as session:
        events = list(
            session.scalars(
                select(AuditEvent)
                .where(AuditEvent.action == "form.submission.export")
                .order_by(AuditEvent.id)
            )
        )
        last = events[-1]
        assert last.target_id == "focus_group" and last.actor_user_id is not None
        assert last.details["via"] == "cli" and last.details["access"]["level"] == "redacted"
        assert last.details["filters"]["until"].startswith("2100-01-01")
        assert any(e.details["access"] == {"level": "raw", "role": "operator"} for e in events)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope", "-o", "x.csv.zip"], "There is no form 'nope'"),
        (["focus_group", "-o", "x.txt"], "Give --format"),
        (["focus_group", "-o", "x.geojson"], "no geopoint question"),
        (["focus_group", "--since", "soon", "-o", "x.csv.zip"], "is not a date"),
        (["focus_group", "--as", "nobody@example.tj", "-o", "x.csv.zip"], "no web user"),
    ],
)
def test_bad_input_gets_one_clear_line(
    store: AppEnv, run_cli: RunCli, tmp_path: Path, args: list[str], message: str
) -> None:
    args = [str(tmp_path / a) if a.startswith("x.") else a for a in args]
    result = run_cli(store, "export", *args[:1], "--project", "Mission", *args[1:], check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("name", "rows", "dimensions", "cols"),
    [
        ("safety_concerns", "region,district,category", 3, "respondent_sex"),
        ("youth_consultation", "region,age:14-17,18-24,25-", 2, "sex"),
        ("focus_group", "region,fg_date:quarter", 2, "venue"),
    ],
)
def test_donor_report_of_each_mission_form(store: AppEnv, run_cli: RunCli, tmp_path: Path, name: str,
                                           rows: str, dimensions: int, cols: str) -> None:  # fmt: skip
    out = tmp_path / f"{name}-report.csv"
    result = run_cli(store, "report", name, "--project", "Mission", "--rows", rows, "--cols", cols,
                     "--lang", "tg", "-o", str(out))  # fmt: skip
    assert f"({COUNT} submissions," in result.stdout
    table = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8").split("\n\n")[0])))
    assert table[-1][0] == "Total" and len(table[0]) > dimensions + 2
    # Four submissions: every non-zero count is below k, the grand total too, so none of them is shown.
    assert all(cell in ("0", "[c]") for line in table[1:] for cell in line[dimensions:])
    assert table[-1][-1] == "[c]" and sum(line.count("[c]") for line in table) >= 2
