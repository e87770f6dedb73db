"""Languages of the console: Tajik, Russian and English, with gettext catalogues (Flask-Babel).

The language of a page is the signed-in user's choice (``user_account.language``), else the one chosen
before signing in (the ``sarhad_lang`` cookie), else the best match of the browser's Accept-Language,
else Tajik. Dates are shown in Tajikistan's time (Asia/Dushanbe, UTC+5, no daylight saving) and, like
numbers, in the language's own format.

Catalogues: ``translations/{tg,ru,en}/LC_MESSAGES/messages.po`` are the sources; the compiled ``.mo``
files are committed beside them, so a fresh machine needs no build step. ``scripts/translations``
extracts, updates and compiles them; ``tests/test_console_i18n.py`` fails when a ``.mo`` is stale or a
string lacks a translation.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, request
from flask_babel import Babel

from server.console.session import signed_in_user

LANGUAGES = {"tg": "Тоҷикӣ", "ru": "Русский", "en": "English"}
DEFAULT_LANGUAGE = "tg"
LANG_COOKIE = "sarhad_lang"
TIMEZONE = "Asia/Dushanbe"
TRANSLATIONS = Path(__file__).with_name("translations")


def page_language() -> str:
    """The language of this request's page."""
    if request.blueprint != "console":
        return "en"
    user = signed_in_user()
    if user is not None and user.language in LANGUAGES:
        return user.language
    chosen = request.cookies.get(LANG_COOKIE)
    if chosen in LANGUAGES:
        return chosen
    return request.accept_languages.best_match(list(LANGUAGES)) or DEFAULT_LANGUAGE


def init_app(app: Flask) -> None:
    Babel(
        app,
        locale_selector=page_language,
        timezone_selector=lambda: TIMEZONE,
        default_translation_directories=str(TRANSLATIONS),
    )
