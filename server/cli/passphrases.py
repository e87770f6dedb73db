"""``--passphrase-file F`` of ``sarhad export`` and ``sarhad report``: the project key's passphrase, read
from a file (never from the command line, where other users of the machine could see it in ``ps``)."""

from __future__ import annotations

from pathlib import Path

import click
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from sqlalchemy.orm import Session

from server import errors
from server.models import Project
from server.project_keys import unlock_keys

PASSPHRASE_FILE_OPTION = click.option(
    "--passphrase-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="File whose first line is the project key's passphrase: encrypted submissions are decrypted "
    "into the output (never stored decrypted).",
)


def unlock_from_file(
    session: Session, project: Project, path: Path | None
) -> tuple[dict[str, RSAPrivateKey] | None, list[int]]:
    """The project's private key unlocked by the passphrase in ``path`` (None and [] without a file)."""
    if path is None:
        return None, []
    if project.key_id is None:
        raise errors.bad_request(f"The project {project.name!r} has no managed encryption key.")
    lines = path.read_text(encoding="utf-8").splitlines()
    passphrase = lines[0] if lines else ""
    return unlock_keys(session, project.id, {project.key_id: passphrase}), [project.key_id]
