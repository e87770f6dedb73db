"""The mission's XLSForms in ``forms/``: they convert, pass ODK Validate, are translated, ship their media
and tag personal and sensitive fields in the XForm (the server reads the XForm, not the xlsx).

Every ``forms/*.xlsx`` goes through the generic checks, so a new form is checked as soon as it is added;
``EXPECTED_*`` pins down what the three mission forms must carry. See ``forms/README.md``.
"""

from __future__ import annotations

import csv
import re
import shutil
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from lxml import etree
from pyxform.validators.odk_validate import check_xform
from pyxform.xls2xform import convert

FORMS_DIR = Path(__file__).parent.parent / "forms"
XLSFORMS = sorted(p for p in FORMS_DIR.glob("*.xlsx") if not p.name.startswith("~$"))
CSV_MEDIA = sorted(FORMS_DIR.glob("*.csv"))

LANGUAGES = ("English (en)", "Tajik (tg)", "Russian (ru)")
DEFAULT_LANGUAGE = "English (en)"
SARHAD_NS = "https://sarhad.tj/xforms"
SENSITIVITY = f"{{{SARHAD_NS}}}sensitivity"
SENSITIVITY_VALUES = {"personal", "sensitive"}
NS = {"h": "http://www.w3.org/1999/xhtml", "x": "http://www.w3.org/2002/xforms"}
JR_NS = "http://openrosa.org/javarosa"

CYRILLIC = re.compile("[\u0400-\u04ff]")
MEDIA_URI = re.compile(r"jr://(?:file|file-csv|images|audio|video)/([^\"'\s<>)]+)")
XML_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
METADATA = {"start", "end", "today", "deviceid"}

EXPECTED_FORMS = {"safety_concerns", "focus_group", "youth_consultation"}
EXPECTED_SENSITIVITY: dict[str, dict[str, str]] = {
    "safety_concerns": {
        "deviceid": "personal",
        "gps": "personal",
        "category_other": "personal",
        "gbv_relationship": "sensitive",
        "gbv_support": "sensitive",
        "police_conduct_type": "sensitive",
        "recruitment_channel": "sensitive",
        "description": "personal",
        "suggested_action": "personal",
        "respondent_name": "personal",
        "respondent_phone": "personal",
        "photo": "personal",
    },
    "focus_group": {
        "deviceid": "personal",
        "facilitator_name": "personal",
        "issue_text": "personal",
        "proposed_action": "personal",
        "flipchart_photo": "personal",
        "observations": "personal",
    },
    "youth_consultation": {
        "deviceid": "personal",
        "main_concerns_other": "personal",
        "online_divisive": "sensitive",
        "online_divisive_freq": "sensitive",
        "online_divisive_platforms": "sensitive",
        "recruitment_approach": "sensitive",
        "contact_name": "personal",
        "contact_phone": "personal",
    },
}
# personal free text that may name people: a multi-line box, which exports drop instead of pseudonymising
EXPECTED_FREE_TEXT: dict[str, set[str]] = {
    "safety_concerns": {"category_other", "description", "suggested_action"},
    "focus_group": {"issue_text", "proposed_action", "observations"},
    "youth_consultation": {"main_concerns_other"},
}
EXPECTED_MEDIA: dict[str, set[str]] = {
    "safety_concerns": {"regions.csv", "districts.csv", "jamoats.csv"},
    "focus_group": {"regions.csv", "districts.csv", "jamoats.csv"},
    "youth_consultation": {"regions.csv", "districts.csv"},
}
# surveys of individual respondents: nothing personal may be asked before consent
CONSENT_FORMS = {"safety_concerns", "youth_consultation"}
CONSENT_GIVEN = re.compile(r"/data/consent\s*=\s*'yes'")
EXPECTED_REGIONS = {"sughd", "khatlon", "gbao", "drs", "dushanbe"}
DUSHANBE_DISTRICTS = {"firdavsi", "ismoili_somoni", "sino", "shohmansur"}
LANGUAGE_COLUMNS = ("label_en", "label_tg", "label_ru")


@dataclass(frozen=True)
class Converted:
    xml: str
    warnings: tuple[str, ...]
    root: etree._Element

    def binds(self) -> dict[str, etree._Element]:
        return {b.get("nodeset"): b for b in self.root.iterfind("./h:head/x:model/x:bind", NS)}

    def tagged(self) -> dict[str, str]:
        """nodeset -> sensitivity value, for every bind that carries one."""
        return {
            path: b.get(SENSITIVITY) for path, b in self.binds().items() if b.get(SENSITIVITY) is not None
        }


