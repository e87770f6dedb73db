"""Every failure has one stable code, defined in ``server/errors.py`` and nowhere else, and reaches the
client through the one renderer (JSON on ``/v1``, an OpenRosa message on Collect's routes)."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import requests

from server.errors import Code
from tests.conftest import ROOT

CODE_PATTERN = re.compile(r"^[1-5][0-9]{2}\.[0-9]+$")
SOURCES = [p for d in ("server", "sync_client") for p in sorted((ROOT / d).rglob("*.py"))]
ERRORS_MODULE = ROOT / "server" / "errors.py"


def _offences(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and CODE_PATTERN.match(node.value):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: code {node.value!r} written here")
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name == "Problem":
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: Problem(...) built here")
            if name == "abort":
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: abort() bypasses server.errors")
    return found


def test_codes_are_defined_only_in_server_errors() -> None:
    offences = [o for path in SOURCES if path != ERRORS_MODULE for o in _offences(path)]
    assert offences == [], "\n".join(offences)


def test_each_code_means_one_failure() -> None:
    values = [c.value for c in Code]
    assert len(values) == len(set(values))
    assert all(CODE_PATTERN.match(v) for v in values)


def test_codes_reach_the_client(live_server: Any) -> None:
    base = f"{live_server.url}/v1"
    missing = requests.get(f"{base}/projects/999999/forms", timeout=10)
    assert missing.status_code == 401 and missing.json()["code"] == Code.UNAUTHENTICATED
    unknown = requests.get(f"{base}/no-such-route", timeout=10)
    assert unknown.status_code == 404 and unknown.json()["code"] == Code.NOT_FOUND
    wrong_method = requests.put(f"{base}/health", timeout=10)
    assert wrong_method.status_code == 405 and wrong_method.json()["code"] == Code.METHOD_NOT_ALLOWED
    bad = requests.post(f"{base}/sessions", data=b"{not json", timeout=10)
    assert bad.status_code == 400 and bad.json()["code"] == Code.BAD_REQUEST
