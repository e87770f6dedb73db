"""The ``sarhad-sync`` command.

Exit codes: 0 everything is at central; 1 unexpected error; 2 bad command line or configuration;
3 central could not be reached (try later; nothing is lost); 4 central refused the hub's token or a
right; 5 finished, but some submissions are not at central (listed); 6 a bundle or receipt refused
(tampered with, damaged, or made for or by another server); 7 another ``watch`` already runs for this hub.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from sync_client.client import ExitCode, SyncError
from sync_client.config import ConfigError, SyncConfig, load_config


def _config(ctx: click.Context) -> SyncConfig:
    return ctx.obj["config"]  # type: ignore[no-any-return]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML settings file.")
@click.option("--central-url", help="Central server URL (SARHAD_SYNC_CENTRAL_URL).")
@click.option("--token", help="Hub token issued by central (SARHAD_SYNC_TOKEN).")
@click.option("--hub-data-dir", type=click.Path(file_okay=False), help="The hub's data folder.")
@click.option("--hub-database-url", help="The hub's database URL, when not SQLite in its data folder.")
@click.option(
    "--ledger", type=click.Path(dir_okay=False), help="Ledger file (default: in the hub's data folder)."
)
@click.option("--chunk-bytes", type=int, help="Largest request body in bytes (default 262144).")
@click.option("--retries", type=int, help="Retries of a failed request (default 8).")
@click.option(
    "-q", "--quiet", is_flag=True, help="No progress bars (they are off anyway when not at a terminal)."
)
@click.option("-v", "--verbose", is_flag=True, help="Log each request and retry.")
@click.pass_context
def cli(ctx: click.Context, config_file: str | None, quiet: bool, verbose: bool, **flags: Any) -> None:
    """sarhad-sync: moves a field hub's submissions to the central Sarhad server and proves they arrived."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    for name in ("hub_data_dir", "ledger"):
        if flags.get(name):
            flags[name] = Path(flags[name])
    ctx.obj = {"config": load_config(flags, config_file=config_file), "quiet": quiet}


@cli.command("push")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@click.option(
    "--to-openrosa",
    "openrosa_url",
    metavar="URL",
    help="Send to this OpenRosa server instead (ODK Central, Kobo): HEAD + POST each, like Collect.",
)
@click.option("--username", help="With --to-openrosa: Digest user name (else put a token in the URL).")
@click.option(
    "--password", envvar="SARHAD_SYNC_OPENROSA_PASSWORD", help="With --username (or that variable)."
)
@click.pass_context
def push_command(
    ctx: click.Context,
    as_json: bool,
    quiet: bool,
    openrosa_url: str | None,
    username: str | None,
    password: str | None,
) -> None:
    """Send central everything it lacks; then check central's signed completeness statement."""
    from sync_client import push

    if openrosa_url:
        from sync_client import openrosa_push

        result = openrosa_push.push_to_openrosa(_config(ctx), openrosa_url, username, password)
        click.echo(openrosa_push.describe(result, openrosa_url))
        ctx.exit(result.exit_code)

    report = push.push(_config(ctx), quiet=quiet or ctx.obj["quiet"])
    click.echo(push.as_json(report) if as_json else push.describe(report))
    ctx.exit(report.exit_code)


@cli.command("pull-forms")
@click.pass_context
def pull_forms_command(ctx: click.Context) -> None:
    """Bring the published forms of the hub's projects (all versions, with media) from central to the hub."""
    from sync_client import pull_forms

    report = pull_forms.pull_forms(_config(ctx))
    click.echo(pull_forms.describe(report))
    ctx.exit(report.exit_code)


