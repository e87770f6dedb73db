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

from server.entities.declarations import read_declarations
from server.entities.forms import check_form
from server.forms.xform import parse_xform

FORMS_DIR = Path(__file__).parent.parent / "forms"
XLSFORMS = sorted(p for p in FORMS_DIR.glob("*.xlsx") if not p.name.startswith("~$"))
CSV_MEDIA = sorted(FORMS_DIR.glob("*.csv"))

LANGUAGES = ("English (en)", "Tajik (tg)", "Russian (ru)", "Uzbek (uz)", "Kyrgyz (ky)")
# Uzbek and Kyrgyz are for border communities: required for what is read to respondents (see forms/README.md)
BORDER_LANGUAGES = ("Uzbek (uz)", "Kyrgyz (ky)")
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

EXPECTED_FORMS = {
    *("safety_concerns", "focus_group", "youth_consultation", "contact_signup"),
    *("action_plan", "follow_up"),
}
EXPECTED_SENSITIVITY: dict[str, dict[str, str]] = {
    "safety_concerns": {
        "deviceid": "personal",
        "jamoat_other": "personal",
        "category": "sensitive",
        "category_other": "personal",
        "gbv_relationship": "sensitive",
        "gbv_support": "sensitive",
        "police_conduct_type": "sensitive",
        "police_conduct_other": "personal",
        "recruitment_channel": "sensitive",
        "recruitment_channel_other": "personal",
        "description": "personal",
        "gps": "personal",
        "photo": "personal",
        "place_type_other": "personal",
        "not_reported_other": "personal",
        "reported_to_other": "personal",
        "suggested_action": "personal",
    },
    "focus_group": {
        "deviceid": "personal",
        "facilitator_code": "personal",
        "jamoat_other": "personal",
        "venue_other": "personal",
        "group_type_other": "personal",
        "issue_text": "personal",
        "issue_category_other": "personal",
        "proposed_action": "personal",
        "who_should_act_other": "personal",
        "flipchart_photo": "personal",
        "observations": "personal",
    },
    "youth_consultation": {
        "deviceid": "personal",
        "age": "sensitive",
        "main_concerns_other": "personal",
        "online_divisive": "sensitive",
        "online_divisive_freq": "sensitive",
        "online_divisive_platforms": "sensitive",
        "online_divisive_platforms_other": "personal",
        "recruitment_approach": "sensitive",
    },
    "contact_signup": {
        "purpose_other": "personal",
        "contact_name": "personal",
        "contact_phone": "personal",
    },
    "action_plan": {"deviceid": "personal", "action_what": "personal"},
    "follow_up": {"deviceid": "personal", "notes": "personal"},
}
# personal free text that may name people: a multi-line box, which exports drop instead of pseudonymising
EXPECTED_FREE_TEXT: dict[str, set[str]] = {
    "safety_concerns": {
        "category_other",
        "police_conduct_other",
        "recruitment_channel_other",
        "description",
        "place_type_other",
        "not_reported_other",
        "reported_to_other",
        "suggested_action",
    },
    "focus_group": {
        "venue_other",
        "group_type_other",
        "issue_text",
        "issue_category_other",
        "proposed_action",
        "who_should_act_other",
        "observations",
    },
    "youth_consultation": {"main_concerns_other", "online_divisive_platforms_other"},
    "contact_signup": {"purpose_other"},
    "action_plan": {"action_what"},
    "follow_up": {"notes"},
}
EXPECTED_MEDIA: dict[str, set[str]] = {
    "safety_concerns": {"regions.csv", "districts.csv", "jamoats.csv"},
    "focus_group": {"regions.csv", "districts.csv", "jamoats.csv"},
    "youth_consultation": {"regions.csv", "districts.csv"},
    "contact_signup": {"regions.csv", "districts.csv"},
    "action_plan": {"regions.csv", "districts.csv", "jamoats.csv", "concerns.csv"},
    "follow_up": {"regions.csv", "districts.csv", "concerns.csv", "action_plans.csv"},
}
# Entity lists the mission forms fill (forms/README.md, "Entity lists"): a form reading <list>.csv gets
# the list from the server, so no such file lives in forms/. Each is made by the first form named.
ENTITY_LISTS = {"concerns": "safety_concerns", "action_plans": "action_plan"}
# surveys of individual respondents: nothing personal may be asked before consent
CONSENT_FORMS = {"safety_concerns", "youth_consultation", "contact_signup"}
CONSENT_GIVEN = re.compile(r"/data/consent\s*=\s*'yes'")
# what the interviewer reads to respondents: every question and choice of these forms, and the group's
# consent script; these need real Uzbek and Kyrgyz text (interviewer-only texts may fall back to Russian)
RESPONDENT_FORMS = {"safety_concerns", "youth_consultation", "contact_signup"}
READ_ALOUD = {"focus_group": {"fg_consent_script", "participants_agreed"}}
INTERVIEWER_ONLY = {"referral_given", "suggested_action_code"}
INSTANCE_NAME_FIELDS = {"district", "today", "fg_date"}
EXPECTED_REGIONS = {"sughd", "khatlon", "gbao", "drs", "dushanbe"}
# the border districts the mission works in (forms/README.md, "Places"): each needs its own list
BORDER_DISTRICTS = {
    "sughd": {
        *("isfara", "konibodom", "jabbor_rasulov", "ghafurov", "khujand"),
        *("mastchoh", "zafarobod", "spitamen", "asht"),
    },
    "khatlon": {"panj", "qubodiyon", "nosiri_khusrav", "dusti", "jayhun", "shahrituz", "farkhor", "hamadoni"},
    "drs": {"shahrinav", "tursunzoda", "lakhsh"},
    "gbao": {"murghob", "ishkoshim", "darvoz", "vanj", "rushon", "shughnon"},
}
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
    # Collect shows the name in its lists, on a tablet that can be shared or seized: a place and a date only,
    # never what the submission is about (a category such as "gbv" says what was disclosed)
    used = set(re.findall(r"/data/[\w/]*?(\w+)(?![\w/])", calculation))
    assert used <= INSTANCE_NAME_FIELDS, f"instance_name may use only {sorted(INSTANCE_NAME_FIELDS)}: {used}"
    assert "category" not in calculation


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
    assert sorted(translations) == sorted(LANGUAGES), "the five languages, spelled as in forms/README.md"
    default = converted(xlsform).root.find("./h:head/x:model/x:itext/x:translation[@default]", NS)
    assert default is not None and default.get("lang") == DEFAULT_LANGUAGE

    ids = set().union(*(texts.keys() for texts in translations.values()))
    assert ids, "the form has no itext at all"
    read_aloud = read_aloud_text_ids(xlsform.stem, converted(xlsform).root)
    problems: list[str] = []
    for text_id in sorted(ids):
        values = {lang: translations[lang].get(text_id, "") for lang in LANGUAGES}
        for lang, value in values.items():
            if value in ("", "-"):  # pyxform writes "-" for a missing translation
                problems.append(f"{text_id}: no {lang} text")
        en, tg, ru = (values[lang] for lang in LANGUAGES[:3])
        if len(en.split()) >= 3:  # a sentence, not a brand name or a number: must really be translated
            for lang, value in (("Tajik (tg)", tg), ("Russian (ru)", ru)):
                if value == en or not CYRILLIC.search(value):
                    problems.append(f"{text_id}: {lang} text is not a translation: {value!r}")
            if tg == ru:
                problems.append(f"{text_id}: the Tajik text is a copy of the Russian one")
            if text_id in read_aloud:  # interviewer-only texts may show the Russian text instead
                for lang in BORDER_LANGUAGES:
                    if values[lang] in (en, ru, tg) or not CYRILLIC.search(values[lang]):
                        problems.append(f"{text_id}: read to respondents, but no real {lang} text")
    assert not problems, "\n".join(problems)
    if xlsform.stem in RESPONDENT_FORMS or xlsform.stem in READ_ALOUD:
        assert read_aloud, "no question read to respondents was found"