@cache
def converted(path: Path) -> Converted:
    warnings: list[str] = []
    result = convert(xlsform=str(path), warnings=warnings)
    root = etree.fromstring(result.xform.encode("utf-8"))
    return Converted(xml=result.xform, warnings=tuple(warnings), root=root)


def by_name(paths: dict[str, str]) -> dict[str, str]:
    """Key ``{nodeset: value}`` by the field name (last path step); names must not repeat."""
    names = Counter(p.rsplit("/", 1)[-1] for p in paths)
    repeated = sorted(n for n, c in names.items() if c > 1)
    assert not repeated, f"field names used more than once: {repeated}"
    return {p.rsplit("/", 1)[-1]: v for p, v in paths.items()}


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def combined_label(en: str, tg: str, ru: str) -> str:
    parts: list[str] = []
    for part in (en, tg, ru):
        if part not in parts:
            parts.append(part)
    return " / ".join(parts)


form_params = pytest.mark.parametrize("xlsform", XLSFORMS, ids=[p.stem for p in XLSFORMS])
csv_params = pytest.mark.parametrize("media", CSV_MEDIA, ids=[p.name for p in CSV_MEDIA])


def test_mission_forms_are_present() -> None:
    missing = EXPECTED_FORMS - {p.stem for p in XLSFORMS}
    assert not missing, f"missing from {FORMS_DIR}: {sorted(missing)}"


@form_params
def test_converts_without_warnings_and_settings(xlsform: Path) -> None:
    form = converted(xlsform)
    assert form.warnings == (), f"pyxform warnings: {form.warnings}"
    instance = form.root.find("./h:head/x:model/x:instance/x:*", NS)
    assert instance is not None
    assert instance.get("id") == xlsform.stem, "settings form_id must be the file name"
    assert re.fullmatch(r"\d{10}", instance.get("version") or ""), "settings version must be YYYYMMDDNN"
    title = form.root.findtext("./h:head/h:title", namespaces=NS)
    assert title and title != xlsform.stem, "settings form_title is missing"
    instance_name = form.binds().get("/data/meta/instanceName")
    assert instance_name is not None, "settings instance_name is missing"
    calculation = instance_name.get("calculate") or ""
    leaked = [path for path in form.tagged() if re.search(re.escape(path) + r"(?![\w/])", calculation)]
    assert not leaked, f"instance_name uses personal or sensitive fields: {leaked}"


@pytest.mark.skipif(shutil.which("java") is None, reason="ODK Validate needs Java and `java` is not on PATH")
@form_params
def test_passes_odk_validate(xlsform: Path, tmp_path: Path) -> None:
    xml_path = tmp_path / f"{xlsform.stem}.xml"
    xml_path.write_text(converted(xlsform).xml, encoding="utf-8")
    warnings = check_xform(str(xml_path))  # raises ODKValidateError when the form is invalid
    assert warnings == [], f"ODK Validate warnings: {warnings}"


@form_params
def test_every_text_is_translated(xlsform: Path) -> None:
    translations = form_translations(converted(xlsform).root)
    assert sorted(translations) == sorted(LANGUAGES)
    default = converted(xlsform).root.find("./h:head/x:model/x:itext/x:translation[@default]", NS)
    assert default is not None and default.get("lang") == DEFAULT_LANGUAGE

    ids = set().union(*(texts.keys() for texts in translations.values()))
    assert ids, "the form has no itext at all"
    problems: list[str] = []
    for text_id in sorted(ids):
        values = {lang: translations[lang].get(text_id, "") for lang in LANGUAGES}
        for lang, value in values.items():
            if value in ("", "-"):  # pyxform writes "-" for a missing translation
                problems.append(f"{text_id}: no {lang} text")
        en, tg, ru = (values[lang] for lang in LANGUAGES)
        if len(en.split()) >= 3:  # a sentence, not a brand name or a number: must really be translated
            for lang, value in (("Tajik (tg)", tg), ("Russian (ru)", ru)):
                if value == en or not CYRILLIC.search(value):
                    problems.append(f"{text_id}: {lang} text is not a translation: {value!r}")
            if tg == ru:
                problems.append(f"{text_id}: the Tajik text is a copy of the Russian one")
    assert not problems, "\n".join(problems)


