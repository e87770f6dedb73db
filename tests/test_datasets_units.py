# ruff: noqa: E501 — the XLSForm table is written out as it is.
"""The pure parts of the datasets pipeline, on XML strings: schema and labels, merging versions,
reading (server.datasets.reader), cleaning checks and redaction rules."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace
from typing import Any

import pytest
from pyxform.xls2xform import convert

from server.datasets.clean import clean_values, compile_constraint, normalise
from server.datasets.reader import read
from server.datasets.redact import Access, Treatment, access_for_role, pseudonym, redact_value
from server.datasets.schema import Field, build_schema, lang_code, merge_fields
from server.errors import Problem
from server.forms.xform import parse_xform

FORM = """
| settings |
| | form_id | version | default_language |
| | units | 7 | English (en) |
| survey |
| | type | name | label::English (en) | label::Tajik (tg) | label::Russian (ru) | required | constraint | relevant | appearance |
| | text | name | Name | Ном | Имя | yes | | | |
| | integer | age | Age | Синну сол | Возраст | yes | . >= 14 and . <= 29 | | |
| | select_one yn | ok | Safe? | Бехатар? | Безопасно? | | | | |
| | text | why | Why | Чаро | Почему | yes | | ${ok} = 'no' | multiline |
| | select_one_from_file districts.csv | district | District | Ноҳия | Район | | | | |
| | begin_group | g | Group | Гурӯҳ | Группа | | | | |
| | begin_repeat | r | Member | Аъзо | Участник | | | | |
| | text | m | Member name | Номи аъзо | Имя участника | | | | |
| | begin_repeat | n | Item | Ашё | Предмет | | | | |
| | text | item | Item | Ашё | Предмет | | | | |
| | end_repeat | | | | | | | | |
| | end_repeat | | | | | | | | |
| | end_group | | | | | | | | |
| choices |
| | list_name | name | label::English (en) | label::Tajik (tg) | label::Russian (ru) |
| | yn | yes | Yes | Ҳа | Да |
| | yn | no | No | Не | Нет |
"""
DISTRICTS = "name,label,label_en,label_tg,label_ru\nasht,Asht,Asht district,ноҳияи Ашт,Аштский\n".encode()


def _version(md: str, version: str = "7") -> Any:
    xml = convert(xlsform=md.encode(), file_type=".md", form_name="data").xform
    info = parse_xform(xml)
    return SimpleNamespace(xml=xml, fields=info.field_dicts(), version=version, id=int(version))


def _schema(md: str = FORM) -> Any:
    return build_schema("units", [_version(md)], media=lambda v: {"districts.csv": DISTRICTS}.get)


def test_labels_and_choices_in_three_languages_with_the_default_as_fallback() -> None:
    schema = _schema()
    ok = schema.by_rel["/ok"]
    assert ok.labels == {"en": "Safe?", "tg": "Бехатар?", "ru": "Безопасно?", "": "Safe?"}
    assert ok.label("tg") == "Бехатар?" and ok.label("fr") == "Safe?"
    assert ok.choice_label("no", "ru") == "Нет" and ok.choice_label("maybe", "ru") is None
    district = schema.by_rel["/district"]
    assert district.choice_file == "districts.csv"
    assert (
        district.choice_label("asht", "tg") == "ноҳияи Ашт"
        and district.choice_label("asht", "ru") == "Аштский"
    )
    why = schema.by_rel["/why"]
    assert why.multiline and why.conditional and why.required
    assert schema.by_rel["/age"].constraint == ". >= 14 and . <= 29"
    assert [f.rel for f in schema.table_fields("/g/r")] == ["/g/r/m"]
    assert lang_code("Tajik (tg)") == "tg" and lang_code("ru") == "ru"


def _f(rel: str, **kw: Any) -> Field:
    name = rel.rsplit("/", 1)[-1]
    return Field(path="/data" + rel, rel=rel, name=name, type=kw.get("type", "string"), repeat=False,
                 group=kw.get("group", False), binary=False, sensitivity=None, repeat_rel=None)  # fmt: skip


def test_versions_merge_as_central_does() -> None:
    old = [_f("/a"), _f("/g", group=True), _f("/g/x"), _f("/g/gone"), _f("/b"), _f("/dropped")]
    new = [_f("/a"), _f("/g", group=True), _f("/g/x"), _f("/b"), _f("/c")]
    merged = [f.rel for f in merge_fields(old, new)]
    # A field the newer version dropped comes back after its parent's subtree (or at the end).
    assert merged == ["/a", "/g", "/g/x", "/g/gone", "/b", "/c", "/dropped"]


def test_reader_keys_nested_repeats_and_ignores_unknown_elements() -> None:
    schema = _schema()
    xml = (
        '<data xmlns:orx="http://openrosa.org/xforms" id="units"><name>A</name><unknown><name>X</name></unknown>'
        "<g><r><m>one</m><n><item>i1</item></n><n><item>i2</item></n></r><r><m>two</m><n><item>i3</item></n></r></g>"
        "<orx:meta><orx:instanceID>uuid:u</orx:instanceID></orx:meta></data>"
    )
    rows = list(read(xml, schema.by_rel, "uuid:u"))
    assert rows[0].values == {"/name": "A", "/meta/instanceID": "uuid:u"}
    assert [(r.table, r.key, r.parent_key) for r in rows[1:]] == [
        ("/g/r", "uuid:u/g/r[1]", "uuid:u"),
        ("/g/r/n", "uuid:u/g/r[1]/n[1]", "uuid:u/g/r[1]"),
        ("/g/r/n", "uuid:u/g/r[1]/n[2]", "uuid:u/g/r[1]"),
        ("/g/r", "uuid:u/g/r[2]", "uuid:u"),
        ("/g/r/n", "uuid:u/g/r[2]/n[1]", "uuid:u/g/r[2]"),
    ]
    assert rows[3].values == {"/g/r/n/item": "i2"}
    # Central's OData ids: SHA-1 of the instance id and the groups/repeats (counted from 0) above the row
    sha1 = lambda text: hashlib.sha1(text.encode()).hexdigest()  # noqa: E731
    assert rows[0].odata_id("uuid:u") == "uuid:u"
    assert rows[1].odata_id("uuid:u") == sha1("Submissions#uuid:u%%g#%%r#0")
    assert rows[3].odata_id("uuid:u") == sha1("Submissions#uuid:u%%g#%%r#0%%n#1")
    assert rows[4].odata_id("uuid:u") == sha1("Submissions#uuid:u%%g#%%r#1")


def test_reader_counts_repeats_across_a_group_met_twice() -> None:
    schema = _schema()
    xml = '<data id="units"><g><r><m>one</m></r></g><g><r><m>two</m></r></g></data>'
    rows = list(read(xml, schema.by_rel, "uuid:u"))
    assert [(r.key, r.values) for r in rows[1:]] == [
        ("uuid:u/g/r[1]", {"/g/r/m": "one"}),
        ("uuid:u/g/r[2]", {"/g/r/m": "two"}),
    ]


def test_cleaning_flags_and_never_fixes() -> None:
    schema = _schema()
    fields = schema.table_fields(None)
    raw = {"/name": "  Ali \t  Vali ", "/age": "31", "/ok": "no"}
    cleaned = clean_values(fields, raw, "7")
    assert cleaned.values["/name"] == "Ali Vali" and cleaned.values["/age"] == "31"
    assert [i.text() for i in cleaned.issues] == ["age: breaks its constraint . >= 14 and . <= 29 ('31')"]
    # Required but empty is flagged only for a question that was certainly asked (no relevant).
    assert [i.text() for i in clean_values(fields, {"/age": "x"}, "7").issues] == [
        "name: required but empty",
        "age: not an integer ('x')",
    ]
    assert clean_values(fields, {"/name": "A", "/age": "20"}, "6").issues == []  # older version: not asked
    multiline = schema.by_rel["/why"]
    assert normalise(multiline, " line  one \r\n\tline two ") == "line one\nline two"
    assert normalise(multiline, " \n ") is None


@pytest.mark.parametrize(
    ("expr", "value", "ok"),
    [
        (". >= 0 and . <= 120", "121", False),
        (". >= 0 and . <= 120", "7", True),
        ("regex(., '^[0-9]{9}$')", "123456789", True),
        ("regex(., '^[0-9]{9}$')", "12345", False),
        ("string-length(.) <= 3", "abcd", False),
        (". != 'x' or (. > 3)", "x", False),
        (". = 'yes'", "yes", True),
    ],
)
def test_simple_constraints_are_rerun(expr: str, value: str, ok: bool) -> None:
    check = compile_constraint(expr)
    assert check is not None and check(value) is ok


@pytest.mark.parametrize("expr", [". <= today()", "${other} > 3", "selected(., 'a')", ". > ", "regex(.)"])
def test_other_constraints_are_not_guessed(expr: str) -> None:
    assert compile_constraint(expr) is None


def test_redaction_rules_per_role() -> None:
    project = SimpleNamespace(pseudonym_key="ab" * 32, coordinators_see_personal=False)
    analyst = access_for_role(project, "analyst")  # type: ignore[arg-type]
    assert access_for_role(project, "admin").raw  # type: ignore[arg-type]
    assert not access_for_role(project, "coordinator").raw  # type: ignore[arg-type]
    project.coordinators_see_personal = True
    assert access_for_role(project, "coordinator").raw  # type: ignore[arg-type]
    with pytest.raises(Problem):
        access_for_role(project, None)  # type: ignore[arg-type]
    personal = {"type": "string", "sensitivity": "personal"}
    assert analyst.treatment(personal) is Treatment.PSEUDONYMISE
    assert analyst.treatment({**personal, "multiline": True}) is Treatment.DROP
    assert analyst.treatment({"type": "binary", "sensitivity": "personal", "binary": True}) is Treatment.DROP
    assert analyst.treatment({"type": "geopoint", "sensitivity": "personal"}) is Treatment.COARSEN
    assert analyst.treatment({"type": "select1", "sensitivity": "sensitive"}) is Treatment.RAW
    key = bytes.fromhex("ab" * 32)
    assert redact_value(analyst, personal, " Ali  VALI ") == pseudonym(key, "ali vali")
    assert pseudonym(key, "Ali") != pseudonym(b"other key", "Ali")
    assert redact_value(analyst, {"type": "select", "sensitivity": "personal"}, "a b").split() == [
        pseudonym(key, "a"),
        pseudonym(key, "b"),
    ]
    assert (
        redact_value(analyst, {"type": "geopoint", "sensitivity": "personal"}, "38.56 68.74 800 5")
        == "38.6 68.7"
    )
    assert redact_value(Access("raw", "admin"), personal, "Ali") == "Ali"