def read_aloud_text_ids(form_id: str, root: etree._Element) -> set[str]:
    """itext ids of what the interviewer reads to respondents: labels of questions (not notes) and their
    choices in the surveys of individuals; the named rows of other forms."""
    binds = {b.get("nodeset"): b for b in root.iterfind("./h:head/x:model/x:bind", NS)}
    instances = {i.get("id"): i for i in root.iterfind("./h:head/x:model/x:instance", NS) if i.get("id")}
    result: set[str] = set()
    for control in root.find("./h:body", NS).iter():
        ref = control.get("ref") or ""
        tag = etree.QName(control).localname if isinstance(control.tag, str) else ""
        if tag not in {"input", "select1", "select", "upload", "trigger"} or not ref.startswith("/data/"):
            continue
        name = ref.rsplit("/", 1)[-1]
        if form_id in RESPONDENT_FORMS:
            bind = binds.get(ref)
            if name in INTERVIEWER_ONLY or (bind is not None and bind.get("readonly") == "true()"):
                continue
        elif name not in READ_ALOUD.get(form_id, set()):
            continue
        label = control.find("x:label", NS)
        if label is not None and label.get("ref", "").startswith("jr:itext("):
            result.add(label.get("ref")[len("jr:itext('") : -2])
        itemset = control.find("x:itemset", NS)
        if itemset is not None:
            match = re.match(r"instance\('([^']+)'\)", itemset.get("nodeset", ""))
            instance = instances.get(match.group(1)) if match else None
            if instance is not None and "src" not in instance.attrib:
                result |= {e.text for e in instance.iter(f"{{{NS['x']}}}itextId") if e.text}
        for item_label in control.iterfind("x:item/x:label", NS):
            if item_label.get("ref", "").startswith("jr:itext("):
                result.add(item_label.get("ref")[len("jr:itext('") : -2])
    return result


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
    from_lists = {f"{name}.csv" for name in ENTITY_LISTS}
    missing = sorted(n for n in referenced if not (FORMS_DIR / n).is_file() and n not in from_lists)
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
        source = sources[match.group(1)]
        if source.removesuffix(".csv") in ENTITY_LISTS:
            header = entity_list_columns(source.removesuffix(".csv"))
        else:
            header, _ = read_csv(FORMS_DIR / source)
        used = {itemset.find(f"x:{ref}", NS).get("ref") for ref in ("value", "label")}
        used |= set(re.findall(r"(?<![/$\w])([A-Za-z_][\w]*)\s*=", match.group(2) or ""))
        assert used <= set(header), f"{nodeset}: columns {sorted(used - set(header))} not in the CSV"
        checked += 1
    if xlsform.stem in EXPECTED_MEDIA:
        assert checked == len(EXPECTED_MEDIA[xlsform.stem])