@cli.command("pull-device")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--to",
    type=click.Choice(["hub", "central"]),
    default="hub",
    show_default=True,
    help="Where the instances go.",
)
@click.option("--project", help="Project (at the hub, or at central with --to central) they belong to.")
@click.option("--device-id", help="Device ID recorded with them (default: folder:<folder name>).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@click.pass_context
def pull_device_command(
    ctx: click.Context, folder: Path, to: str, project: str | None, device_id: str | None, quiet: bool
) -> None:
    """Read a Collect storage folder copied from a tablet; report drafts that were never finalised."""
    from sync_client import pull_device

    report = pull_device.pull_device(_config(ctx), folder, to, project, device_id, quiet or ctx.obj["quiet"])
    click.echo(pull_device.describe(report))
    ctx.exit(report.exit_code)


@cli.group("bundle")
def bundle_group() -> None:
    """USB bundles for sites with no link: export at the hub, import where central is reachable."""


@bundle_group.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def bundle_export(ctx: click.Context, file: Path) -> None:
    """Write everything central has not confirmed into FILE (signed by the hub, encrypted for central)."""
    from sync_client import bundle

    report = bundle.export_bundle(_config(ctx), file)
    click.echo(
        f"wrote {file}: {report.items} submission versions, {report.files} files "
        f"({report.file_bytes} bytes); {report.skipped} already confirmed by central were left out"
    )


@bundle_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--receipt", type=click.Path(dir_okay=False, path_type=Path), help="Where to write the receipt."
)
@click.pass_context
def bundle_import(ctx: click.Context, file: Path, receipt: Path | None) -> None:
    """Hand FILE to central; write central's signed receipt (default FILE.receipt.json) for the hub."""
    from sync_client import bundle

    signed, where = bundle.import_bundle(_config(ctx), file, receipt)
    items = signed["receipt"]["items"]
    held = sum(1 for i in items if i["status"] == "held")
    click.echo(
        f"central holds {held} of the {len(items)} submission versions in the bundle; receipt: {where}"
    )
    for entry in items:
        if entry["status"] != "held":
            click.echo(f"  refused: {entry['formId']} {entry['instanceId']}: {entry.get('message', '')}")
    ctx.exit(ExitCode.OK if held == len(items) else ExitCode.INCOMPLETE)


@bundle_group.command("receipt")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def bundle_receipt(ctx: click.Context, file: Path) -> None:
    """Read central's receipt back at the hub: what it confirms is not put in the next bundle."""
    from sync_client import bundle

    counts = bundle.read_receipt(_config(ctx), file)
    click.echo(f"marked {counts['confirmed']} as confirmed by central; {counts['refused']} refused")
    if counts["entities"]:
        click.echo(f"entities brought up to date from central: {counts['entities']}")


@cli.command("watch")
@click.option("--no-pull-forms", is_flag=True, help="Only push; do not bring forms from central.")
@click.pass_context
def watch_command(ctx: click.Context, no_pull_forms: bool) -> None:
    """Every few minutes (SARHAD_SYNC_INTERVAL_MINUTES): when central answers, push then pull-forms."""
    from sync_client import watch

    def echo(message: str) -> None:
        click.echo(message)
        sys.stdout.flush()

    ctx.exit(watch.watch(_config(ctx), not no_pull_forms, echo))


@cli.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.pass_context
def status_command(ctx: click.Context, as_json: bool) -> None:
    """Per form and per device: held at the hub, confirmed at central, pending, conflicts, last sync."""
    from sync_client import status
    from sync_client.ledger import Ledger
    from sync_client.sources import HubStore

    config = _config(ctx).require("central_url", "hub_data_dir")
    assert config.hub_data_dir is not None
    try:
        store = HubStore(config.hub_data_dir, config.hub_database_url)
    except FileNotFoundError as exc:
        raise SyncError(str(exc), ExitCode.USAGE) from None
    ledger = Ledger(config.ledger_path, config.central_url)
    try:
        result = status.compute(store.items(), ledger)
    finally:
        store.close()
        ledger.close()
    click.echo(json.dumps(status.as_json(result), indent=2) if as_json else status.describe(result))


def main(argv: list[str] | None = None) -> int:
    try:
        # Without standalone mode click returns ctx.exit()'s code instead of raising SystemExit.
        code = cli.main(args=argv, prog_name="sarhad-sync", standalone_mode=False)
        return code if isinstance(code, int) else ExitCode.OK
    except click.exceptions.Exit as done:
        return int(done.exit_code)
    except click.ClickException as exc:
        exc.show()
        return ExitCode.USAGE
    except click.exceptions.Abort:
        click.echo("sarhad-sync: stopped", err=True)
        return ExitCode.ERROR
    except ConfigError as exc:
        click.echo(f"sarhad-sync: {exc}", err=True)
        return ExitCode.USAGE
    except SyncError as exc:
        click.echo(f"sarhad-sync: {exc.message}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("sarhad-sync: interrupted; the next run continues where this one stopped", err=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
