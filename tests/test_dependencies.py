"""Every runtime dependency in pyproject.toml is used by the code it installs; test-only ones sit in the
``dev`` extra. A dependency nothing imports is only weight (and attack surface) on a field hub."""

from __future__ import annotations

import ast
import re
import tomllib

from tests.conftest import ROOT

# Distribution name → the module the code imports.
IMPORT_NAMES = {
    "pillow": "PIL",
    "argon2-cffi": "argon2",
    "python-multipart": "python_multipart",
    "psycopg": "psycopg",
}
# Used without an import: gunicorn serves the app at the centre (README, "Production deployment");
# psycopg is the driver SQLAlchemy loads for postgresql+psycopg:// URLs.
USED_WITHOUT_IMPORT = {"gunicorn", "psycopg"}


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].strip().lower()


def _imported(folders: tuple[str, ...]) -> set[str]:
    found: set[str] = set()
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    found.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    found.add(node.module.split(".")[0])
    return found


def test_runtime_dependencies_are_imported_and_test_ones_are_dev_only() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = [_name(r) for r in project["dependencies"]]
    dev = [_name(r) for r in project["optional-dependencies"]["dev"]]
    shipped = _imported(("server", "sync_client"))
    unused = [
        name
        for name in runtime
        if name not in USED_WITHOUT_IMPORT and IMPORT_NAMES.get(name, name.replace("-", "_")) not in shipped
    ]
    assert unused == [], f"runtime dependencies nothing in server/ or sync_client/ imports: {unused}"
    misplaced = [name for name in dev if IMPORT_NAMES.get(name, name.replace("-", "_")) in shipped]
    assert misplaced == [], f"dev-only dependencies imported by shipped code: {misplaced}"