def entity_list_columns(name: str) -> list[str]:
    """The columns of an entity list's CSV: name, label, __version and what the forms save to it."""
    saved: list[str] = []
    for path in XLSFORMS:
        form = read_declarations(converted(path).xml)
        for declaration in form.declarations if form else ():
            if declaration.dataset == name:
                saved += [prop for _, prop in declaration.properties if prop not in saved]
    return ["name", "label", "__version", *saved]


@pytest.mark.parametrize("list_name", sorted(ENTITY_LISTS))
def test_entity_lists_take_nothing_personal(list_name: str) -> None:
    """Every form saving to a list passes the server's publish check (no personal question reaches
    a list, which goes to every tablet of the project); the list's first form creates its entities."""
    makers = []
    for path in XLSFORMS:
        form = converted(path)
        fields = parse_xform(form.xml).fields
        checked = check_form(form.xml, fields)
        for declaration in checked.declarations if checked else ():
            if declaration.dataset == list_name and "create" in declaration.actions:
                makers.append(path.stem)
    assert makers == [ENTITY_LISTS[list_name]]


def test_the_concern_list_gets_where_what_and_status_only() -> None:
    assert set(entity_list_columns("concerns")) == {
        *("name", "label", "__version", "region", "district", "jamoat", "category", "severity"),
        *("status", "reported_on", "last_visit"),
    }
    created = read_declarations(converted(FORMS_DIR / "safety_concerns.xlsx").xml)
    assert created is not None
    binds = converted(FORMS_DIR / "safety_concerns.xlsx").binds()
    create_if = binds["/data/meta/entity/@create"].get("calculate", "").replace(" ", "")
    assert create_if.startswith("/data/consent='yes'and")
    # Concerns about a person's own harm never go to every tablet (forms/README.md, "Entity lists").
    own_harm = ("gbv", "bride_kidnapping", "early_marriage", "child_abuse", "trafficking", "recruitment")
    for kept_out in own_harm:
        assert f"/data/report/concern/category='{kept_out}'" in create_if
    # The action plan moves each concern it addresses to in_plan, one repeat row per concern (spec 2025.1).
    plan = read_declarations(converted(FORMS_DIR / "action_plan.xlsx").xml)
    assert plan is not None
    concerns = next(d for d in plan.declarations if d.dataset == "concerns")
    assert concerns.repeat and concerns.actions == ("update",)


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
    if xlsform.stem == "contact_signup":
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


