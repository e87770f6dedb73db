"""Who may do what: one declared table, route (endpoint) × role, enforced for every route.

The roles:

- **site admin**: a web user with the server-wide ``admin`` role (sees and does everything);
- **project admin**, **coordinator**, **analyst**: a web user's role in the project the address names;
- **app user**: a device (Collect) with its key in the address or its Digest password;
- **hub**: a field hub with its token (``sarhad hub create``);
- **anonymous**: anyone, signed in or not.

``ACCESS`` maps each endpoint to who may call it. :func:`init_app` wraps every view function so that
the web-user rules are checked before the view runs (on ``/v1`` by Bearer or Basic, in the console by
its session cookie); a route with no entry is refused (403) until it gets one, and
``tests/test_access.py`` names it. Device and hub routes are checked by their own credential (the key,
Digest or hub token, whose failures count toward the sign-in limits): their entry records who they
serve. The routes keep their own role checks too, where they also decide what a role sees.

Adding a route: one line in ``ACCESS`` — ``"blueprint.view_name": PROJECT_WRITE,``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from flask import Flask, g

from server import auth, errors
from server.models import Role


class Who(StrEnum):
    SITE_ADMIN = "site admin"
    PROJECT_ADMIN = "project admin"
    COORDINATOR = "coordinator"
    ANALYST = "analyst"
    APP_USER = "app user"
    HUB = "hub"
    ANONYMOUS = "anonymous"


class Check(StrEnum):
    NONE = "none"  # open to anyone
    SIGNED_IN = "signed in"  # any web user
    SITE = "site"  # the site administrator
    PROJECT = "project"  # a role in the project of the address
    DEVICE = "device"  # the route's own device credential
    HUB = "hub"  # the route's own hub token


@dataclass(frozen=True)
class Rule:
    name: str
    who: frozenset[Who]
    check: Check

    def project_roles(self) -> tuple[str, ...]:
        roles = {Who.PROJECT_ADMIN: Role.ADMIN, Who.COORDINATOR: Role.COORDINATOR, Who.ANALYST: Role.ANALYST}
        return tuple(role for who, role in roles.items() if who in self.who)


def _rule(name: str, check: Check, *who: Who) -> Rule:
    return Rule(name, frozenset(who), check)


_WEB = (Who.SITE_ADMIN, Who.PROJECT_ADMIN, Who.COORDINATOR, Who.ANALYST)
ANYONE = _rule("ANYONE", Check.NONE, *Who)
SIGNED_IN = _rule("SIGNED_IN", Check.SIGNED_IN, *_WEB)
SITE_ADMIN = _rule("SITE_ADMIN", Check.SITE, Who.SITE_ADMIN)
PROJECT_READ = _rule("PROJECT_READ", Check.PROJECT, *_WEB)
PROJECT_WRITE = _rule("PROJECT_WRITE", Check.PROJECT, Who.SITE_ADMIN, Who.PROJECT_ADMIN, Who.COORDINATOR)
PROJECT_ADMIN = _rule("PROJECT_ADMIN", Check.PROJECT, Who.SITE_ADMIN, Who.PROJECT_ADMIN)
APP_USER = _rule("APP_USER", Check.DEVICE, Who.APP_USER)
HUB = _rule("HUB", Check.HUB, Who.HUB)
RULES = (ANYONE, SIGNED_IN, SITE_ADMIN, PROJECT_READ, PROJECT_WRITE, PROJECT_ADMIN, APP_USER, HUB)

# fmt: off
ACCESS: dict[str, Rule] = {
    # --- /v1: sessions, users, projects, roles
    "api.health": ANYONE,
    "api.create_session": ANYONE,
    "api.delete_session": ANYONE,  # the session token in the address is the credential
    "api.current_user": SIGNED_IN,
    "api.list_projects": SIGNED_IN,  # lists only the projects the user has a role in
    "api.post_project": SITE_ADMIN,
    "api.get_project": PROJECT_READ,
    "api.list_roles": ANYONE,
    "api.get_role": ANYONE,
    # --- /v1: forms
    "api.list_forms": PROJECT_READ,
    "api.get_form": PROJECT_READ,
    "api.get_form_xml": PROJECT_READ,
    "api.list_form_versions": PROJECT_READ,
    "api.get_form_version": PROJECT_READ,
    "api.get_form_version_xml": PROJECT_READ,
    "api.list_form_attachments": PROJECT_READ,
    "api.get_form_attachment": PROJECT_READ,
    "api.create_form": PROJECT_WRITE,
    "api.update_form": PROJECT_WRITE,
    "api.create_form_draft": PROJECT_WRITE,
    "api.get_form_draft": PROJECT_READ,
    "api.get_form_draft_xml": PROJECT_READ,
    "api.delete_form_draft": PROJECT_WRITE,
    "api.list_form_draft_attachments": PROJECT_WRITE,
    "api.get_form_draft_attachment": PROJECT_WRITE,
    "api.upload_form_draft_attachment": PROJECT_WRITE,
    "api.publish_form_draft": PROJECT_WRITE,
    # --- /v1: app users and assignments
    "api.list_app_users": PROJECT_WRITE,
    "api.create_app_user": PROJECT_WRITE,
    "api.revoke_app_user": PROJECT_WRITE,
    "api.list_form_assignments": PROJECT_WRITE,
    "api.list_form_role_actors": PROJECT_WRITE,
    "api.assign_form_role": PROJECT_WRITE,
    "api.revoke_form_role": PROJECT_WRITE,
    "api.list_project_form_assignments": PROJECT_WRITE,
    "api.list_project_assignments": PROJECT_WRITE,
    "api.list_project_role_actors": PROJECT_WRITE,
    "api.assign_project_role": PROJECT_ADMIN,
    "api.revoke_project_role": PROJECT_ADMIN,
    # --- /v1: submissions, exports, reports, OData
    "api.list_submissions": PROJECT_READ,
    "api.get_submission": PROJECT_READ,
    "api.get_submission_xml": PROJECT_READ,
    "api.submission_list_versions": PROJECT_READ,
    "api.submission_get_version_xml": PROJECT_READ,
    "api.review_submission": PROJECT_WRITE,
    "api.submission_list_comments": PROJECT_READ,
    "api.submission_add_comment": PROJECT_READ,
    "api.submission_list_attachments": PROJECT_READ,
    "api.submission_get_attachment": PROJECT_READ,
    "api.submission_upload_attachment": PROJECT_WRITE,
    "api.create_submission": PROJECT_WRITE,
    "api.edit_submission": PROJECT_WRITE,
    "api.central_csv": PROJECT_READ,
    "api.central_csv_zip": PROJECT_READ,
    "api.sarhad_export": PROJECT_READ,
    "api.donor_report": PROJECT_READ,
    "api.odata_service_document": PROJECT_READ,
    "api.odata_metadata": PROJECT_READ,
    "api.odata_table_rows": PROJECT_READ,
    "api.get_submission_keys": PROJECT_READ,
    # --- /v1: encryption, conflicts, audit
    "api.post_project_key": PROJECT_ADMIN,
    "api.list_conflicts": PROJECT_WRITE,
    "api.get_conflict": PROJECT_WRITE,
    "api.decide_conflict": PROJECT_WRITE,
    "api.list_audits": SITE_ADMIN,
    # --- /v1: entity lists and entities
    "api.list_datasets": PROJECT_READ,
    "api.get_dataset": PROJECT_READ,
    "api.create_dataset": PROJECT_WRITE,
    "api.create_dataset_property": PROJECT_WRITE,
    "api.update_dataset": PROJECT_WRITE,
    "api.entities_xlsx": PROJECT_READ,  # personal-data rules as form exports
    "api.entities_report": PROJECT_READ,  # suppressed as every report
    "api.list_entities": PROJECT_READ,
    "api.create_entities": PROJECT_WRITE,
    "api.get_entity": PROJECT_READ,
    "api.update_entity": PROJECT_WRITE,
    "api.delete_entity": PROJECT_WRITE,
    "api.restore_entity": PROJECT_WRITE,
    "api.entity_versions": PROJECT_READ,
    "api.entities_csv": PROJECT_READ,
    "api.entities_service_document": PROJECT_READ,
    "api.entities_metadata": PROJECT_READ,
    "api.entities_odata": PROJECT_READ,
    # --- /v1/sync: field hubs
    "api.sync_public_key": ANYONE,
    "api.sync_hub": HUB,
    "api.sync_inventory": HUB,
    "api.sync_submissions": HUB,
    "api.sync_upload_start": HUB,
    "api.sync_upload_status": HUB,
    "api.sync_upload_chunk": HUB,
    "api.sync_forms": HUB,
    "api.sync_form_media": HUB,
    "api.sync_statement": HUB,
    "api.sync_bundle_import": HUB,  # the hub's credential travels inside the bundle
    # --- OpenRosa: Collect
    "openrosa.key_form_list": APP_USER,
    "openrosa.key_form_xml": APP_USER,
    "openrosa.key_manifest": APP_USER,
    "openrosa.key_media": APP_USER,
    "openrosa.key_submission": APP_USER,
    "openrosa.key_submission_head": APP_USER,
    "openrosa.digest_form_list": APP_USER,
    "openrosa.digest_form_xml": APP_USER,
    "openrosa.digest_manifest": APP_USER,
    "openrosa.digest_media": APP_USER,
    "openrosa.digest_submission": APP_USER,
    "openrosa.digest_submission_head": APP_USER,
    # --- the console (browser)
    "static": ANYONE,
    "console.static": ANYONE,
    "console.sign_in": ANYONE,
    "console.sign_in_post": ANYONE,
    "console.sign_out": ANYONE,
    "console.choose_language": ANYONE,
    "console.home": SIGNED_IN,
    "console.project_page": PROJECT_READ,
    "console.upload_form": PROJECT_WRITE,
    "console.form_page": PROJECT_READ,
    "console.publish_form": PROJECT_WRITE,
    "console.change_form_state": PROJECT_WRITE,
    "console.devices_page": PROJECT_WRITE,
    "console.create_device": PROJECT_WRITE,
    "console.device_sheet": PROJECT_WRITE,
    "console.rotate_device": PROJECT_WRITE,
    "console.revoke_device": PROJECT_WRITE,
    "console.device_page": PROJECT_WRITE,
    "console.assign_device_forms": PROJECT_WRITE,
    "console.submissions_page": PROJECT_READ,
    "console.submission_page": PROJECT_READ,
    "console.review_submission": PROJECT_WRITE,
    "console.comment_submission": PROJECT_READ,
    "console.choose_columns": PROJECT_READ,
    "console.submission_file": PROJECT_READ,  # files of personal questions: not for pseudonym roles (route)
    "console.submission_thumbnail": PROJECT_READ,
    "console.entity_lists_page": PROJECT_READ,
    "console.entity_list_page": PROJECT_READ,
    "console.entity_page": PROJECT_READ,
    "console.resolve_entity": PROJECT_WRITE,
    "console.new_draft": PROJECT_WRITE,
    "console.discard_form_draft": PROJECT_WRITE,
    "console.upload_draft_media": PROJECT_WRITE,
    "console.form_preview": PROJECT_READ,  # a draft's preview: administrators and coordinators (the route)
    "console.form_xml": PROJECT_READ,
    "console.form_media": PROJECT_READ,
    "console.form_fill": PROJECT_WRITE,
    "console.fill_submit": PROJECT_WRITE,
    "console.vendor_file": ANYONE,  # ODK Web Forms and Vue, public files
    "console.dashboard_page": PROJECT_READ,  # analysts see suppressed counts
    "console.dashboard_chart": PROJECT_READ,
    "console.conflicts_page": PROJECT_WRITE,
    "console.conflict_page": PROJECT_WRITE,
    "console.conflict_file": PROJECT_WRITE,
    "console.decide_conflict": PROJECT_WRITE,
    "console.downloads_page": PROJECT_READ,  # analysts get pseudonymised files
    "console.start_export": PROJECT_READ,
    "console.start_report": PROJECT_READ,
    "console.job_page": SIGNED_IN,  # only the user who started the job (the route)
    "console.job_state_json": SIGNED_IN,
    "console.job_file": SIGNED_IN,
    "console.hubs_page": SIGNED_IN,  # administrators and coordinators of some project (the route)
    "console.sync_now": SIGNED_IN,
    "console.users_page": SITE_ADMIN,
    "console.user_page": SITE_ADMIN,
    "console.create_user": SITE_ADMIN,
    "console.set_roles": SITE_ADMIN,
    "console.reset_password": SITE_ADMIN,
    "console.unlock_user": SITE_ADMIN,
    "console.unlock_address": SITE_ADMIN,
    "console.audit_page": SITE_ADMIN,
}
# fmt: on


def rule_for(endpoint: str) -> Rule | None:
    return ACCESS.get(endpoint)


def _signed_in_user(console: bool) -> Any:
    if console:
        from server.console import session as console_session

        return console_session.require_signed_in()
    return auth.require_user()


def check(endpoint: str, view_args: dict[str, Any]) -> None:
    """Raise (401, 403, or the console's redirect to sign in) unless the rule of ``endpoint`` allows
    this request. Device and hub rules are left to the route's own credential check."""
    rule = ACCESS.get(endpoint)
    if rule is None:
        raise errors.forbidden(f"No access rule is declared for {endpoint}; nobody may use it yet.")
    if rule.check in (Check.NONE, Check.DEVICE, Check.HUB):
        return
    user = _signed_in_user(console=endpoint.startswith("console."))
    if rule.check is Check.SITE and not user.is_site_admin:
        raise errors.forbidden("Only an administrator may do this.")
    if rule.check is Check.PROJECT:
        role = auth.project_role(user, int(view_args["project_id"]))
        if role is None or role not in rule.project_roles():
            raise errors.forbidden("Your role in this project does not allow this.")


def _guarded(endpoint: str, view: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        cached = {key for key in ("current_user", "console_user", "db_session") if key in g}
        try:
            check(endpoint, kwargs)
        finally:
            # The view authenticates again inside its own transaction (write_request reads the user in
            # the write session); leave it nothing from this earlier read.
            for key in ("current_user", "console_user"):
                if key not in cached:
                    g.pop(key, None)
            if "db_session" not in cached and (session := g.pop("db_session", None)) is not None:
                session.close()
        return view(*args, **kwargs)

    return wrapper


def init_app(app: Flask) -> None:
    """Wrap every view function with its rule; call after every blueprint is registered."""
    for endpoint, view in list(app.view_functions.items()):
        app.view_functions[endpoint] = _guarded(endpoint, view)


_PLACEHOLDERS = {"project_id": "p", "xml_form_id": "f", "instance_id": "i"}


def _shown_path(rule: str) -> str:
    """``/v1/projects/<int:project_id>/forms/<xml_form_id>`` → ``/v1/projects/{p}/forms/{f}``."""
    return re.sub(
        r"<(?:[^:>]+:)?([^>]+)>", lambda m: "{" + _PLACEHOLDERS.get(m.group(1), m.group(1)) + "}", rule
    )


def markdown(app: Flask) -> str:
    """The README's table of who may do what, made from ACCESS and the application's routes."""
    routes: dict[str, list[str]] = {}
    for url_rule in sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, sorted(r.methods or ()))):
        methods = sorted((url_rule.methods or set()) - {"HEAD", "OPTIONS"}) or ["HEAD"]
        routes.setdefault(url_rule.endpoint, []).append(f"`{' '.join(methods)} {_shown_path(url_rule.rule)}`")
    lines = ["| Who may | Routes |", "| --- | --- |"]
    for rule in RULES:
        who = ", ".join(w.value for w in Who if w in rule.who)
        shown = [r for endpoint, found in routes.items() if ACCESS.get(endpoint) is rule for r in found]
        lines.append(f"| **{rule.name}**: {who} | {', '.join(shown)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m server.access: print the table for the README
    import tempfile

    from server import create_app

    with tempfile.TemporaryDirectory() as scratch:
        print(markdown(create_app({"data_dir": scratch, "secret_key": "unused"})), end="")
