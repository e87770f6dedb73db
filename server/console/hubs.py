"""Hubs and sync.

- **On central**: every hub (site administrators) or the hubs of the projects where the user is an
  administrator or coordinator: its projects, last contact, what central confirmed holding for it (and
  how much of that is kept conflicts), uploads of files still in progress, and the completeness statement
  central signs for it (the same one ``GET /v1/sync/statement`` hands the hub).
- **On a hub** (a server that has ``sarhad-sync`` settings: ``DATA_DIR/sync.toml`` or ``SARHAD_SYNC_*``
  variables naming central and the hub token): what is waiting to go (``sarhad-sync status``), the last
  push and its result, central's last signed statement, and *Sync now*, which runs ``sarhad-sync push``
  in this process as a background job with live progress (one at a time).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from sqlalchemy import func, select

from server import db, errors, jobs
from server.config import settings
from server.console import console
from server.console.session import require_signed_in, signed_in_user
from server.models import ConsoleJob, Hub, HubProject, ProjectRole, Role, SyncReceipt, SyncUpload, User
from server.sync.holdings import statement

SYNC_FILE = "sync.toml"
MANAGE_ROLES = (Role.ADMIN, Role.COORDINATOR)


def _managed_projects(user: User) -> set[int] | None:
    """Projects whose hubs the user may see (None: all, for a site administrator)."""
    if user.is_site_admin:
        return None
    rows = db.session().scalars(
        select(ProjectRole.project_id).where(
            ProjectRole.user_id == user.id, ProjectRole.role.in_(MANAGE_ROLES)
        )
    )
    return set(rows)


def may_use_hubs(user: User | None) -> bool:
    if user is None:
        return False
    managed = _managed_projects(user)
    return managed is None or bool(managed)


@console.app_context_processor
def _hubs_helper() -> dict[str, Any]:
    return {"hubs_visible": lambda: may_use_hubs(signed_in_user())}


def hub_config() -> Any:
    """This server's ``sarhad-sync`` settings when it is a hub (central's URL and a token), else None."""
    from sync_client.config import ConfigError, load_config

    own = settings()
    file = own.data_dir / SYNC_FILE
    flags: dict[str, Any] = {"hub_data_dir": own.data_dir}
    if own.database_url:
        flags["hub_database_url"] = own.database_url
    try:
        config = load_config(flags=flags, config_file=file if file.is_file() else None)
    except ConfigError:
        return None
    return config if config.central_url and config.token else None


def _central_rows(user: User) -> list[dict[str, Any]]:
    session = db.session()
    managed = _managed_projects(user)
    stmt = select(Hub).order_by(Hub.name)
    if managed is not None:
        stmt = stmt.where(Hub.id.in_(select(HubProject.hub_id).where(HubProject.project_id.in_(managed))))
    hubs = list(session.scalars(stmt))
    ids = [h.id for h in hubs]
    held = {
        (hub_id, held_as): n
        for hub_id, held_as, n in session.execute(
            select(SyncReceipt.hub_id, SyncReceipt.held_as, func.count())
            .where(SyncReceipt.hub_id.in_(ids))
            .group_by(SyncReceipt.hub_id, SyncReceipt.held_as)
        )
    }
    uploads = dict(
        session.execute(
            select(SyncUpload.hub_id, func.count())
            .where(SyncUpload.hub_id.in_(ids))
            .group_by(SyncUpload.hub_id)
        ).all()
    )
    data_dir: Path = settings().data_dir
    rows = []
    for hub in hubs:
        signed = statement(session, hub, data_dir) if hub.revoked_at is None else None
        rows.append(
            {
                "hub": hub,
                "confirmed": held.get((hub.id, "version"), 0) + held.get((hub.id, "conflict"), 0),
                "conflicts": held.get((hub.id, "conflict"), 0),
                "pending": uploads.get(hub.id, 0),
                "statement": signed,
            }
        )
    return rows


def _hub_status(config: Any) -> dict[str, Any]:
    """``sarhad-sync status`` of this hub, read from its store and ledger (works offline)."""
    from sync_client.ledger import Ledger
    from sync_client.sources import HubStore
    from sync_client.status import compute

    store = HubStore(config.hub_data_dir, config.hub_database_url)
    ledger = Ledger(config.ledger_path, config.central_url)
    try:
        status = compute(store.items(), ledger)
    finally:
        ledger.close()
        store.close()
    return {
        "total": status.total,
        "forms": sorted(status.forms.items()),
        "last_run": status.last_run,
        "last_success": status.last_success,
        "statement": status.statement,
    }


@console.get("/hubs")
def hubs_page() -> ResponseReturnValue:
    user = require_signed_in()
    if not may_use_hubs(user):
        raise errors.forbidden(_("Only administrators and coordinators see hubs."))
    config = hub_config()
    running = jobs.running(db.database(), "sync") if config is not None else None
    last_job = (
        db.session().scalar(
            select(ConsoleJob).where(ConsoleJob.kind == "sync").order_by(ConsoleJob.created_at.desc())
        )
        if config is not None
        else None
    )
    return render_template(
        "hubs.html",
        central_rows=_central_rows(user),
        config=config,
        local=_hub_status(config) if config is not None else None,
        running=running,
        last_job=last_job,
    )


@console.post("/hubs/sync")
def sync_now() -> ResponseReturnValue:
    user = require_signed_in()
    if not may_use_hubs(user):
        raise errors.forbidden(_("Only administrators and coordinators see hubs."))
    config = hub_config()
    if config is None:
        raise errors.not_found(_("This server is not set up as a hub (no sarhad-sync settings)."))
    busy = jobs.running(db.database(), "sync")
    if busy is not None:  # one push at a time: show the one already running
        return (
            redirect(url_for("console.job_page", job_id=busy.id))
            if busy.user_id == user.id
            else redirect(url_for("console.hubs_page"))
        )

    def work(progress: jobs.Progress) -> jobs.JobResult:
        from sync_client.client import SyncError
        from sync_client.push import describe, push

        def hook(step: str, done: int, total: int) -> None:
            progress.update(done, total, f"{step}: {done} / {total}", force=done in (0, total))

        try:
            report = push(config, quiet=True, progress=hook)
        except SyncError as exc:
            raise errors.unprocessable(f"Sync failed: {exc.message}") from None
        return jobs.JobResult(message=describe(report))

    job_id = jobs.start(
        kind="sync", title=_("Sync with central"), user_id=user.id, project_id=None, work=work
    )
    return redirect(url_for("console.job_page", job_id=job_id))