# ---- do no harm: the rules of forms/README.md that a test can check --------------------------------------

DISCLOSURE_FORMS = {"safety_concerns", "youth_consultation", "focus_group"}
AGE_SCREEN = {"safety_concerns": "respondent_age_band", "youth_consultation": "age_group"}
PRIVACY_FORMS = {"safety_concerns", "youth_consultation"}
PRIVATE = re.compile(r"/data/[\w/]*privacy\s*=\s*'private'")
# the questions on violence, police conduct and recruitment, and where a violent case happened
SC_PRIVATE_CATEGORIES = {"gbv", "police_conduct", "recruitment", "child_abuse", "bride_kidnapping"}
SC_VIOLENCE_CATEGORIES = {"gbv", "bride_kidnapping", "early_marriage", "child_abuse", "trafficking"}


def body_order(root: etree._Element) -> list[str]:
    """Field names in the order Collect asks them."""
    return [
        c.get("ref").rsplit("/", 1)[-1]
        for c in root.find("./h:body", NS).iter()
        if isinstance(c.tag, str) and c.get("ref", "").startswith("/data/")
    ]


def scopes_of(path: str) -> list[str]:
    steps = path.split("/")
    return ["/".join(steps[:i]) for i in range(len(steps), 2, -1)]  # the field, then its groups


def squash(expression: str) -> str:
    """pyxform writes ``${x}`` as `` /data/…/x ``: drop whitespace so that conditions compare as text."""
    return "".join(expression.split())


def relevant_chain(binds: dict[str, etree._Element], path: str) -> str:
    """The relevants of a field and of its groups, whitespace removed."""
    return squash(" and ".join(relevant_of(binds, scope) for scope in scopes_of(path)))


def path_of(binds: dict[str, etree._Element], name: str) -> str:
    paths = [p for p in binds if p.rsplit("/", 1)[-1] == name]
    assert len(paths) == 1, f"{name}: {paths}"
    return paths[0]


@pytest.mark.parametrize("form_id", sorted(AGE_SCREEN))
def test_age_is_screened_before_consent_and_every_exit_is_flagged(form_id: str) -> None:
    form = converted(FORMS_DIR / f"{form_id}.xlsx")
    binds = form.binds()
    order = body_order(form.root)
    screen = AGE_SCREEN[form_id]
    assert order.index(screen) < order.index("guardian_consent") < order.index("consent")
    assert binds[f"/data/{screen}"].get("required") == "true()"
    # under-18s need a guardian's agreement before they are asked for their own
    assert f"/data/{screen}='14_17'" in squash(relevant_of(binds, "/data/guardian_consent"))
    eligible = binds["/data/eligible"].get("calculate") or ""
    assert f"/data/{screen}" in eligible and "/data/guardian_consent" in eligible
    assert squash(relevant_of(binds, "/data/consent")) == "/data/eligible='yes'"
    # no traps: nothing before consent can block finalising, and each way out is recorded
    for name in order[: order.index("consent") + 1]:
        assert not binds[path_of(binds, name)].get("constraint"), f"{name} has a constraint: a trap"
    outcome = binds["/data/interview_outcome"].get("calculate") or ""
    for flag in ("no_consent", "no_guardian_consent", "age_not_given", "interviewed"):
        assert f"'{flag}'" in outcome, f"interview_outcome does not record {flag}"


