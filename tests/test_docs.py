"""The README tells the truth: every setting and every command is documented there."""

from pathlib import Path

import click

from server.cli import main
from server.config import setting_docs

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def _command_paths(group: click.Group, prefix: str = "sarhad") -> list[str]:
    paths = []
    for name, command in group.commands.items():
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            paths.extend(_command_paths(command, path))
        else:
            paths.append(path)
    return paths


def test_every_setting_is_in_the_readme() -> None:
    missing = [name for name in setting_docs() if f"`{name}`" not in README]
    assert not missing, f"settings missing from the README: {missing}"


def test_every_command_is_in_the_readme() -> None:
    paths = _command_paths(main)
    assert "sarhad db upgrade" in paths
    missing = [path for path in paths if path not in README]
    assert not missing, f"commands missing from the README: {missing}"


def test_every_command_has_help() -> None:
    def walk(group: click.Group) -> list[click.Command]:
        found: list[click.Command] = []
        for command in group.commands.values():
            found.append(command)
            if isinstance(command, click.Group):
                found.extend(walk(command))
        return found

    undocumented = [c.name for c in walk(main) if not (c.help or "").strip()]
    assert not undocumented, f"commands without --help text: {undocumented}"
