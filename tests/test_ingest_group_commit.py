"""Group commit: concurrent write jobs share a transaction, yet each succeeds or fails on its own.

The committer is made to gather a group for certain (its first job waits until the others are queued),
then the store is read back: committed jobs are there, a failed job left nothing, errors reach the caller
that caused them, and a job that breaks the transaction itself cannot take the others down with it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from server import errors
from server.db import Database, Writer
from server.ingest import IngestResult, Outcome, ingest
from server.ingest.group_commit import GroupCommitter
from server.models import Project, Submission, SubmissionVersion
from tests.openrosa_setup import make_project, new_uuid, publish_xform, small_instance, small_xform


def _submissions(database: Database, instance_ids: list[str]) -> set[str]:
    with database.read() as session:
        return set(
            session.scalars(select(Submission.instance_id).where(Submission.instance_id.in_(instance_ids)))
        )


def _run_grouped(committer: GroupCommitter, jobs: list[Callable[[Writer], Any]]) -> list[Any]:
    """Run the jobs so that they land in one group: the first one waits until all are queued."""
    queued = threading.Event()
    results: list[Any] = [None] * len(jobs)
    first = jobs[0]

    def gate(writer: Writer) -> Any:
        queued.wait(timeout=10)
        return first(writer)

    def call(i: int, job: Callable[[Writer], Any]) -> None:
        try:
            results[i] = committer.run(job)
        except Exception as exc:  # recorded, asserted on by the test
            results[i] = exc

    threads = [threading.Thread(target=call, args=(0, gate))]
    threads[0].start()
    time.sleep(0.2)  # the first caller leads: it runs the gate job and waits in it
    for i, job in enumerate(jobs[1:], start=1):
        threads.append(threading.Thread(target=call, args=(i, job)))
        threads[-1].start()
    time.sleep(0.3)
    queued.set()
    for t in threads:
        t.join(timeout=30)
    return results


@pytest.fixture
def setting(app: Flask, database: Database) -> tuple[int, GroupCommitter]:
    project_id = make_project(database)
    publish_xform(app, project_id, small_xform())
    return project_id, GroupCommitter(database)


def _ingest_job(project_id: int, instance_id: str, **kwargs: Any) -> Callable[[Writer], IngestResult]:
    def work(writer: Writer) -> IngestResult:
        project = writer.session.get(Project, project_id)
        assert project is not None
        return ingest(
            writer, project=project, xml_bytes=small_instance(instance_id, **kwargs), max_xml_bytes=10**6
        )

    return work


def test_each_job_of_a_group_stands_alone(database: Database, setting: tuple[int, GroupCommitter]) -> None:
    project_id, committer = setting
    good_a, good_b, half_done, wrong_version = new_uuid(), new_uuid(), new_uuid(), new_uuid()

    def fails_after_writing(writer: Writer) -> None:
        _ingest_job(project_id, half_done)(writer)  # writes a submission, then
        raise errors.bad_request("something went wrong after the rows were written")

    results = _run_grouped(
        committer,
        [
            _ingest_job(project_id, good_a),
            fails_after_writing,
            _ingest_job(project_id, wrong_version, version="9"),
            _ingest_job(project_id, good_b),
            _ingest_job(project_id, good_a, village="changed"),  # a conflict with the first job
        ],
    )
    assert isinstance(results[0], IngestResult) and results[0].outcome is Outcome.CREATED
    assert isinstance(results[1], errors.Problem) and results[1].status == 400
    assert isinstance(results[2], errors.Problem) and results[2].status == 404
    assert isinstance(results[3], IngestResult) and results[3].outcome is Outcome.CREATED
    assert isinstance(results[4], IngestResult) and results[4].outcome is Outcome.CONFLICT
    assert _submissions(database, [good_a, good_b, half_done, wrong_version]) == {good_a, good_b}


def test_a_job_that_breaks_the_transaction_does_not_sink_the_others(
    database: Database, setting: tuple[int, GroupCommitter]
) -> None:
    project_id, committer = setting
    good_a, good_b = new_uuid(), new_uuid()
    calls = {"broken": 0}

    def broken(writer: Writer) -> None:
        calls["broken"] += 1
        raise OperationalError("SELECT 1", {}, Exception("the connection was lost"))

    results = _run_grouped(
        committer, [_ingest_job(project_id, good_a), broken, _ingest_job(project_id, good_b)]
    )
    assert isinstance(results[1], OperationalError)
    assert [type(r) for r in (results[0], results[2])] == [IngestResult, IngestResult]
    assert _submissions(database, [good_a, good_b]) == {good_a, good_b}
    assert calls["broken"] >= 2  # the group was tried again, then each job alone
    with database.read() as session:
        versions = session.scalar(
            select(func.count())
            .select_from(SubmissionVersion)
            .where(SubmissionVersion.instance_id.in_([good_a, good_b]))
        )
    assert versions == 2  # re-running the group wrote nothing twice
