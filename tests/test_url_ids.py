"""The middleware that keeps ``%2F`` and ``%25`` through routing, with environs as WSGI servers make them
(gunicorn and Werkzeug's server give ``PATH_INFO`` decoded, ``RAW_URI`` as received, both as latin-1)."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes

import pytest

from server.url_ids import KeepEncodedSlashes, SegmentConverter, id_problem


def _path_info_seen(raw_uri: str, script_name: str = "", path_info: str | None = None) -> str:
    raw_path = raw_uri.split("?", 1)[0]
    decoded = unquote_to_bytes(raw_path.encode("latin-1")).decode("latin-1")
    environ: dict[str, Any] = {
        "RAW_URI": raw_uri,
        "SCRIPT_NAME": script_name,
        "PATH_INFO": decoded[len(script_name) :] if path_info is None else path_info,
    }
    seen: dict[str, str] = {}

    def app(env: dict[str, Any], start_response: Any) -> list[bytes]:
        seen["path"] = env["PATH_INFO"]
        return []

    KeepEncodedSlashes(app)(environ, lambda *a: None)
    return seen["path"]


def _wsgi(text: str) -> str:
    return text.encode("utf-8").decode("latin-1")


def test_encoded_slash_and_percent_stay_encoded_everything_else_decoded() -> None:
    raw = "/v1/projects/1/forms/'%3D%2B%2f*-451%25%2F%25/submissions?x=%2F"
    assert _path_info_seen(raw) == "/v1/projects/1/forms/'=+%2F*-451%25%2F%25/submissions"


def test_unencoded_utf8_in_the_request_line_is_kept_as_the_server_gave_it() -> None:
    raw = _wsgi("/v1/projects/1/forms/✅%2Fx/versions")
    assert _path_info_seen(raw) == _wsgi("/v1/projects/1/forms/✅%2Fx/versions")


def test_a_script_name_prefix_is_left_out() -> None:
    assert _path_info_seen("/sarhad/v1/forms/a%2Fb", script_name="/sarhad") == "/v1/forms/a%2Fb"


def test_paths_without_kept_escapes_and_rewritten_paths_are_left_alone() -> None:
    assert _path_info_seen("/v1/projects/1/forms/%E2%9C%85") == _wsgi("/v1/projects/1/forms/✅")
    # A proxy or server that changed the path: the application sees what the server decided.
    assert _path_info_seen("/v1/forms/a%2Fb", path_info="/elsewhere") == "/elsewhere"


def test_the_converter_decodes_what_the_middleware_kept() -> None:
    converter = SegmentConverter(None)  # type: ignore[arg-type]
    assert converter.to_python("'=+%2F*-451%25%2F%25") == "'=+/*-451%/%"
    assert converter.to_python("a%252Fb") == "a%2Fb"
    assert converter.to_url("a/b%c") == "a%2Fb%25c"


@pytest.mark.parametrize(
    ("value", "refused"),
    [
        ("'=+/*-451%/%", False),
        ("a/b", False),
        ("..x", False),
        ("a/../b", True),
        (".", True),
        ("a\x7fb", True),
    ],
)
def test_id_rules(value: str, refused: bool) -> None:
    assert (id_problem(value) is not None) is refused