@pytest.mark.parametrize("form_id", sorted(DISCLOSURE_FORMS))
def test_no_contact_details_beside_a_disclosure(form_id: str) -> None:
    """Names and phone numbers live only in contact_signup, which holds nothing of what was disclosed."""
    form = converted(FORMS_DIR / f"{form_id}.xlsx")
    names = set(by_name({p: "" for p in form.binds()}))
    contact = {n for n in names if n.endswith(("_phone", "_name")) or n in {"contact_name", "contact_phone"}}
    assert not contact, f"contact details in the same record as a disclosure: {sorted(contact)}"


def test_contact_signup_holds_no_answers_and_no_link() -> None:
    form = converted(FORMS_DIR / "contact_signup.xlsx")
    names = set(by_name({p: "" for p in form.binds()}))
    assert not any(v == "sensitive" for v in form.tagged().values()), "no sensitive answer belongs here"
    # no device id and no start/end time that would match the interview sent just before it
    assert not names & {"start", "end", "deviceid"}
    others = set()
    for form_id in DISCLOSURE_FORMS:
        others |= set(by_name({p: "" for p in converted(FORMS_DIR / f"{form_id}.xlsx").binds()}))
    allowed = {"consent", "region", "district", "today", "intro", "no_consent", "instanceID", "instanceName"}
    shared = names & others - allowed
    assert not shared, f"contact_signup repeats fields of the disclosure forms: {sorted(shared)}"
    binds = form.binds()
    phone = relevant_chain(binds, path_of(binds, "contact_phone"))
    assert "safe_to_call='yes'" in phone, "ask whether calling is safe before taking the number"
    assert "/data/contact/phone_answered_by" in binds


@pytest.mark.parametrize("form_id", sorted(PRIVACY_FORMS))
def test_privacy_check_skips_the_sensitive_questions_and_gps(form_id: str) -> None:
    form = converted(FORMS_DIR / f"{form_id}.xlsx")
    binds = form.binds()
    order = body_order(form.root)
    guarded = [p for p, v in form.tagged().items() if v == "sensitive" and p.rsplit("/", 1)[-1] != "age"]
    guarded += [p for p, b in binds.items() if b.get("type") == "geopoint"]
    assert guarded
    for path in guarded:
        name = path.rsplit("/", 1)[-1]
        assert order.index("privacy") < order.index(name), f"{name} is asked before the privacy check"
        if name == "category":  # the list itself: a private category can only be chosen in private
            assert PRIVATE.search(binds[path].get("constraint") or ""), "category is not limited by privacy"
            continue
        assert PRIVATE.search(relevant_chain(binds, path)), f"{name} is not skipped when others can hear"


def test_gps_comes_after_the_category_and_is_skipped_for_violence_and_police() -> None:
    form = converted(FORMS_DIR / "safety_concerns.xlsx")
    binds = form.binds()
    order = body_order(form.root)
    for name in ("gps", "photo"):
        assert order.index("category") < order.index(name)
        relevant = relevant_chain(binds, path_of(binds, name))
        for category in SC_PRIVATE_CATEGORIES:
            skipped = f"category='{category}'" in relevant.split("not(", 1)[-1]
            assert skipped, f"{name} not skipped for {category}"


def test_description_is_not_required_for_violence_cases() -> None:
    binds = converted(FORMS_DIR / "safety_concerns.xlsx").binds()
    required = binds[path_of(binds, "description")].get("required") or ""
    assert required.startswith("not(") and all(f"'{c}'" in required for c in SC_VIOLENCE_CATEGORIES)