def form_translations(root: etree._Element) -> dict[str, dict[str, str]]:
    result: dict[str, dict[str, str]] = {}
    for translation in root.iterfind("./h:head/x:model/x:itext/x:translation", NS):
        texts: dict[str, str] = {}
        for text in translation.iterfind("x:text", NS):
            value = " ".join(v.xpath("string()") for v in text.iterfind("x:value", NS))
            texts[text.get("id")] = value.strip()
        result[translation.get("lang")] = texts
    return result


@form_params
def test_referenced_media_exist(xlsform: Path) -> None:
    form = converted(xlsform)
    referenced = set(MEDIA_URI.findall(form.xml))
    missing = sorted(name for name in referenced if not (FORMS_DIR / name).is_file())
    assert not missing, f"media referenced by the form but not in {FORMS_DIR}: {missing}"
    if xlsform.stem in EXPECTED_MEDIA:
        assert referenced == EXPECTED_MEDIA[xlsform.stem]


@form_params
def test_itemsets_use_existing_csv_columns(xlsform: Path) -> None:
    """``value``/``label`` refs and ``choice_filter`` keys must be columns of the CSV the select reads."""
    root = converted(xlsform).root
    sources = {
        i.get("id"): i.get("src", "").rsplit("/", 1)[-1]
        for i in root.iterfind("./h:head/x:model/x:instance", NS)
        if i.get("src", "").startswith("jr://file-csv/")
    }
    checked = 0
    for itemset in root.iter(f"{{{NS['x']}}}itemset"):
        nodeset = itemset.get("nodeset", "")
        match = re.match(r"instance\('([^']+)'\)/root/item(?:\[(.*)\])?$", nodeset)
        if not match or match.group(1) not in sources:
            continue
        header, _ = read_csv(FORMS_DIR / sources[match.group(1)])
        used = {itemset.find(f"x:{ref}", NS).get("ref") for ref in ("value", "label")}
        used |= set(re.findall(r"(?<![/$\w])([A-Za-z_][\w]*)\s*=", match.group(2) or ""))
        assert used <= set(header), f"{nodeset}: columns {sorted(used - set(header))} not in the CSV"
        checked += 1
    if xlsform.stem in EXPECTED_MEDIA:
        assert checked == len(EXPECTED_MEDIA[xlsform.stem])


@form_params
def test_sensitivity_tags(xlsform: Path) -> None:
    form = converted(xlsform)
    assert form.root.tag == f"{{{NS['h']}}}html"
    assert form.root.nsmap.get("sarhad") == SARHAD_NS, "the sarhad namespace is not declared on <h:html>"
    tagged = form.tagged()
    bad = {path: value for path, value in tagged.items() if value not in SENSITIVITY_VALUES}
    assert not bad, f"unknown sarhad:sensitivity values: {bad}"

    # whatever the form, locations and media identify people or places
    untagged_media = [
        path
        for path, bind in form.binds().items()
        if bind.get("type") in {"geopoint", "geotrace", "geoshape", "binary"}
        and bind.get(SENSITIVITY) != "personal"
    ]
    assert not untagged_media, f"geo and media fields must be sarhad:sensitivity=personal: {untagged_media}"

    expected = EXPECTED_SENSITIVITY.get(xlsform.stem)
    if expected is not None:
        actual = by_name(tagged)
        wrong = {name: actual.get(name) for name, value in expected.items() if actual.get(name) != value}
        assert not wrong, f"fields without the expected sarhad:sensitivity (name: actual): {wrong}"


@pytest.mark.parametrize("form_id", sorted(EXPECTED_FREE_TEXT))
def test_personal_free_text_is_multiline(form_id: str) -> None:
    form = converted(FORMS_DIR / f"{form_id}.xlsx")
    tagged = by_name(form.tagged())
    multiline = {
        control.get("ref", "").rsplit("/", 1)[-1]
        for control in form.root.iterfind("./h:body//x:input", NS)
        if "multiline" in (control.get("appearance") or "")
    }
    for name in sorted(EXPECTED_FREE_TEXT[form_id]):
        assert tagged.get(name) == "personal", f"{name} is not tagged personal"
        assert name in multiline, (
            f"{name} needs appearance multiline (exports drop it instead of a pseudonym)"
        )


def relevant_of(binds: dict[str, etree._Element], path: str) -> str:
    bind = binds.get(path)
    return (bind.get("relevant") or "") if bind is not None else ""


