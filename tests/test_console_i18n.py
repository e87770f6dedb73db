"""The console's catalogues: every string of the console is in them, translated into Tajik and Russian,
and the committed .mo files are exactly what the .po files compile to (so a fresh machine needs no build)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

CONSOLE = Path(__file__).resolve().parent.parent / "server" / "console"
TRANSLATIONS = CONSOLE / "translations"
METHODS = [("templates/**.html", "jinja2"), ("**.py", "python")]


def _catalogue(lang: str):  # type: ignore[no-untyped-def]
    with open(TRANSLATIONS / lang / "LC_MESSAGES" / "messages.po", "rb") as fh:
        return read_po(fh, locale=lang)


def _extracted() -> set[str]:
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(str(CONSOLE), METHODS):
        found.add(message if isinstance(message, str) else message[0])
    return found


@pytest.mark.parametrize("lang", ["tg", "ru", "en"])
def test_every_console_string_is_in_the_catalogue(lang: str) -> None:
    ids = {m.id for m in _catalogue(lang) if m.id}
    missing = sorted(_extracted() - ids)
    assert not missing, f"run scripts/translations update, then translate: {missing}"


@pytest.mark.parametrize("lang", ["tg", "ru"])
def test_every_string_is_translated(lang: str) -> None:
    untranslated = [m.id for m in _catalogue(lang) if m.id and (not m.string or m.fuzzy)]
    assert not untranslated, f"{lang} lacks translations of {untranslated}"


@pytest.mark.parametrize("lang", ["tg", "ru", "en"])
def test_committed_mo_matches_the_po(lang: str) -> None:
    out = io.BytesIO()
    write_mo(out, _catalogue(lang))
    committed = (TRANSLATIONS / lang / "LC_MESSAGES" / "messages.mo").read_bytes()
    assert committed == out.getvalue(), "run scripts/translations compile and commit the .mo files"


def test_placeholders_survive_translation() -> None:
    import re

    for lang in ("tg", "ru"):
        for m in _catalogue(lang):
            if m.id and m.string:
                assert sorted(re.findall(r"%\(\w+\)\w", m.id)) == sorted(
                    re.findall(r"%\(\w+\)\w", m.string)
                ), m.id