@pytest.mark.parametrize("form_id", sorted(PRIVACY_FORMS))
def test_every_respondent_gets_the_referral_card(form_id: str) -> None:
    form = converted(FORMS_DIR / f"{form_id}.xlsx")
    binds = form.binds()
    note = next(p for p in binds if p.rsplit("/", 1)[-1] in {"referral_card", "referral_note"})
    # only the consent gates it: handing it to some respondents only tells bystanders something was said
    assert not relevant_of(binds, note), "the referral card must not depend on an answer"
    gates = [relevant_of(binds, scope) for scope in scopes_of(note)[1:] if relevant_of(binds, scope)]
    assert all(CONSENT_GIVEN.search(g) for g in gates), gates
    assert binds[path_of(binds, "referral_given")].get("required") == "true()"


def choice_names(root: etree._Element, field_path: str) -> set[str]:
    body = root.find("./h:body", NS)
    control = next(c for c in body.iter() if isinstance(c.tag, str) and c.get("ref") == field_path)
    itemset = control.find("x:itemset", NS)
    if itemset is None:
        return {v.text for v in control.iterfind("x:item/x:value", NS)}
    list_id = re.match(r"instance\('([^']+)'\)", itemset.get("nodeset")).group(1)
    instance = root.find(f"./h:head/x:model/x:instance[@id='{list_id}']", NS)
    return {v.text for v in instance.iter(f"{{{NS['x']}}}name")}


@pytest.mark.parametrize("form_id", sorted(PRIVACY_FORMS))
def test_trust_items_allow_dont_know_and_prefer_not_to_say(form_id: str) -> None:
    form = converted(FORMS_DIR / f"{form_id}.xlsx")
    trust = [p for p in form.binds() if p.rsplit("/", 1)[-1].startswith("trust_")]
    assert trust
    for path in trust:
        assert {"dont_know", "refused"} <= choice_names(form.root, path), path


def test_focus_group_consent_script_and_no_trap_on_minors() -> None:
    form = converted(FORMS_DIR / "focus_group.xlsx")
    binds = form.binds()
    order = body_order(form.root)
    assert order.index("fg_consent_script") < order.index("participants_agreed")
    for name in ("police_present", "group_type", "facilitator_sex", "facilitator_code"):
        assert order.index(name) < order.index("participants_agreed"), name
    assert not [p for p in binds if p.endswith("/facilitator_name")], "staff codes, not typed names"
    minors = path_of(binds, "minors_consent")
    assert not binds[minors].get("constraint"), "“no” must end the form cleanly, not block it"
    assert "not(/data/record/minors_consent='no')" in relevant_chain(binds, path_of(binds, "issue_text"))
    assert "'no_minors_consent'" in (binds["/data/discussion_outcome"].get("calculate") or "")
    # the total is shown, and checked, before the minors' question
    check = path_of(binds, "participants_check")
    assert order.index("participants_check") < order.index("minors_consent")
    assert "participants_total" in (binds[check].get("constraint") or "")
    rank = binds[path_of(binds, "priority_rank")].get("constraint") or ""
    assert "current()" in rank, "ranks must be unique"


def test_border_districts_are_listed_with_their_communities() -> None:
    _, districts = read_csv(FORMS_DIR / "districts.csv")
    _, jamoats = read_csv(FORMS_DIR / "jamoats.csv")
    region_of = {d["name"]: d["region"] for d in districts}
    for region, names in BORDER_DISTRICTS.items():
        missing = sorted(n for n in names if region_of.get(n) != region)
        assert not missing, f"{region}: districts missing from districts.csv: {missing}"
    communities = Counter(j["district"] for j in jamoats if not j["name"].endswith("_other"))
    for name in set().union(*BORDER_DISTRICTS.values()):
        assert communities[name] >= 2, f"{name}: fewer than two named communities"
    labels = {j["name"]: j for j in jamoats}
    assert labels["firdavsi_gipronozem"]["label_en"] == "Giprozem"  # the code stays; the name was wrong
    assert "Москва" not in labels["hamadoni_moskva"]["label_tg"], "Tajik for Moscow is Маскав"
    hamadoni = next(d for d in districts if d["name"] == "hamadoni")
    assert hamadoni["label_ru"] == "район Мир Сайид Алии Хамадони"
    assert "Zong" in labels["ishkoshim_langar"]["label_en"], "Langar is a village in Zong jamoat"
    assert "Jayhun" in labels["jayhun_dusti"]["label_en"], "the seat town, not Dusti district"
