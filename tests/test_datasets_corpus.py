"""Real XLSForms from the shared corpus, with generated submissions, through every export format.

For each form: 3 submissions with every question answered and every repeat filled twice. The CSV zip
must hold 3 root rows, 3·2^depth rows per repeat table, unique KEYs and a PARENT_KEY that names a row of
the parent table; the XLSX must hold the same rows; the JSON Lines one object per submission.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from server.datasets.export import find_format, stream_export
from server.datasets.redact import RAW_OPERATOR, Access
from server.datasets.schema import load_schema
from server.datasets.tables import ExportOptions, build_tables
from server.errors import Problem
from server.models import Form
from tests.datasets_fixtures import generated_instance, make_project, publish_form, submit

CORPUS_FORMS = (
    "onadata__onadata__libs__tests__utils__fixtures__nested_repeats__nested_repeats.xlsx",
    "onadata__onadata__libs__tests__utils__fixtures__groups_in_repeats__groups_in_repeats.xlsx",
    "onadata__onadata__apps__main__tests__fixtures__gps__gps_in_repeats.xlsx",
    "onadata__onadata__apps__logger__tests__fixtures__childrens_survey_sw.xlsx",
    "onadata__onadata__libs__tests__utils__fixtures__photo_type_in_repeat_group.xlsx",
    "pyxform__tests__example_xls__xlsform_spec_test.xlsx",
)
COUNT = 3


def _export(database: Any, form_pk: int, fmt: str, access: Access = RAW_OPERATOR) -> bytes:
    opts = ExportOptions(access=access, attachments=False)
    return b"".join(stream_export(database, form_pk, find_format(fmt), opts))


@pytest.mark.parametrize("filename", CORPUS_FORMS, ids=lambda name: name.split("__")[-1])
def test_corpus_form_exports(corpus_dir: Path, app: Any, database: Any, filename: str) -> None:
    path = corpus_dir / filename
    if not path.exists():
        pytest.skip(f"{filename} is not in this corpus")
    project_id = make_project(database, f"corpus {filename}")
    try:
        form_pk = publish_form(database, app, project_id, path.read_bytes(), path.name)
    except Problem as problem:
        pytest.skip(f"{filename} does not publish: {problem.message}")
    with database.read() as session:
        form = session.get(Form, form_pk)
        assert form is not None and form.current_version is not None
        instances = [generated_instance(form.current_version, n) for n in range(1, COUNT + 1)]
        schema = load_schema(session, form)
        tables = build_tables(schema, ExportOptions(access=RAW_OPERATOR))
        xml_form_id = form.xml_form_id
    with app.app_context():
        for xml, _, files in instances:
            submit(database, app, project_id, xml, files)
        archive = zipfile.ZipFile(io.BytesIO(_export(database, form_pk, "csv.zip")))
        counts: dict[str, int] = {}
        keys: dict[str | None, set[str]] = {}
        for table in tables:
            rows = list(csv.DictReader(io.StringIO(archive.read(f"{table.name}.csv").decode())))
            counts[table.name] = len(rows)
            keys[table.path] = {r["KEY"] for r in rows}
            assert len(keys[table.path]) == len(rows)
            depth = _depth(schema, table.path) if table.path else 0
            assert len(rows) == COUNT * 2**depth, table.name
            if table.repeat is not None:
                parent = _parent_table(schema, table.path)
                assert {r["PARENT_KEY"] for r in rows} <= keys[parent]
        book = openpyxl.load_workbook(io.BytesIO(_export(database, form_pk, "xlsx")), read_only=True)
        for sheet, table in zip(book.worksheets, tables, strict=False):
            assert sheet.max_row - 1 == counts[table.name]
        lines = _export(database, form_pk, "jsonl").decode().splitlines()
        assert [json.loads(line)["__id"] for line in lines] == [iid for _, iid, _ in reversed(instances)]
        assert xml_form_id


def _depth(schema: Any, path: str) -> int:
    return sum(1 for r in schema.repeats if path == r.rel or path.startswith(r.rel + "/"))


def _parent_table(schema: Any, path: str) -> str | None:
    enclosing = [r.rel for r in schema.repeats if path.startswith(r.rel + "/")]
    return max(enclosing, key=len) if enclosing else None
