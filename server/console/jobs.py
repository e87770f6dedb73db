"""The progress page of a background job, its state as JSON for the page's script, and its file.

Only the user who started a job sees it (another user gets the same 404 as for a job that never was),
and a job of a project also needs that user to still hold a role there when the file is fetched.
"""

from __future__ import annotations

from flask import jsonify, render_template, send_file
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from server import auth, db, errors, jobs
from server.api.exports import content_disposition
from server.config import settings
from server.console import console
from server.console.session import require_signed_in
from server.models import ConsoleJob

REFRESH_SECONDS = 2


def find_job(job_id: str) -> ConsoleJob:
    user = require_signed_in()
    job = db.session().get(ConsoleJob, job_id)
    if job is None or job.user_id != user.id:
        raise errors.not_found(_("There is no such job (finished jobs are deleted after a day)."))
    if job.project_id is not None:
        auth.require_project_role(job.project_id)
    return job


def job_state(job: ConsoleJob) -> dict[str, object]:
    return {
        "state": job.state,
        "done": job.done,
        "total": job.total,
        "message": job.message,
        "finished": job.state not in jobs.ACTIVE,
    }


@console.get("/jobs/<job_id>")
def job_page(job_id: str) -> ResponseReturnValue:
    job = find_job(job_id)
    ready = jobs.result_path(settings().data_dir, job) is not None
    return render_template("job.html", job=job, ready=ready, refresh=REFRESH_SECONDS)


@console.get("/jobs/<job_id>/state")
def job_state_json(job_id: str) -> ResponseReturnValue:
    return jsonify(job_state(find_job(job_id)))


@console.get("/jobs/<job_id>/file")
def job_file(job_id: str) -> ResponseReturnValue:
    job = find_job(job_id)
    path = jobs.result_path(settings().data_dir, job)
    if path is None or job.result_name is None:
        raise errors.not_found(_("This job has no file (yet)."))
    response = send_file(path, mimetype=job.result_type or "application/octet-stream", conditional=False)
    response.headers["Content-Disposition"] = content_disposition(job.result_name)
    response.headers["Cache-Control"] = "no-store"
    return response
