"""Talking to central: requests sessions with timeouts and urllib3's retries (backoff with jitter, see
:mod:`sync_client.retry`), and one error path that turns every failure into a plain sentence and an
exit code."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import requests

from sync_client import __version__
from sync_client import retry as retry_policy
from sync_client.config import SyncConfig
from sync_client.retry import RETRYABLE_STATUS
from sync_client.retry import retries_made as retry_count

log = logging.getLogger(__name__)


class ExitCode:
    OK = 0
    ERROR = 1  # unexpected failure (a bug, a damaged hub store)
    USAGE = 2  # bad command line or configuration
    UNREACHABLE = 3  # central could not be reached: try again later
    REFUSED_TOKEN = 4  # central refused the hub's token
    INCOMPLETE = 5  # finished, but some submissions are not at central (see the report)
    BUNDLE_REFUSED = 6  # a bundle or receipt tampered with, damaged, or made for/by another server
    BUSY = 7  # another sarhad-sync watch already runs for this hub


class SyncError(Exception):
    """A failure explained for a coordinator, with the exit code it ends the command with."""

    def __init__(self, message: str, exit_code: int = ExitCode.ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class CentralRefused(SyncError):
    """Central answered with an error (4xx) that retrying will not fix."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(f"central refused the request: {message}", ExitCode.ERROR)
        self.status = status
        self.code = code
        self.details = details


@dataclass
class Traffic:
    """Bytes and requests sent, for the progress line and the ledger."""

    requests: int = 0
    bytes_sent: int = 0
    retries: int = 0


@dataclass
class CentralClient:
    """Requests to central. Transient failures are retried by :mod:`sync_client.retry`'s policy (the one
    retry loop of the client); what is still failing after it becomes a :class:`SyncError`."""

    config: SyncConfig
    traffic: Traffic = field(default_factory=Traffic)
    session: requests.Session = field(init=False)
    once: requests.Session = field(init=False)  # no retries: chunks of a resumable upload

    def __post_init__(self) -> None:
        self.session = retry_policy.session(self.config)
        self.once = retry_policy.session(self.config, retries=0)
        for made in (self.session, self.once):
            made.headers["User-Agent"] = f"sarhad-sync/{__version__}"
            if self.config.token:
                made.headers["Authorization"] = f"Bearer {self.config.token}"

    def url(self, path: str) -> str:
        return self.config.central_url + path

    def request(self, method: str, path: str, *, retry: bool = True, raw: bool = False, **kwargs: Any) -> Any:
        """JSON answer of a request (bytes with ``raw``); failures that outlast the retries, and central's
        refusals, raised as SyncError."""
        kwargs.setdefault("timeout", (self.config.connect_timeout, self.config.read_timeout))
        body = kwargs.get("data") if kwargs.get("data") is not None else b""
        self.traffic.requests += 1
        self.traffic.bytes_sent += len(body) if isinstance(body, bytes | bytearray) else 0
        session = self.session if retry else self.once
        before = retry_count(session)
        try:
            response = session.request(method, self.url(path), **kwargs)
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            log.debug("%s %s failed: %s", method, path, exc)
            raise self.unreachable(_network_reason(exc)) from None
        finally:
            self.traffic.retries += retry_count(session) - before
        if response.status_code in RETRYABLE_STATUS:
            raise self.unreachable(f"central answered {response.status_code}")
        if raw and response.status_code < 400:
            return response.content
        try:
            return self._answer(response)
        except ValueError:  # a body that is not the JSON it should be: an answer cut short
            raise self.unreachable("central's answer was cut off") from None

    def unreachable(self, reason: str) -> SyncError:
        return SyncError(
            f"could not reach central at {self.config.central_url} ({reason}); "
            "check the link and try again later — nothing is lost, the next run continues where this stopped",
            ExitCode.UNREACHABLE,
        )

    def _answer(self, response: requests.Response) -> Any:
        if response.status_code < 400:
            return response.json()
        try:
            problem = response.json()
        except ValueError:
            problem = {}
        code = str(problem.get("code", response.status_code))
        message = str(problem.get("message", response.reason))
        details = problem.get("details") or {}
        if response.status_code == 401:
            raise SyncError(
                f"central refused the hub's token ({message}): ask the administrator to re-issue it "
                "(sarhad hub create) and set it as SARHAD_SYNC_TOKEN",
                ExitCode.REFUSED_TOKEN,
            )
        if response.status_code == 403:
            raise SyncError(
                f"central does not let this hub do that ({message}): ask the administrator to add the "
                "project to the hub",
                ExitCode.REFUSED_TOKEN,
            )
        raise CentralRefused(response.status_code, code, message, details)

    def download(self, path: str) -> bytes:
        """The raw bytes of a GET (form media: small files), with the same retries."""
        return self.request("GET", path, raw=True)  # type: ignore[no-any-return]

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Any:
        return self.request("PUT", path, **kwargs)


def _network_reason(exc: Exception) -> str:
    if isinstance(exc, requests.Timeout):
        return "no answer in time"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "the connection was cut during the answer"
    return "connection failed or was cut"
