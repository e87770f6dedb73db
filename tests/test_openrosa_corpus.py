"""Real XLSForms from other teams (the shared corpus) through Collect's whole conversation.

Each form is published into a project of its own (corpus forms share ids), downloaded by the Collect
emulator with its media, filled (every field type, two rows per repeat, small files for binary fields),
encrypted when the form has a public key, sent, resent and edited. Chosen for variety: nested repeats,
photos inside repeats, geotrace/geoshape, external choices, entities, many languages and encryption.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest
from sqlalchemy import select

from server.models import Submission, SubmissionVersion
from tests.collect_emulator import CollectEmulator, edit, fill, prepare, read_form
from tests.conftest import LiveServer
from tests.openrosa_setup import attachments_of, form_pk, key_url, make_device, make_project, publish_xlsform

CORPUS_FORMS = [
    "pyxform__tests__example_xls__xlsform_spec_test.xlsx",  # repeat, groups, media, encrypted, 3 languages
    "onadata__onadata__apps__logger__fixtures__tutorial_encrypted__tutorial_encrypted.xlsx",  # 14 .enc files
    "onadata__onadata__apps__api__tests__fixtures__forms__Testing_repeats.xlsx",
    "onadata__onadata__apps__api__tests__fixtures__forms__select_one_choices_test.xlsx",  # 35 groups
    "onadata__onadata__apps__main__tests__fixtures__geolocation__GeoLocationForm.xlsx",  # geotrace, geoshape
    "onadata__onadata__libs__tests__utils__fixtures__nested_repeats__nested_repeats.xlsx",
    "onadata__onadata__libs__tests__utils__fixtures__photo_type_in_repeat_group.xlsx",  # photos in a repeat
    "onadata__onadata__libs__tests__fixtures__grains__grains.xlsx",  # 267 relevants
    "pyxform__tests__example_xls__widgets.xls",  # many widget types, .xls
    "onadata__onadata__apps__logger__tests__fixtures__childrens_survey_unicode.xlsx",
    "onadata__onadata__apps__main__tests__fixtures__subdistrict_profiling_tool.xlsx",  # Arabic
    "pyxform__tests__example_xls__pull_data.xlsx",  # pulldata from a CSV
    "pyxform__tests__example_xls__case_insensitivity.md",  # entities, markdown source
]


@pytest.mark.parametrize("name", CORPUS_FORMS, ids=[n.split("__")[-1] for n in CORPUS_FORMS])
def test_corpus_form_through_collect(corpus_dir: Path, live_server: LiveServer, name: str) -> None:
    path = corpus_dir / name
    if not path.exists():
        pytest.skip(f"{name} is not in this corpus")
    app, database = live_server.app, live_server.database
    project_id = make_project(database)
    publish_xlsform(app, project_id, path, media={})
    _, token = make_device(app, project_id)
    collect = CollectEmulator(key_url(live_server.url, token, project_id))
    downloaded = collect.download_forms()
    assert len(downloaded) == 1
    (form_id, blank), *_ = downloaded.items()
    model = read_form(blank.xml, blank.media)
    rng = random.Random(name)
    plain = fill(model, rng=rng)
    sent = prepare(model, plain)
    answer = collect.submit(sent)
    assert answer.sent and answer.status == 201, answer

    pk = form_pk(database, project_id, form_id)
    with database.read() as session:
        version = session.scalar(
            select(SubmissionVersion).where(SubmissionVersion.instance_id == sent.instance_id)
        )
        assert version is not None
        assert version.sha256 == hashlib.sha256(sent.xml).hexdigest() and version.xml.encode() == sent.xml
        assert version.encrypted == bool(model.public_key)
    stored = attachments_of(database, pk, sent.instance_id)
    assert stored == {n: hashlib.sha256(d).hexdigest() for n, d in sent.files.items()}
    if model.public_key:
        assert "submission.xml.enc" in stored and all(n.endswith(".enc") for n in stored)

    assert collect.submit(sent).status == 201  # resend
    edited = prepare(model, edit(model, plain, rng=rng))
    assert collect.submit(edited).status == 201
    with database.read() as session:
        submission = session.scalar(select(Submission).where(Submission.instance_id == sent.instance_id))
        assert submission is not None
        current = session.get(SubmissionVersion, submission.current_version_id)
        assert current is not None
        if model.public_key:
            # The envelope shows only the new instanceID (deprecatedID is inside the ciphertext): the
            # server cannot tell an edit, so it keeps the edit as a submission of its own.
            assert current.instance_id == sent.instance_id
            assert session.scalar(select(Submission).where(Submission.instance_id == edited.instance_id))
        else:
            assert submission.review_state == "edited" and current.instance_id == edited.instance_id
