"""The one retry policy of ``sarhad-sync``: urllib3's ``Retry`` on every requests session it opens.

``Retry`` waits ``backoff_seconds × 2^(n-1)`` (at most ``backoff_max_seconds``) plus up to
``backoff_seconds`` of random jitter before the n-th retry, so that hubs coming back at once do not all
knock together; it honours a ``Retry-After`` header (central's 429 and 503 send one). It retries what a
link that drops causes: a refused or reset connection, a request cut while it was sent, an answer that
did not come in time, and the statuses in :data:`RETRYABLE_STATUS`.

Every method is retried: each request of the sync protocol can be sent twice without harm (central
decides resends, inventories and upload offsets itself), and so can an OpenRosa submission (a resend is
answered as one). The one exception is a chunk of a resumable upload: it is sent without retries, so that
after a cut the client asks central where the upload stands instead of sending the whole chunk again.

requests reads an answer's body after urllib3 has handed it the headers, so urllib3 never sees a body
cut part-way. :class:`RetryingAdapter` reads the body itself and counts such a cut as one more retry of
the same ``Retry`` budget, with the same waits.
"""

from __future__ import annotations

from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError
from urllib3.util.retry import Retry

from sync_client.config import SyncConfig

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def policy(config: SyncConfig, retries: int | None = None) -> Retry:
    """The retry policy of a configuration; ``retries=0`` sends once."""
    return Retry(
        total=config.retries if retries is None else retries,
        backoff_factor=config.backoff_seconds,
        backoff_max=config.backoff_max_seconds,
        backoff_jitter=config.backoff_seconds,
        status_forcelist=RETRYABLE_STATUS,
        allowed_methods=None,  # every method: see the module's docstring
        raise_on_status=False,  # after the last retry the caller gets the answer and says what it was
        respect_retry_after_header=True,
        redirect=0,
    )


class RetryingAdapter(HTTPAdapter):
    """requests' adapter with :func:`policy`; a body cut part-way is one more retry of the same budget."""

    def __init__(self, retry: Retry) -> None:
        super().__init__(max_retries=retry)
        self.retries_made = 0  # for the progress line and the ledger

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        policy_of_session: Retry = self.max_retries
        try:
            while True:
                response = super().send(request, *args, **kwargs)
                # urllib3 hands back the Retry it ended with: its history holds the retries made so far.
                used: Retry = getattr(response.raw, "retries", None) or self.max_retries
                try:
                    if not kwargs.get("stream"):
                        _ = response.content  # read now, so that a cut body is retried too
                    self.retries_made += len(used.history)
                    return response
                except (requests.exceptions.ChunkedEncodingError, requests.ConnectionError) as exc:
                    try:
                        self.max_retries = used.increment(request.method, request.url, error=exc)  # type: ignore[arg-type]
                    except MaxRetryError as exhausted:
                        self.retries_made += len(used.history)
                        raise requests.ConnectionError(exhausted, request=request) from exc
                    self.max_retries.sleep()
        finally:
            self.max_retries = policy_of_session


def session(config: SyncConfig, retries: int | None = None) -> requests.Session:
    """A requests session whose every request follows :func:`policy`."""
    made = requests.Session()
    adapter = RetryingAdapter(policy(config, retries))
    made.mount("http://", adapter)
    made.mount("https://", adapter)
    return made


def retries_made(made: requests.Session) -> int:
    adapter = made.get_adapter("https://")
    return adapter.retries_made if isinstance(adapter, RetryingAdapter) else 0