@pytest.mark.parametrize("form_id", sorted(CONSENT_FORMS))
def test_nothing_personal_is_asked_before_consent(form_id: str) -> None:
    form = converted(FORMS_DIR / f"{form_id}.xlsx")
    binds = form.binds()
    assert binds["/data/consent"].get("required") == "true()"
    not_gated: list[str] = []
    for path in form.tagged():
        if path.rsplit("/", 1)[-1] in METADATA:
            continue
        steps = path.split("/")
        scopes = ["/".join(steps[:i]) for i in range(len(steps), 2, -1)]  # the field, then its groups
        if not any(CONSENT_GIVEN.search(relevant_of(binds, scope)) for scope in scopes):
            not_gated.append(path)
    assert not not_gated, f"personal or sensitive fields asked without consent: {not_gated}"


@form_params
def test_phone_numbers_are_constrained(xlsform: Path) -> None:
    phones = {p: b for p, b in converted(xlsform).binds().items() if p.endswith("_phone")}
    for path, bind in phones.items():
        match = re.search(r"regex\(\.,\s*'([^']+)'\)", bind.get("constraint") or "")
        assert match, f"{path} has no regex constraint"
        assert bind.get(f"{{{JR_NS}}}constraintMsg"), f"{path} has no constraint message"
        pattern = re.compile(match.group(1))
        assert pattern.search("921234567")
        for wrong in ("92123456", "9212345678", "+992921234567", "92 123 4567", "abcdefghi"):
            assert not pattern.search(wrong), f"{path} accepts {wrong!r}"
        assert bind.get(SENSITIVITY) == "personal"
    if xlsform.stem in {"safety_concerns", "youth_consultation"}:
        assert phones, "the form should ask for a phone number"


@csv_params
def test_csv_media_are_well_formed(media: Path) -> None:
    raw = media.read_bytes()
    header_line = raw.decode("utf-8-sig").split("\n", 1)[0]
    assert ";" not in header_line, "Collect reads a CSV whose header has ';' as semicolon-separated"
    header, rows = read_csv(media)
    assert header[:2] == ["name", "label"], "select_one_from_file needs `name` and `label` columns"
    bad_columns = [c for c in header if not XML_NAME.match(c)]
    assert not bad_columns, f"Collect turns columns into XML elements; invalid names: {bad_columns}"
    assert rows, "no rows"
    names = Counter(r["name"] for r in rows)
    assert not [n for n, c in names.items() if c > 1], "names must be unique"
    for row in rows:
        assert re.fullmatch(r"[a-z0-9_]+", row["name"]), f"bad name {row['name']!r}"
        assert all((row[c] or "").strip() for c in header), f"empty cell in {row}"
        if set(LANGUAGE_COLUMNS) <= set(header):
            assert row["label"] == combined_label(*(row[c] for c in LANGUAGE_COLUMNS)), (
                f"{row['name']}: `label` must be label_en / label_tg / label_ru"
            )
            assert CYRILLIC.search(row["label_tg"]) and CYRILLIC.search(row["label_ru"])


def test_gazetteer_is_consistent() -> None:
    _, regions = read_csv(FORMS_DIR / "regions.csv")
    _, districts = read_csv(FORMS_DIR / "districts.csv")
    _, jamoats = read_csv(FORMS_DIR / "jamoats.csv")
    region_names = {r["name"] for r in regions}
    assert region_names == EXPECTED_REGIONS
    district_region = {d["name"]: d["region"] for d in districts}
    assert set(district_region.values()) == region_names, "every region needs districts, and only those"
    dushanbe = {d for d, r in district_region.items() if r == "dushanbe"}
    assert dushanbe == DUSHANBE_DISTRICTS

    per_district: dict[str, list[str]] = {d: [] for d in district_region}
    for j in jamoats:
        assert j["district"] in district_region, f"{j['name']}: unknown district {j['district']!r}"
        assert j["region"] == district_region[j["district"]], f"{j['name']}: region does not match district"
        assert j["name"].startswith(j["district"] + "_"), f"{j['name']}: name must start with its district"
        per_district[j["district"]].append(j["name"])
    for district, names in per_district.items():
        # the forms ask for the community's name when `<district>_other` is chosen
        assert f"{district}_other" in names, f"{district}: no `{district}_other` row"
        real = [n for n in names if n != f"{district}_other"]
        assert len(real) >= 2, f"{district}: fewer than 2 communities"
