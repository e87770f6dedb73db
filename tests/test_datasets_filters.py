"""Which submissions a Sarhad dataset holds: current versions only; rejected, deleted and test
submissions left out unless asked; dates and review states; conflicts listed beside the data."""

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from sqlalchemy import select

from server.ingest.reconcile import Outcome
from server.models import Conflict, Form, Project, Submission, utcnow
from tests.datasets_fixtures import (
    WebUser,
    make_app_user,
    make_project,
    publish_form,
    submit,
    web_user,
)

FORM = """
| settings |
| | form_id | version |
| | filtered | 1 |
| survey |
| | type | name | label |
| | text | what | What |
"""


def _xml(n: int, what: str = "x") -> str:
    meta = f"<meta><instanceID>uuid:f{n}</instanceID></meta>"
    return f'<data id="filtered" version="1"><what>{what}{n}</what>{meta}</data>'


@pytest.fixture(scope="module")
def filtered(live_server: Any) -> Iterator[dict[str, Any]]:
    db, app = live_server.database, live_server.app
    project_id = make_project(db, "filters", test_device_ids=["collect:trainingtab"])
    publish_form(db, app, project_id, FORM.encode(), "filtered.md")
    trainee = make_app_user(db, project_id, "Trainee", test=True)
    for n in range(1, 5):
        submit(db, app, project_id, _xml(n))
    submit(db, app, project_id, _xml(5), app_user_id=trainee)
    submit(db, app, project_id, _xml(6), device_id="collect:trainingtab")
    with db.write() as w:
        states = {"uuid:f2": "approved", "uuid:f3": "rejected"}
        for submission in w.session.scalars(select(Submission)):
            submission.review_state = states.get(submission.instance_id, submission.review_state)
            if submission.instance_id == "uuid:f4":
                submission.deleted_at = utcnow()
    # The same instanceID again with other answers: a conflict, kept apart and never merged.
    form_pk = _form_pk(db, project_id)
    result = submit(db, app, project_id, _xml(1, "changed"))
    assert result.outcome == Outcome.CONFLICT, result
    with db.read() as session:
        assert session.scalar(select(Conflict.id).where(Conflict.form_id == form_pk)) is not None
    admin = web_user(live_server, "filters-admin@example.tj", "admin", project_id)
    yield {"live": live_server, "project": project_id, "admin": admin}


def _form_pk(db: Any, project_id: int) -> int:
    with db.read() as session:
        return session.scalar(select(Form.id).where(Form.project_id == project_id))  # type: ignore[return-value]


def _ids(filtered: dict[str, Any], query: str = "") -> list[str]:
    admin: WebUser = filtered["admin"]
    url = f"{filtered['live'].url}/v1/projects/{filtered['project']}/forms/filtered/export.jsonl{query}"
    reply = requests.get(url, headers=admin.headers, timeout=60)
    assert reply.status_code == 200, reply.text
    return [json.loads(line)["__id"] for line in reply.text.splitlines()]


def test_default_leaves_out_rejected_deleted_and_test_submissions(filtered: dict[str, Any]) -> None:
    # newest first, as Central
    assert _ids(filtered) == ["uuid:f2", "uuid:f1"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?includeRejected=true", ["uuid:f3", "uuid:f2", "uuid:f1"]),
        ("?includeDeleted=true", ["uuid:f4", "uuid:f2", "uuid:f1"]),
        ("?includeTest=true", ["uuid:f6", "uuid:f5", "uuid:f2", "uuid:f1"]),
        ("?reviewState=approved", ["uuid:f2"]),
        ("?reviewState=received,rejected", ["uuid:f3", "uuid:f1"]),
        ("?since=2000-01-01&until=2099-01-01", ["uuid:f2", "uuid:f1"]),
    ],
)
def test_filters(filtered: dict[str, Any], query: str, expected: list[str]) -> None:
    assert _ids(filtered, query) == expected


def test_dates_bound_the_received_time(filtered: dict[str, Any]) -> None:
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).date().isoformat()
    yesterday = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).date().isoformat()
    today = dt.datetime.now(dt.UTC).date().isoformat()
    assert _ids(filtered, f"?since={tomorrow}") == []
    assert _ids(filtered, f"?until={yesterday}") == []
    assert _ids(filtered, f"?until={today}") == ["uuid:f2", "uuid:f1"]  # a date includes its whole day


def test_conflicts_are_listed_not_merged(filtered: dict[str, Any]) -> None:
    admin: WebUser = filtered["admin"]
    url = f"{filtered['live'].url}/v1/projects/{filtered['project']}/forms/filtered/export.csv.zip"
    files = zipfile.ZipFile(io.BytesIO(requests.get(url, headers=admin.headers, timeout=60).content))
    data = files.read("filtered.csv").decode()
    assert "x1" in data and "changed1" not in data
    conflicts = files.read("conflicts.csv").decode().splitlines()
    assert conflicts[0].startswith("instanceID,deprecatedID,reason")
    assert len(conflicts) == 2 and conflicts[1].startswith("uuid:f1,")


def test_project_flags_are_what_the_filters_read(filtered: dict[str, Any]) -> None:
    with filtered["live"].database.read() as session:
        project = session.get(Project, filtered["project"])
        assert project is not None and project.test_device_ids == ["collect:trainingtab"]
