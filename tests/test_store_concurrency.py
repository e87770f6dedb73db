"""Two transactions storing the same file at the same moment both succeed, and it is stored once."""

import threading

from sqlalchemy import func, select

from server.db import Database
from server.models import Blob


def test_same_file_stored_by_two_transactions_at_once(database: Database, backend: str) -> None:
    # SQLite lets one writer in at a time (BEGIN IMMEDIATE), so there the two simply take turns.
    both_staged = threading.Barrier(2 if backend == "postgresql" else 1, timeout=30)
    errors: list[BaseException] = []
    data = b"the same flip chart photo from two tablets"

    def store() -> None:
        try:
            with database.write() as w:
                staged = w.staging.add_bytes(data)
                both_staged.wait()  # both insert the row before either has committed
                w.add_blob(staged)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=store) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    with database.read() as session:
        assert session.scalar(select(func.count()).select_from(Blob)) == 1
    assert len(list(database.blobs.iter_stored())) == 1
