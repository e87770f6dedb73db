"""``sarhad backup create`` and ``sarhad backup restore``.

Exit codes of ``restore``: 0 restored; 3 the target data folder or database is not empty (or of
another kind); 4 the passphrase does not open the backup; 5 not a Sarhad backup, or changed, cut short
or extended since it was written.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from server import audit
from server.backup.create import create_and_record
from server.backup.restore import TargetNotEmpty, restore_backup
from server.backup.schedule import read_passphrase_file
from server.backup.sealed import NotABackup, Tampered, WrongPassphrase
from server.blobs import BlobMissing
from server.cli import CliContext, pass_ctx
from server.config import load_settings

EXIT_TARGET_NOT_EMPTY = 3
EXIT_WRONG_PASSPHRASE = 4
EXIT_NOT_A_BACKUP = 5

_passphrase_option = click.option(
    "--passphrase-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Read the passphrase from the first line of this file (default: standard input).",
)


def _passphrase(path: Path | None, confirm: bool) -> bytes:
    if path is not None:
        try:
            return read_passphrase_file(path)
        except ValueError as why:
            raise click.UsageError(str(why)) from None
    if sys.stdin.isatty():
        text = str(click.prompt("Backup passphrase", hide_input=True, confirmation_prompt=confirm))
    else:
        text = sys.stdin.readline().rstrip("\r\n")
    if not text:
        raise click.UsageError("the passphrase is empty")
    return text.encode()


def _fail(code: int, message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group("backup")
def backup_group() -> None:
    """Encrypted backups of the database, stored files and keys."""


@backup_group.command("create")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@_passphrase_option
@pass_ctx
def create(ctx: CliContext, file: Path, passphrase_file: Path | None) -> None:
    """Write a backup of the running server to FILE, encrypted with a passphrase.

    The server may keep running and taking submissions: the copy is of one instant.
    """
    passphrase = _passphrase(passphrase_file, confirm=True)
    if len(passphrase) < 12:
        raise click.UsageError("use a passphrase of at least 12 characters")
    if file.exists():
        raise click.UsageError(f"{file} already exists; name a new file")
    if not file.parent.is_dir():
        raise click.UsageError(f"the folder {file.parent} does not exist (is the disk plugged in?)")
    try:
        with ctx.app.app_context():
            summary = create_and_record(ctx.database, ctx.settings, file, passphrase)
    except BlobMissing as missing:
        _fail(1, f"the stored file {missing} is missing; run `sarhad doctor` (no backup was written)")
        return
    click.echo(
        f"backup written: {file} ({summary.size} bytes; {summary.database} database, "
        f"{summary.rows} rows, {summary.blobs} stored files)"
    )


@backup_group.command("restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_passphrase_option
@pass_ctx
def restore(ctx: CliContext, file: Path, passphrase_file: Path | None) -> None:
    """Restore FILE into an empty data folder and database (those of the settings in use).

    Exit codes: 3 target not empty, 4 wrong passphrase, 5 not a Sarhad backup or changed since written.
    """
    passphrase = _passphrase(passphrase_file, confirm=False)
    # Read the settings without building the app: nothing may be written to the target before the check.
    target = load_settings(config_file=ctx.config_file)
    try:
        summary = restore_backup(file, passphrase, target)
    except TargetNotEmpty as why:
        _fail(EXIT_TARGET_NOT_EMPTY, f"{why}; restore only into an empty data folder and database")
        return
    except WrongPassphrase as why:
        _fail(EXIT_WRONG_PASSPHRASE, str(why))
        return
    except (NotABackup, Tampered) as why:
        _fail(EXIT_NOT_A_BACKUP, f"{why}; nothing was restored")
        return
    with ctx.write() as w:
        audit.record(
            w.session,
            "backup.restore",
            target_type="backup",
            target_id=file.name,
            path=str(file),
            created=summary.created,
            blobs=summary.blobs,
            rows=summary.rows,
            revision=summary.revision,
        )
    click.echo(
        f"restored {file} (made {summary.created}): {summary.rows} rows, {summary.blobs} stored files "
        f"into {target.data_dir}"
    )
    click.echo("run `sarhad doctor --verify` to check it, then start the server")


def register(main: click.Group) -> None:
    main.add_command(backup_group)
